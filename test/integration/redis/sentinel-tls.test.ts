/**
 * Redis Sentinel with TLS and ACL users on both sides (issue 22): servers
 * and sentinels listen on TLS only, the servers take an ACL user (from the
 * URL), the sentinels another (`sentinel_kwargs`). A broker and a backend
 * with `brokerUseSsl` / `redisBackendUseSsl` (the CA) reach the primary
 * through the sentinels; without TLS, or with the wrong sentinel password,
 * they fail with a ConnectionError that names the sentinels, not a secret.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createRedisBroker } from '../../../src/transport/redis/broker.ts';
import { createRedisBackend } from '../../../src/transport/redis/backend.ts';
import { JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { ConnectionError } from '../../../src/errors.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';
import { createTestPki } from '../../helpers/pki.ts';
import { hasRedisServer } from '../../helpers/redis-server.ts';
import { startSentinelGroup, type SentinelGroup } from '../../helpers/redis-sentinel.ts';
import { requireService, waitFor } from '../../helpers/services.ts';

describe('redis sentinel over TLS with ACL users', { timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-sentinel-pki-'));
  let group: SentinelGroup | undefined;
  after(async () => {
    await group?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('broker and backend reach the primary through TLS sentinels; no TLS or a wrong sentinel password fails clearly', async (t) => {
    if (!requireService(t, hasRedisServer(), 'redis-server')) return;
    const pki = await createTestPki(dir, { keyAlgorithm: 'rsa' });
    group = await startSentinelGroup({ tls: { cert: pki.server, key: pki.serverKey, ca: pki.ca }, sentinelAcl: true });
    const logger = createLogger({ level: 'silent' });
    const ha = { masterName: group.masterName, sentinelKwargs: { username: group.sentinelUser!, password: group.sentinelPassword }, waitForReplicas: 1 };
    const settings = resolveSettings({
      brokerTransportOptions: { ...ha, visibilityTimeout: 60 }, resultBackendTransportOptions: ha,
      brokerUseSsl: { ssl_ca_certs: pki.ca }, redisBackendUseSsl: { ssl_ca_certs: pki.ca }, brokerConnectionTimeout: 5,
    });
    const broker = createRedisBroker({ url: group.url(0), settings, logger });
    const backend = createRedisBackend({ url: group.url(1), settings, logger });
    try {
      await broker.publish('tls-q', buildTaskMessage({ task: 't.n', id: 'tls-1', args: [], kwargs: {} }, JSON_SERIALIZER));
      const got: string[] = [];
      const c = await broker.consume(['tls-q'], { prefetch: 1 }, (d) => {
        got.push(d.message.headers.id as string);
        void d.ack();
      });
      await waitFor(() => got.length === 1, 10_000, 'the task consumed');
      await c.cancel();
      assert.deepEqual(got, ['tls-1']);
      await backend.store([{ taskId: 'tls-1', state: 'SUCCESS', payload: Buffer.from('{"status":"SUCCESS"}') }]);
      assert.equal((await backend.get('tls-1'))?.toString(), '{"status":"SUCCESS"}');
    } finally {
      await broker.close();
      await backend.close();
    }

    // No TLS towards TLS-only sentinels: refused at connect, naming the sentinels.
    const plain = createRedisBroker({ url: group.url(0), settings: resolveSettings({ brokerTransportOptions: ha, brokerConnectionTimeout: 3 }), logger });
    await assert.rejects(plain.connect(), (e: unknown) => e instanceof ConnectionError && /via sentinels 127\.0\.0\.1:/.test(e.message) && !e.message.includes(group!.password));
    await plain.close();
    // A wrong sentinel password.
    const wrong = createRedisBroker({
      url: group.url(0), logger,
      settings: resolveSettings({ brokerTransportOptions: { ...ha, sentinelKwargs: { username: group.sentinelUser!, password: 'not-the-password-1234' } }, brokerUseSsl: { ssl_ca_certs: pki.ca }, brokerConnectionTimeout: 3 }),
    });
    await assert.rejects(wrong.connect(), (e: unknown) => e instanceof ConnectionError && !e.message.includes('not-the-password-1234'));
    await wrong.close();
  });
});
