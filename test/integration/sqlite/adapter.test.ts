/**
 * SQLite-specific behaviour beyond the conformance suites: file safety,
 * delayed (ETA) messages, kombu's multi-queue priority order, schema
 * versions, the embedded default of createApp, and a worker on SQLite.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { createApp } from '../../../src/client/app.ts';
import { createSqliteBackend } from '../../../src/transport/sqlite/backend.ts';
import { createSqliteBroker, type SqliteBroker } from '../../../src/transport/sqlite/broker.ts';
import type { Delivery } from '../../../src/core/broker.ts';
import { JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { ConfigError } from '../../../src/errors.ts';
import { generateSigningKey } from '../../../src/codec/signing/index.ts';
import { InsecureConfigError } from '../../../src/config/policy.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { newId } from '../../../src/protocol/ids.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';
import type { WireMessage } from '../../../src/protocol/types.ts';
import { DEFAULT_SQLITE_PATH, sqliteUrlForPath } from '../../../src/transport/sqlite/open.ts';
import { createWorker } from '../../../src/worker/worker.ts';
import { captureLogger } from '../../helpers/app-fixture.ts';
import { waitFor } from '../../helpers/services.ts';

const root = mkdtempSync(join(tmpdir(), 'celeriac-sqlite-adapter-'));
after(() => rmSync(root, { recursive: true, force: true }));
const logger = createLogger({ level: 'silent' });
let n = 0;
const fresh = (): { dir: string; file: string; url: string } => {
  const dir = join(root, `d${++n}`);
  const file = join(dir, 'sub', 'q.db');
  return { dir, file, url: sqliteUrlForPath(file) };
};
const broker = (url: string, vt = 3600): SqliteBroker =>
  createSqliteBroker({ url, logger, settings: resolveSettings({ brokerTransportOptions: { visibilityTimeout: vt } }) });
const msg = (i: number, extra: { eta?: number; priority?: number } = {}): WireMessage =>
  buildTaskMessage({ task: 'tasks.add', id: newId(), args: [i, i], kwargs: {}, eta: extra.eta ?? null, priority: extra.priority ?? 0 }, JSON_SERIALIZER);
const argOf = (d: Delivery): number => (JSON.parse(d.message.body.toString()) as [number[]])[0]![0]!;

describe('sqlite file safety', () => {
  it('creates the directory 0700 and the database, WAL, SHM and wake files 0600', async () => {
    const { file, url } = fresh();
    const b = broker(url);
    await b.publish('q', msg(1));
    const c = await b.consume(['q'], { prefetch: 1 }, (d) => void d.ack());
    await waitFor(async () => (await b.queueLength('q')) === 0, 5000, 'drain');
    assert.equal(statSync(join(file, '..')).mode & 0o777, 0o700);
    for (const f of [file, `${file}-wal`, `${file}-shm`, `${file}-wake-queue`]) assert.equal(statSync(f).mode & 0o777, 0o600, f);
    await c.cancel();
    await b.close();
  });

  it('refuses a world-writable directory with a ConfigError naming the path and the fix', async () => {
    const dir = join(root, 'open-dir');
    mkdirSync(dir);
    chmodSync(dir, 0o777);
    const b = broker(sqliteUrlForPath(join(dir, 'q.db')));
    await assert.rejects(b.connect(), (e: unknown) => e instanceof ConfigError && e.message.includes(`${dir} is world-writable`) && /chmod o-w/.test(e.message));
    const be = createSqliteBackend({ url: sqliteUrlForPath(join(dir, 'r.db')), logger, settings: resolveSettings({}) });
    await assert.rejects(be.connect(), (e: unknown) => e instanceof ConfigError && (e as ConfigError).code === 'ERR_SQLITE_UNSAFE_PATH');
  });

  it('refuses a database path that is a symlink, and a planted -wal symlink', async () => {
    const { dir } = fresh();
    mkdirSync(dir, { mode: 0o700 });
    writeFileSync(join(dir, 'real.db'), '', { mode: 0o600 });
    symlinkSync(join(dir, 'real.db'), join(dir, 'link.db'));
    await assert.rejects(broker(sqliteUrlForPath(join(dir, 'link.db'))).connect(), (e: unknown) => e instanceof ConfigError && /link\.db is a symlink to/.test(e.message));
    symlinkSync(join(dir, 'elsewhere'), join(dir, 'x.db-wal'));
    await assert.rejects(broker(sqliteUrlForPath(join(dir, 'x.db'))).connect(), (e: unknown) => e instanceof ConfigError && /x\.db-wal is a symlink/.test(e.message));
  });

  it('refuses an existing database readable by every user', async () => {
    const { dir } = fresh();
    mkdirSync(dir, { mode: 0o700 });
    writeFileSync(join(dir, 'open.db'), '');
    chmodSync(join(dir, 'open.db'), 0o644);
    await assert.rejects(broker(sqliteUrlForPath(join(dir, 'open.db'))).connect(), (e: unknown) => e instanceof ConfigError && /chmod 600/.test(e.message));
  });

  it('refuses a database written by a newer Celeriac', async () => {
    const { file, url } = fresh();
    const b = broker(url);
    await b.connect();
    await b.close();
    const db = new Database(file);
    db.prepare("UPDATE celeriac_meta SET value = 99 WHERE key = 'schema.broker'").run();
    db.close();
    await assert.rejects(broker(url).connect(), (e: unknown) => e instanceof ConfigError && /newer than this Celeriac knows/.test(e.message));
  });
});

describe('sqlite broker semantics', () => {
  it('holds an ETA message until it is due, counting it as waiting', async () => {
    const { url } = fresh();
    const b = broker(url);
    const eta = Date.now() + 700;
    await b.publish('q', msg(1, { eta }));
    await b.publish('q', msg(2));
    assert.equal(await b.queueLength('q'), 2);
    const got: Array<{ n: number; at: number }> = [];
    const c = await b.consume(['q'], { prefetch: 10 }, (d) => {
      got.push({ n: argOf(d), at: Date.now() });
      void d.ack();
    });
    await waitFor(() => got.length === 1, 5000, 'the ready message');
    assert.equal(got[0]!.n, 2);
    await waitFor(() => got.length === 2, 5000, 'the delayed message');
    assert.equal(got[1]!.n, 1);
    assert.ok(got[1]!.at >= eta, `delivered ${eta - got[1]!.at} ms early`);
    assert.ok(got[1]!.at - eta < 500, `delivered ${got[1]!.at - eta} ms late`);
    await c.cancel();
    await b.publish('q', msg(3, { eta: Date.now() + 60_000 }));
    assert.equal(await b.purge('q'), 1);
    assert.equal(await b.queueLength('q'), 0);
    await b.close();
  });

  it('serves several queues in kombu order: priority bucket outer, queue order inner', async () => {
    const { url } = fresh();
    const b = broker(url);
    await b.publish('b', msg(1, { priority: 0 }));
    await b.publish('a', msg(2, { priority: 3 }));
    await b.publish('a', msg(3, { priority: 0 }));
    await b.publish('b', msg(4, { priority: 9 }));
    await b.publish('a', msg(5, { priority: 1 })); // bucket 0
    const got: number[] = [];
    const c = await b.consume(['a', 'b'], { prefetch: 0 }, (d) => {
      got.push(argOf(d));
      void d.ack();
    });
    await waitFor(() => got.length === 5, 5000, 'all');
    assert.deepEqual(got, [3, 5, 1, 2, 4]);
    await c.cancel();
    await b.close();
  });

  it('restores an expired lease to the head of the queue, flagged as redelivered', async () => {
    const { url } = fresh();
    const b = broker(url, 3600);
    await b.publishMany([1, 2].map((i) => ({ queue: 'q', message: msg(i) })));
    const got: Delivery[] = [];
    const c = await b.consume(['q'], { prefetch: 1 }, (d) => got.push(d));
    await waitFor(() => got.length === 1, 5000, 'first');
    await c.cancel();
    // Pretend an hour passed without renewal (the consumer "died").
    assert.equal(b.restoreExpired(Date.now() + 3_601_000), 1);
    const again: Delivery[] = [];
    const c2 = await b.consume(['q'], { prefetch: 1 }, (d) => again.push(d));
    await waitFor(() => again.length === 1, 5000, 'redelivery');
    assert.equal(argOf(again[0]!), 1);
    assert.equal(again[0]!.redelivered, true);
    // The first delivery's lease is gone: settling it now changes nothing.
    await got[0]!.ack();
    await again[0]!.ack();
    await waitFor(() => again.length === 2, 5000, 'second');
    await again[1]!.ack();
    await c2.cancel();
    assert.equal(await b.queueLength('q'), 0);
    await b.close();
  });
});

describe('sqlite with the worker', () => {
  it('runs tasks with countdown, revokes expired ones, stores results a client in another app reads', async () => {
    const { url } = fresh();
    const { logger: wlog } = captureLogger();
    const app = createApp({ brokerUrl: url, resultBackend: url, logger: wlog });
    const add = app.task('t.add', (x: number, y: number) => x + y, { params: ['x', 'y'] });
    const worker = createWorker({ app, pool: 'solo', concurrency: 2, shutdownTimeoutMs: 2000 });
    await worker.start();
    const client = createApp({ brokerUrl: url, resultBackend: url, logger: wlog });
    const addRemote = client.remoteTask<(x: number, y: number) => number>('t.add');
    try {
      const t0 = Date.now();
      const later = await addRemote.applyAsync([2, 3], {}, { countdown: 0.5 });
      const now = await addRemote.delay(1, 1);
      assert.equal(await now.get({ timeoutMs: 5000 }), 2);
      assert.equal(await later.get({ timeoutMs: 5000 }), 5);
      assert.ok(Date.now() - t0 >= 500);
      const gone = await addRemote.applyAsync([1, 2], {}, { expires: new Date(Date.now() - 1000) });
      await gone.get({ timeoutMs: 5000, propagate: false });
      assert.equal(await client.asyncResult(gone.id).status(), 'REVOKED');
      assert.equal(add.name, 't.add');
    } finally {
      await worker.stop();
      await app.close();
      await client.close();
    }
  });
});

describe('createApp: the embedded default', () => {
  it('uses .celeriac/celeriac.db under the working directory when nothing is configured, and says so', async () => {
    const cwd = process.cwd();
    const dir = join(root, 'app-default');
    mkdirSync(dir, { mode: 0o700 });
    process.chdir(dir);
    try {
      const { logger: l, logs } = captureLogger();
      const app = createApp({ env: { CELERIAC_ENV: 'development' }, logger: l });
      const expected = sqliteUrlForPath(join(dir, DEFAULT_SQLITE_PATH));
      assert.equal(app.settings.brokerUrl, expected);
      assert.equal(app.settings.resultBackend, expected);
      const t = app.task('t.echo', (x: number) => x, { params: ['x'] });
      const r = await t.delay(1);
      assert.equal((await app.broker()).kind, 'sqlite');
      assert.equal(statSync(join(dir, DEFAULT_SQLITE_PATH)).mode & 0o777, 0o600);
      assert.ok(logs.some((l) => String(l.msg).includes('no broker configured: using the embedded SQLite broker and result backend at')));
      assert.equal(logs.filter((l) => String(l.msg).includes('no broker configured')).length, 1);
      // A second app in the same directory (another process, say) meets on the same file.
      const other = createApp({ env: { CELERIAC_ENV: 'development' }, logger: l });
      const broker2 = await other.broker();
      assert.equal(await broker2.queueLength('celery'), 1);
      assert.equal(r.id.length > 0, true);
      await app.close();
      await other.close();
    } finally {
      process.chdir(cwd);
    }
  });

  it('in production (no mode variable set) the embedded default needs message signing and nothing else; with a signing ring it runs', async () => {
    const cwd = process.cwd();
    const dir = join(root, 'app-default-production');
    mkdirSync(dir, { mode: 0o700 });
    process.chdir(dir);
    try {
      const bare = createApp({ env: {}, logger });
      assert.equal(bare.production, true);
      await assert.rejects(bare.broker(), (e: unknown) => {
        assert.ok(e instanceof InsecureConfigError, String(e));
        assert.deepEqual(e.findings.map((f) => `${f.id} ${f.setting}`), ['CEL-007 securitySigningKeys'], 'no network exposure: only signing is asked for');
        return true;
      });
      await bare.close();
      const ring = generateSigningKey('ed25519', 'embedded-prod-k1');
      const signed = createApp({ env: { CELERIAC_SIGNING_KEYS: ring.signingLine }, logger });
      assert.equal(signed.production, true);
      const t = signed.task('t.echo', (x: number) => x, { params: ['x'] });
      await t.delay(1);
      assert.equal((await signed.broker()).kind, 'sqlite');
      assert.equal(await (await signed.broker()).queueLength('celery'), 1);
      await signed.close();
    } finally {
      process.chdir(cwd);
    }
  });

  it('explicit configuration wins; an explicit broker without a result backend keeps no results', () => {
    const a = createApp({ env: { CELERIAC_BROKER_URL: 'redis://127.0.0.1:6379/0' }, logger });
    assert.equal(a.settings.brokerUrl, 'redis://127.0.0.1:6379/0');
    assert.equal(a.settings.resultBackend, undefined);
    const b = createApp({ env: { NODE_ENV: 'test' }, brokerUrl: 'memory://', logger });
    assert.equal(b.settings.resultBackend, undefined);
    const c = createApp({ env: { CELERIAC_RESULT_BACKEND: 'redis://127.0.0.1:6379/1' }, logger });
    assert.match(c.settings.brokerUrl!, /^sqlite:\/\//);
    assert.equal(c.settings.resultBackend, 'redis://127.0.0.1:6379/1');
    const d = createApp({ env: { NODE_ENV: 'test' }, backend: null, logger });
    assert.match(d.settings.brokerUrl!, /^sqlite:\/\//);
    assert.equal(d.settings.resultBackend, undefined);
  });
});
