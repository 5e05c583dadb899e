/**
 * Dashboard sessions and lockout counters on a real Redis (a private
 * redis-server on a free loopback port), as dashboards on two hosts would
 * share them: each server has its own app and connection. A restarted
 * server (new fastify instance, new connection) accepts the old cookie;
 * logouts, "log out everywhere", user removals and lockouts count on both;
 * Redis holds no cookie value or CSRF token; idle sessions are refused after
 * a restart; failures counted at once on two servers lose none (WATCH).
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../../src/client/app.ts';
import { openDashboardStateStore } from '../../../src/client/dashboard-state.ts';
import { Exit } from '../../../src/cli/io.ts';
import { main } from '../../../src/cli/main.ts';
import type { DashboardStateStore } from '../../../src/core/dashboard-state.ts';
import { createLoginThrottle } from '../../../src/dashboard/server/lockout.ts';
import { createSessionStore, sessionIdOf } from '../../../src/dashboard/server/sessions.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { PASSWORDS, startHarness, type Harness } from '../../helpers/dashboard-server.ts';
import { checkStateStoreContract } from '../../helpers/dashboard-state-contract.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';

const me = (h: Harness, cookie: string) => h.server.app.inject({ url: '/api/me', headers: { cookie } });
const tokenOf = (cookie: string): string => cookie.slice(cookie.indexOf('=') + 1);

describe('dashboard session store on Redis', { skip: !hasRedisServer() && 'redis-server is not installed' }, () => {
  let redis: RedisServer;
  const apps: App[] = [];
  const stores: DashboardStateStore[] = [];
  /** A store as one dashboard host opens it: its own app, its own connection. */
  async function open(prefix = 'dash:'): Promise<DashboardStateStore> {
    const app = createApp({ brokerUrl: redis.url(5), brokerTransportOptions: { globalKeyprefix: prefix }, logger: createLogger({ level: 'silent' }) });
    apps.push(app);
    const store = await openDashboardStateStore(app);
    stores.push(store);
    return store;
  }

  before(async () => {
    redis = await startRedisServer();
  });
  after(async () => {
    for (const s of stores) await s.close();
    for (const a of apps) await a.close();
    await redis?.stop();
  });

  it('opens on the broker\'s Redis, and refuses an app without Redis, naming the fix', async () => {
    const s = await open();
    assert.equal(s.kind, 'redis');
    assert.match(s.location, /^redis:\/\/127\.0\.0\.1:\d+\/5$/);
    const app = createApp({ brokerUrl: 'amqp://guest:guest@127.0.0.1:1//', logger: createLogger({ level: 'silent' }) });
    try {
      await assert.rejects(openDashboardStateStore(app), (err: Error) => /needs a Redis broker or result backend/.test(err.message) && /sqlite:<path>/.test(err.message) && !/guest:guest/.test(err.message));
    } finally {
      await app.close();
    }
  });

  it('refuses, at open, a Redis user whose ACL lacks the dashboard\'s keys, naming the grant', async () => {
    const raw = redis.client();
    try {
      await raw.call('ACL', 'SETUSER', 'celery-only', 'on', '>celery-only-password-0123456789', '~celery*', '~_kombu*', '+@all');
    } finally {
      raw.disconnect();
    }
    const url = redis.url(5).replace('redis://', 'redis://celery-only:celery-only-password-0123456789@');
    const app = createApp({ brokerUrl: url, logger: createLogger({ level: 'silent' }) });
    try {
      await assert.rejects(openDashboardStateStore(app), (err: Error) => /may not use the dashboard's keys celeriac:dashboard:\*/.test(err.message) && /grant that user ~celeriac:dashboard:\*/.test(err.message) && !err.message.includes('celery-only-password'));
    } finally {
      await app.close();
    }
  });

  it('keeps the contract every state store keeps', async () => checkStateStoreContract(await open('contract:')));

  it('a restarted server (new instance, new connection) accepts the old cookie and CSRF token; Redis holds neither', async () => {
    const a = await startHarness({ stateStore: await open('restart:') });
    const s = await a.login('olga');
    const v = await a.login('victor');
    await a.close();
    const b = await startHarness({ stateStore: await open('restart:') });
    try {
      const res = await me(b, s.cookie);
      assert.equal(res.statusCode, 200);
      assert.equal(res.json().csrf, s.csrf);

      const raw = redis.client(5);
      try {
        const keys = await raw.keys('restart:celeriac:dashboard:*');
        assert.ok(keys.length >= 4, keys.join(' '));
        let dump = keys.join('\n');
        for (const key of keys) {
          const type = await raw.type(key);
          if (type === 'hash') dump += JSON.stringify(await raw.hgetall(key));
          else if (type === 'zset') dump += (await raw.zrange(key, '0', '-1', 'WITHSCORES')).join(',');
          else if (type === 'set') dump += (await raw.smembers(key)).join(',');
          else if (type === 'string') dump += await raw.get(key);
        }
        for (const x of [s, v]) {
          assert.equal(dump.includes(tokenOf(x.cookie)), false, 'cookie value in Redis');
          assert.equal(dump.includes(x.csrf), false, 'CSRF token in Redis');
        }
        assert.equal(dump.includes(sessionIdOf(tokenOf(s.cookie))), true, 'the dump does show the stored hashes');
        const ttl = await raw.pttl(`restart:celeriac:dashboard:{state}:session:${sessionIdOf(tokenOf(s.cookie))}`);
        assert.ok(ttl > 11 * 3_600_000 && ttl <= 12 * 3_600_000, `session key expires with the absolute timeout (${ttl} ms)`);
      } finally {
        raw.disconnect();
      }
    } finally {
      await b.close();
    }
  });

  it('logout, "log out everywhere" and a user removal on one server count on the other', async () => {
    const a = await startHarness({ stateStore: await open('share:') });
    const b = await startHarness({ stateStore: await open('share:') });
    try {
      const s = await a.login('victor');
      assert.equal((await me(b, s.cookie)).statusCode, 200);
      await b.server.app.inject({ method: 'POST', url: '/api/logout', headers: b.same({ cookie: s.cookie, 'x-csrf-token': s.csrf }) });
      assert.equal((await me(a, s.cookie)).statusCode, 401);

      const o1 = await a.login('olga');
      const o2 = await b.login('olga');
      const all = await a.server.app.inject({ method: 'POST', url: '/api/logout-everywhere', headers: a.same({ cookie: o1.cookie, 'x-csrf-token': o1.csrf }) });
      assert.equal(all.json().sessions, 2);
      assert.equal((await me(b, o2.cookie)).statusCode, 401);

      const c = await b.login('clara');
      const admin = await a.login('admin');
      const del = await a.server.app.inject({ method: 'DELETE', url: '/api/users/clara', headers: a.same({ cookie: admin.cookie, 'x-csrf-token': admin.csrf }) });
      assert.equal(del.statusCode, 200);
      assert.equal((await me(b, c.cookie)).statusCode, 401);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('refuses an idle session after a restart and purges it', async () => {
    let now = Date.now();
    const timeouts = { idleMs: 60_000, now: () => now };
    const state = await open('idle:');
    const a = await startHarness({ stateStore: state, sessions: timeouts });
    const s = await a.login('victor');
    await a.close();
    now += 61_000;
    const b = await startHarness({ stateStore: await open('idle:'), sessions: timeouts });
    try {
      assert.equal((await me(b, s.cookie)).statusCode, 401);
      const sessions = createSessionStore(state.sessions, timeouts);
      assert.equal(await sessions.count(), 0, 'the row met expired was deleted');
      await b.login('olga');
      now += 61_000;
      assert.equal(await sessions.purge(), 1);
      assert.equal(await sessions.count(), 0);
    } finally {
      await b.close();
    }
  });

  it('keeps a lockout across a restart', async () => {
    const lockout = { account: { maxFailures: 3 } };
    const a = await startHarness({ stateStore: await open('lock:'), lockout });
    for (let i = 0; i < 3; i++) {
      await a.server.app.inject({ method: 'POST', url: '/api/login', headers: a.same(), payload: { username: 'clara', password: `wrong-${i}-password` }, remoteAddress: `10.7.0.${i + 1}` });
    }
    await a.close();
    const b = await startHarness({ stateStore: await open('lock:'), lockout });
    try {
      const r = await b.server.app.inject({ method: 'POST', url: '/api/login', headers: b.same(), payload: { username: 'clara', password: PASSWORDS.clara }, remoteAddress: '10.7.0.99' });
      assert.equal(r.statusCode, 429);
    } finally {
      await b.close();
    }
  });

  it('failures counted at once on two servers lose none: exactly the 20th locks', async () => {
    const opts = { maxFailures: 20, windowMs: 60_000, lockMs: 60_000 };
    const ta = createLoginThrottle({ ...opts, backend: (await open('race:')).throttles });
    const tb = createLoginThrottle({ ...opts, backend: (await open('race:')).throttles });
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? ta : tb).fail('user:racer')));
    assert.equal(results.filter(Boolean).length, 1);
    assert.ok((await ta.lockedFor('user:racer')) > 59_000);
  });

  it('`celeriac dashboard sessions revoke --all --session-store redis` ends every session', async () => {
    const a = await startHarness({ stateStore: await open('') });
    try {
      const s = await a.login('admin');
      let out = '';
      let err = '';
      const sink = (append: (t: string) => void): Writable => new Writable({ write: (chunk: Buffer, _e, cb) => (append(chunk.toString()), cb()) });
      const code = await main(['dashboard', 'sessions', 'revoke', '--all', '--session-store', 'redis', '--broker', redis.url(5)], { stdout: sink((t) => (out += t)), stderr: sink((t) => (err += t)), env: { NODE_ENV: 'test' }, cwd: process.cwd() });
      assert.equal(code, Exit.OK, err);
      assert.match(out, /ended 1 session/);
      assert.equal((await me(a, s.cookie)).statusCode, 401);
    } finally {
      await a.close();
    }
  });
});
