/**
 * The policy's PostgreSQL rules at connect, against a cluster this test
 * starts (TLS from a PKI made now; SCRAM for the worker role, md5 and trust
 * for two roles kept for the refusals): in production, an md5 or a trust
 * login is refused during the handshake with the policy's finding, unless
 * the matching override accepts it; in development, trust on loopback is a
 * warning. `sslmode=verify-full` refuses a server certificate from another
 * CA, and `sslmode=require` is refused unless unsafeAllowInsecureTls.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import pg from 'pg';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AppSettings } from '../../../src/config/options.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { InsecureConfigError } from '../../../src/config/policy.ts';
import type { Broker } from '../../../src/core/broker.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { engine } from '../../../src/transport/postgres/index.ts';
import { openSharedTokenBuckets } from '../../../src/transport/index.ts';
import { generateSecret } from '../../../src/secrets/generate.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';
import { JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { newId } from '../../../src/protocol/ids.ts';
import { createTestPki, type TestPki } from '../../helpers/pki.ts';
import { canStartPostgres, startPostgresCluster, type PostgresCluster } from '../../helpers/postgres-server.ts';
import { IN_CI, waitFor } from '../../helpers/services.ts';

const available = canStartPostgres();
if (!available && IN_CI) throw new Error('PostgreSQL binaries are required in CI');

describe('PostgreSQL authentication and TLS under the policy', { skip: available ? false : 'cannot start a PostgreSQL cluster here' }, () => {
  const logger = createLogger({ level: 'silent' });
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-pg-auth-'));
  let pki: TestPki;
  let cluster: PostgresCluster;
  const open: Broker[] = [];

  before(async () => {
    pki = await createTestPki(dir);
    cluster = await startPostgresCluster(pki);
  });
  after(async () => {
    await Promise.allSettled(open.map((b) => b.close()));
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A broker made in `mode`, connected (its first query runs the handshake). */
  async function connect(mode: 'production' | 'development', url: string, extra: AppSettings = {}): Promise<void> {
    const before = process.env.CELERIAC_ENV;
    process.env.CELERIAC_ENV = mode;
    try {
      const broker = engine.createBroker(url, { logger, settings: resolveSettings(extra) });
      open.push(broker);
      await broker.queueLength('celery');
    } finally {
      process.env.CELERIAC_ENV = before;
    }
  }

  const refused = (id: string, pattern: RegExp) => (err: unknown): boolean => {
    assert.ok(err instanceof InsecureConfigError, `an InsecureConfigError, got ${String(err)}`);
    assert.equal(err.findings[0]!.id, id);
    assert.equal(err.findings[0]!.setting, 'brokerUrl');
    assert.match(err.message, pattern);
    assert.doesNotMatch(err.message, new RegExp(cluster.md5Password), 'never the password');
    return true;
  };

  it('SCRAM over verify-full TLS connects in production', async () => {
    await connect('production', cluster.url('schema=auth_ok'));
  });

  it('refuses md5 in production before answering it, and takes it with unsafeAllowWeakCredentials', async () => {
    const url = cluster.url('schema=auth_md5', { user: 'celeriac_md5', password: cluster.md5Password });
    await assert.rejects(connect('production', url), refused('CEL-011', /md5.*not SCRAM[\s\S]*unsafeAllowWeakCredentials/));
    await connect('production', url, { unsafeAllowWeakCredentials: true });
  });

  it('refuses a server that asks for no password (trust) in production; development allows it on loopback', async () => {
    const url = cluster.url('schema=auth_trust', { user: 'celeriac_trust' });
    await assert.rejects(connect('production', url), refused('CEL-001', /without asking for a password[\s\S]*unsafeAllowNoCredentials/));
    await connect('development', url);
    await connect('production', url, { unsafeAllowNoCredentials: true });
  });

  it('verify-full refuses a server certificate the given CA did not sign', async () => {
    const url = cluster.url('schema=auth_ca').replace(encodeURIComponent(pki.ca), encodeURIComponent(pki.otherCa));
    await assert.rejects(connect('production', url), /self[- ]signed|unable to verify|certificate/i);
  });

  it('postgres-roles: the worker role makes the tables; the producer sends, reads, runs beat and shares send-rate buckets, and can neither read nor erase replay nonces', async () => {
    const secret = await generateSecret('postgres-roles', { user: 'gen_worker', producerUser: 'gen_client', database: 'gen' });
    const item = (label: string): string => secret.items.find((i) => i.label.startsWith(label))!.value;
    // One statement at a time, as psql sends them (CREATE DATABASE cannot share a transaction).
    const statements = (sql: string): string[] => sql.split('\n').filter((l) => l.trim() && !l.startsWith('--'));
    for (const stmt of statements(item('SQL for the server'))) await cluster.admin(stmt);
    for (const stmt of statements(item('SQL for database'))) await cluster.admin(stmt, [], 'gen');
    const local = (url: string): string => url.replace('db.example', '127.0.0.1').replace('localhost', '127.0.0.1').replace(':5432/', `:${cluster.port}/`).replace(/sslrootcert=[^&]*/, `sslrootcert=${encodeURIComponent(pki.ca)}`);
    const workerUrl = local(item('worker broker'));
    const producerUrl = local(item('producer broker'));
    process.env.CELERIAC_ENV = 'production';
    try {
      const settings = resolveSettings({});
      const worker = engine.createBroker(workerUrl, { logger, settings });
      const producer = engine.createBroker(producerUrl, { logger, settings });
      open.push(worker, producer);
      await worker.connect();
      const results = engine.createBackend!(workerUrl, { logger, settings });
      await results.connect();
      const nonces = await engine.createReplayStore!({ url: workerUrl, side: 'broker', keyPrefix: '', logger, settings });
      assert.deepEqual(await nonces.claim('n-1', 'w', 60_000), { state: 'claimed' });

      const m = buildTaskMessage({ task: 'tasks.add', id: newId(), args: [1, 2], kwargs: {} }, JSON_SERIALIZER);
      await producer.publish('celery', m);
      assert.equal(await producer.queueLength('celery'), 1);
      const producerResults = engine.createBackend!(producerUrl, { logger, settings });
      await results.store([{ taskId: 'r-1', state: 'SUCCESS', payload: Buffer.from('{"status":"SUCCESS"}') }]);
      assert.equal((await producerResults.get('r-1'))?.toString(), '{"status":"SUCCESS"}');
      await producerResults.close();

      // celeriac beat runs with the producer role: its lease, its claims with the outbox, and the shared send-rate buckets work on the tables the worker made.
      const beat = await engine.createBeatStore!({ url: producerUrl, side: 'broker', keyPrefix: '', namespace: 'roles', logger, settings });
      const lease = await beat.acquire('b', 5000);
      assert.ok(lease.leader);
      const tick = buildTaskMessage({ task: 'tasks.tick', id: newId(), args: [], kwargs: {} }, JSON_SERIALIZER);
      const outbox = await producer.prepareOutbox!({ queue: 'celery', message: tick });
      assert.ok(outbox && beat.canCarry!(outbox));
      assert.deepEqual(await beat.claim({ token: lease.token, entry: 'e', tick: 1000, taskId: String(tick.headers.id), skipped: 0, publish: outbox }), { state: 'claimed', published: true });
      assert.equal(await producer.queueLength('celery'), 2);
      await beat.close();
      const buckets = await openSharedTokenBuckets(producerUrl, 'broker', 'rate-limit', { logger, settings });
      assert.equal(await buckets.take(['celeriac:ratelimit:p'], 1, [{ rate: 1, capacity: 1 }]), 0);
      await buckets.close();

      await assert.rejects(engine.createReplayStore!({ url: producerUrl, side: 'broker', keyPrefix: '', logger, settings }), /permission denied/);
      const raw = new pg.Client({ host: '127.0.0.1', port: cluster.port, user: 'gen_client', password: item('producer role password'), database: 'gen', ssl: { ca: readFileSync(pki.ca) } });
      await raw.connect();
      try {
        await assert.rejects(raw.query('DELETE FROM celeriac_replay.replay'), /permission denied/);
        await assert.rejects(raw.query('SELECT * FROM celeriac_replay.replay'), /permission denied/);
      } finally {
        await raw.end();
      }
      assert.deepEqual(await nonces.claim('n-1', 'other', 60_000), { state: 'held', holder: 'w' }, 'the nonce is intact');
      await nonces.close();
      await results.close();
    } finally {
      delete process.env.CELERIAC_ENV;
    }
  });

  it('rotates credentials (SIGHUP): a refused password keeps the old one; the new one is used from then on', async () => {
    await cluster.admin(`SET password_encryption = 'scram-sha-256'; CREATE ROLE rot_user LOGIN PASSWORD 'Old-Pw-4f9a8b7c6d5e4f3a2b1c'; GRANT ALL ON DATABASE celeriac TO rot_user`);
    const url = (pw: string): string => cluster.url('schema=rot', { user: 'rot_user', password: pw });
    process.env.CELERIAC_ENV = 'production';
    try {
      const broker = engine.createBroker(url('Old-Pw-4f9a8b7c6d5e4f3a2b1c'), { logger, settings: resolveSettings({}) });
      open.push(broker);
      await broker.publish('rot', buildTaskMessage({ task: 'tasks.add', id: newId(), args: [1, 1], kwargs: {} }, JSON_SERIALIZER));
      await assert.rejects(broker.updateCredentials!(url('Wrong-Pw-0a1b2c3d4e5f6a7b8c9d')), /password authentication failed/);
      await cluster.admin(`ALTER ROLE rot_user PASSWORD 'New-Pw-9f8e7d6c5b4a3f2e1d0c'`);
      await broker.updateCredentials!(url('New-Pw-9f8e7d6c5b4a3f2e1d0c'));
      // Connections opened from now on log in with the new password (the old one no longer works on the server).
      await cluster.admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'rot_user'`);
      await waitFor(async () => (await broker.queueLength('rot').catch(() => -1)) === 1, 10_000, 'a query on a new connection');
    } finally {
      delete process.env.CELERIAC_ENV;
    }
  });

  it('refuses sslmode=require (no verification) unless unsafeAllowInsecureTls', async () => {
    const url = cluster.url('schema=auth_req').replace('sslmode=verify-full', 'sslmode=require');
    await assert.rejects(connect('production', url), (err: unknown) => (err as { code?: string }).code === 'ERR_INSECURE_TLS');
    await connect('production', url, { unsafeAllowInsecureTls: true });
  });
});
