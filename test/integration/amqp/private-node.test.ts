/**
 * Tests that need a RabbitMQ of their own: a private node (own node name,
 * ports, data directory and config, bound to 127.0.0.1, started and stopped
 * by this file, never the shared node other test files use). It has a TLS
 * listener with a test PKI generated here (server certificate for
 * localhost/127.0.0.1, clients must present a certificate), and it is
 * stopped and started in the middle of a 9,000-task run.
 *
 * Why a private node and not a TLS listener added to the shared one:
 * RabbitMQ 3.10 reads listeners from its config at boot, so adding one to
 * the shared node means restarting it under every other test file.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../../src/client/app.ts';
import { createAmqpBroker, type AmqpBroker } from '../../../src/transport/amqp/broker.ts';
import type { Delivery } from '../../../src/core/broker.ts';
import { JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { resolveSettings, type AppSettings } from '../../../src/config/options.ts';
import { ConnectionError } from '../../../src/errors.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { newId } from '../../../src/protocol/ids.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';
import { resetSecurityEvents, securityCounters } from '../../../src/observability/security-events.ts';
import { startCeleriacWorker, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import { createTestPki, type TestPki } from '../../helpers/pki.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService, sleep, waitFor } from '../../helpers/services.ts';
import { canStartPrivateNode, createTestVhost, ctl, type PrivateNode, startPrivateNode, type TestVhost } from './support/rabbit.ts';

const ready = canStartPrivateNode() && hasRedisServer();
const logger = createLogger({ level: 'silent' });
const message = (i: number) => buildTaskMessage({ task: 'tasks.add', id: newId(), args: [i, 1], kwargs: {} }, JSON_SERIALIZER);

describe('private RabbitMQ node: TLS, and a restart in the middle of a run', () => {
  let dir: string | undefined;
  let pki: TestPki;
  let node: PrivateNode | undefined;
  let vh: TestVhost;
  let redis: RedisServer | undefined;
  const open: Array<{ close(): Promise<void> }> = [];

  before(async () => {
    if (!ready) return;
    dir = mkdtempSync(join(tmpdir(), 'celeriac-amqp-pki-'));
    pki = await createTestPki(dir);
    node = await startPrivateNode({ tls: { certFile: pki.server, keyFile: pki.serverKey, caFile: pki.ca, verifyPeer: true, failIfNoPeerCert: true } });
    vh = await createTestVhost('private', node);
    redis = await startRedisServer();
  });
  after(async () => {
    await Promise.allSettled(open.map((x) => x.close()));
    await redis?.stop();
    await node?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const tlsBroker = (url: string, settings: AppSettings = {}): AmqpBroker => {
    const b = createAmqpBroker({ url, logger, settings: resolveSettings(settings) });
    open.push(b);
    return b;
  };
  const mutual = (): AppSettings => ({ brokerUseSsl: { ca_certs: pki.ca, certfile: pki.client, keyfile: pki.clientKey } });

  describe('TLS (amqps://)', () => {
    it('round trip with verification on, the CA given, a client certificate, and SNI for localhost', async (t) => {
      if (!requireService(t, ready, 'rabbitmq-server and redis-server')) return;
      const b = tlsBroker(vh.url({ scheme: 'amqps', port: node!.tlsPort }).replace('127.0.0.1', 'localhost'), mutual());
      assert.equal(b.endpoint.tls?.rejectUnauthorized, true);
      assert.equal(b.endpoint.tls?.servername, 'localhost');
      const queue = `tls-${newId().slice(0, 8)}`;
      const m = message(41);
      await b.publish(queue, m);
      const got: Delivery[] = [];
      const c = await b.consume([queue], { prefetch: 1 }, (d) => got.push(d));
      await waitFor(() => got.length === 1, 5000, 'delivery over TLS');
      assert.deepEqual(got[0]!.message.body, m.body);
      await got[0]!.ack();
      await c.cancel();
      const conns = await ctl(['list_connections', 'user', 'ssl', 'ssl_protocol', 'peer_cert_subject', '-q', '--no-table-headers'], { node });
      const mine = conns.split('\n').filter((l) => l.startsWith(`${vh.user}\t`));
      assert.ok(mine.length >= 2 && mine.every((l) => /\ttrue\t/.test(l) && /tlsv1\.[23]/.test(l) && l.includes('celeriac-test-client')), mine.join('\n'));
    });

    it("Celery-style URL parameters work too (ssl_ca_certs, ssl_certfile, ssl_keyfile)", async (t) => {
      if (!requireService(t, ready, 'rabbitmq-server and redis-server')) return;
      const query = `ssl_cert_reqs=required&ssl_ca_certs=${encodeURIComponent(pki.ca)}&ssl_certfile=${encodeURIComponent(pki.client)}&ssl_keyfile=${encodeURIComponent(pki.clientKey)}`;
      const b = tlsBroker(vh.url({ scheme: 'amqps', port: node!.tlsPort, query }));
      await b.connect();
      assert.equal(await b.queueLength('nothing-here'), 0);
    });

    it('refuses a server certificate from another CA (tls_failure counted, no retry loop)', async (t) => {
      if (!requireService(t, ready, 'rabbitmq-server and redis-server')) return;
      resetSecurityEvents();
      const b = tlsBroker(vh.url({ scheme: 'amqps', port: node!.tlsPort }), { brokerUseSsl: { ca_certs: pki.otherCa, certfile: pki.client, keyfile: pki.clientKey } });
      const t0 = Date.now();
      await assert.rejects(b.connect(), (e: unknown) => {
        assert.ok(e instanceof ConnectionError, String(e));
        assert.equal(e.code, 'ERR_TLS');
        assert.match(e.message, /not trusted|not signed by a trusted CA|self-signed|issuer/);
        assert.ok(!e.message.includes(vh.password));
        return true;
      });
      assert.ok(Date.now() - t0 < 5000);
      assert.equal(securityCounters().tls_failure, 1);
    });

    it('refuses a server whose certificate does not match the expected name', async (t) => {
      if (!requireService(t, ready, 'rabbitmq-server and redis-server')) return;
      const b = tlsBroker(vh.url({ scheme: 'amqps', port: node!.tlsPort }), { brokerUseSsl: { ca_certs: pki.ca, certfile: pki.client, keyfile: pki.clientKey, server_hostname: 'rabbit.example.com' } });
      await assert.rejects(b.connect(), (e: unknown) => e instanceof ConnectionError && e.code === 'ERR_TLS' && /host name|does not match/.test(e.message));
    });

    it('without a client certificate the server refuses the handshake', async (t) => {
      if (!requireService(t, ready, 'rabbitmq-server and redis-server')) return;
      const b = tlsBroker(vh.url({ scheme: 'amqps', port: node!.tlsPort }), { brokerUseSsl: { ca_certs: pki.ca } });
      await assert.rejects(b.connect(), (e: unknown) => e instanceof ConnectionError && e.code === 'ERR_TLS');
    });

    it('turning verification off is refused unless unsafeAllowInsecureTls says so', () => {
      if (!ready) return;
      assert.throws(() => tlsBroker(vh.url({ scheme: 'amqps', port: node!.tlsPort }), { brokerUseSsl: { cert_reqs: 'CERT_NONE' } }), /insecure TLS settings/);
    });
  });

  describe('broker stopped and started', () => {
    let worker: CeleriacWorkerProcess | undefined;
    let app: App | undefined;
    after(async () => {
      await app?.close();
      await worker?.stop();
    });

    it('9,000 late-ack tasks, RabbitMQ restarted mid-run: every task completes, none lost, duplicates only for tasks in flight', async (t) => {
      if (!requireService(t, ready, 'rabbitmq-server and redis-server')) return;
      const brokerUrl = vh.url();
      worker = await startCeleriacWorker({
        env: { CELERIAC_BROKER_URL: brokerUrl, CELERIAC_RESULT_BACKEND: redis!.url(1), CELERIAC_ACKS_LATE: '1', CELERIAC_LOG_LEVEL: 'debug' },
        args: ['-c', '8', '-n', 'restart@localhost'],
      });
      app = createApp({ brokerUrl, resultBackend: redis!.url(1), logger, brokerPublishTimeout: 60 });
      const runs = (): string[] => worker!.logs().filter((l) => l.msg === 'task succeeded').map((l) => String(l.id));

      // 10 ms tasks: the run takes several seconds, so the broker really goes away in the middle of it.
      const task = { name: 'tasks.sleep', args: [0.01] };
      const first = [];
      // 8,000 before the restart: under load a node takes seconds to stop while the worker keeps going.
      for (let b = 0; b < 16; b++) first.push(...(await app.sendMany(Array.from({ length: 500 }, () => task))));
      await waitFor(() => runs().length >= 1000, 120_000, '1,000 tasks done before the restart');
      const doneBefore = runs().length;

      await node!.stop();
      const stoppedAt = Date.now();
      const doneAtStop = runs().length;
      t.diagnostic(`RabbitMQ stop began after ${doneBefore} tasks had run, and completed after ${doneAtStop}`);
      assert.ok(doneAtStop < first.length, `the first ${first.length} tasks were not all done when the broker went away`);
      // Sends during the outage wait for the broker (bounded by brokerPublishTimeout) instead of failing or dropping.
      let sentDuringOutage = false;
      const during = app.sendMany(Array.from({ length: 1000 }, () => task)).then((r) => {
        sentDuringOutage = true;
        return r;
      });
      await sleep(2000);
      assert.equal(sentDuringOutage, false, 'a send waits while the broker is down');
      await node!.start();
      t.diagnostic(`RabbitMQ back after ${Date.now() - stoppedAt} ms`);
      const second = await during;
      assert.equal(sentDuringOutage, true);

      const all = [...first, ...second];
      assert.equal(all.length, 9000);
      for (let i = 0; i < all.length; i += 500) {
        const values = await Promise.all(all.slice(i, i + 500).map((r) => r.get({ timeoutMs: 180_000 })));
        values.forEach((v, j) => assert.equal(v, 0.01, `result of task ${i + j}`));
      }
      await waitFor(() => new Set(runs()).size >= 9000, 30_000, 'every execution logged');
      const counts = new Map<string, number>();
      for (const id of runs()) counts.set(id, (counts.get(id) ?? 0) + 1);
      const ids = new Set(all.map((r) => r.id));
      assert.equal([...counts.keys()].filter((id) => ids.has(id)).length, 9000, 'every task ran');
      const dups = [...counts.values()].filter((n) => n > 1).length;
      const reconnects = (worker.output().match(/re-established/g) ?? []).length;
      const stale = worker.logs().filter((l) => typeof l.msg === 'string' && l.msg.includes('not settled: its channel closed')).length;
      t.diagnostic(`9000 tasks: ${runs().length} executions, ${dups} duplicate(s) (in flight when the broker stopped, redelivered by RabbitMQ); ${stale} settle(s) of stale deliveries skipped; ${reconnects} reconnect(s) logged`);
      assert.ok(reconnects >= 1, 'the worker reconnected');
      // In flight = at most the prefetch windows (8 slots × multiplier 4) of the worker's consumers.
      assert.ok(dups <= 32, `duplicates bounded by the prefetch window: ${dups}`);
    });

    it('a send while the broker stays down fails with a clear ConnectionError after brokerPublishTimeout, and stores nothing', async (t) => {
      if (!requireService(t, ready, 'rabbitmq-server and redis-server')) return;
      const b = tlsBroker(vh.url(), { brokerPublishTimeout: 1.5 });
      const queue = `down-${newId().slice(0, 8)}`;
      await b.publish(queue, message(1));
      await node!.stop();
      try {
        const t0 = Date.now();
        await assert.rejects(b.publish(queue, message(2)), (e: unknown) => {
          assert.ok(e instanceof ConnectionError, String(e));
          assert.match(e.message, /unreachable|not confirmed/);
          assert.ok(!e.message.includes(vh.password));
          return true;
        });
        const waited = Date.now() - t0;
        assert.ok(waited >= 1400 && waited < 6000, `waited ${waited} ms`);
      } finally {
        await node!.start();
      }
      await waitFor(async () => (await b.queueLength(queue).catch(() => -1)) === 1, 20_000, 'only the confirmed message is there');
      await b.publish(queue, message(3));
      assert.equal(await b.queueLength(queue), 2, 'the adapter reconnected by itself');
    });
  });
});
