/**
 * Dashboard sessions and lockout counters that outlive a server: the SQLite
 * state file (restart with the same file, two servers sharing it), what the
 * file holds (hashes, never a cookie or CSRF token), expiry after a restart,
 * purge, the file's safety rules, and revocation from the CLI.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import type BetterSqlite3 from 'better-sqlite3';
import { Exit, type CliIo } from '../../../src/cli/io.ts';
import { main } from '../../../src/cli/main.ts';
import { createMemoryStateStore, defaultSessionDbPath, openSqliteStateStore, openUserStore, type DashboardStateStore } from '../../../src/dashboard/server/index.ts';
import { createLoginThrottle } from '../../../src/dashboard/server/lockout.ts';
import { csrfOf, sessionIdOf } from '../../../src/dashboard/server/sessions.ts';
import { PASSWORDS, startHarness, type Harness } from '../../helpers/dashboard-server.ts';
import { checkStateStoreContract } from '../../helpers/dashboard-state-contract.ts';

const Database = createRequire(import.meta.url)('better-sqlite3') as typeof BetterSqlite3;

const dirs: string[] = [];
function privateDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'celeriac-dash-state-'));
  dirs.push(d);
  return d;
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const me = (h: Harness, cookie: string) => h.server.app.inject({ url: '/api/me', headers: { cookie } });
const tokenOf = (cookie: string): string => cookie.slice(cookie.indexOf('=') + 1);

function rows(path: string, table: 'sessions' | 'login_throttle'): number {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
  } finally {
    db.close();
  }
}

/** Every byte SQLite keeps for the file: the database and its WAL (where fresh commits sit). */
function fileBytes(path: string): Buffer {
  return Buffer.concat(['', '-wal', '-shm', '-journal'].filter((s) => existsSync(path + s)).map((s) => readFileSync(path + s)));
}

describe('dashboard state stores: the contract the session and lockout rules rely on', () => {
  it('memory', async () => checkStateStoreContract(createMemoryStateStore()));
  it('SQLite', async () => {
    const store = openSqliteStateStore({ path: join(privateDir(), 'sessions.db') });
    try {
      await checkStateStoreContract(store);
    } finally {
      await store.close();
    }
  });
});

describe('dashboard session store (SQLite): restarts', () => {
  it('a new server on the same file accepts the old cookie, with the same CSRF token', async () => {
    const db = join(privateDir(), 'sessions.db');
    const a = await startHarness({ stateStore: { sqlite: db } });
    const s = await a.login('olga');
    await a.close();
    const b = await startHarness({ stateStore: { sqlite: db } });
    try {
      const res = await me(b, s.cookie);
      assert.equal(res.statusCode, 200);
      assert.equal(res.json().user, 'olga');
      assert.equal(res.json().role, 'operator');
      assert.equal(res.json().csrf, s.csrf, 'the CSRF token is derived from the cookie, so it survives too');
      const out = await b.server.app.inject({ method: 'POST', url: '/api/logout', headers: b.same({ cookie: s.cookie, 'x-csrf-token': s.csrf }) });
      assert.equal(out.statusCode, 200);
      assert.equal((await me(b, s.cookie)).statusCode, 401);
    } finally {
      await b.close();
    }
  });

  it('refuses an idle session and an over-age session after a restart, and purges their rows', async () => {
    const db = join(privateDir(), 'sessions.db');
    let now = 1_000_000;
    const timeouts = { idleMs: 60_000, absoluteMs: 300_000, now: () => now };
    const a = await startHarness({ stateStore: { sqlite: db }, sessions: timeouts });
    const idle = await a.login('victor');
    const old = await a.login('olga');
    await a.close();

    // Idle: nothing for longer than the idle timeout, across the restart.
    now += 30_000;
    const b = await startHarness({ stateStore: { sqlite: db }, sessions: timeouts });
    try {
      assert.equal((await me(b, old.cookie)).statusCode, 200);
      now += 40_000; // victor: 70 s without a request; olga: 40 s
      assert.equal((await me(b, idle.cookie)).statusCode, 401, 'idle timeout');
      assert.equal((await me(b, old.cookie)).statusCode, 200);
      // Over-age: olga keeps the session busy (never idle for a minute) until just before its absolute lifetime.
      for (let i = 0; i < 4; i++) {
        now += 50_000;
        assert.equal((await me(b, old.cookie)).statusCode, 200);
      }
    } finally {
      await b.close();
    }
    assert.equal(rows(db, 'sessions'), 1, 'the idle row was deleted when met');
    now += 50_000; // 320 s since the login, 50 s since the last request
    const c = await startHarness({ stateStore: { sqlite: db }, sessions: timeouts });
    try {
      assert.equal((await me(c, old.cookie)).statusCode, 401, 'absolute timeout');
      assert.equal(rows(db, 'sessions'), 0);
    } finally {
      await c.close();
    }
  });

  it('purges every expired row at a login, not only the ones met', async () => {
    const db = join(privateDir(), 'sessions.db');
    let now = 5_000_000;
    const h = await startHarness({ stateStore: { sqlite: db }, sessions: { idleMs: 10_000, now: () => now } });
    try {
      await h.login('victor');
      await h.login('olga');
      await h.login('clara');
      assert.equal(rows(db, 'sessions'), 3);
      now += 10_001;
      await h.login('admin');
      assert.equal(rows(db, 'sessions'), 1);
    } finally {
      await h.close();
    }
  });

  it('keeps an account lockout across a restart', async () => {
    const db = join(privateDir(), 'sessions.db');
    const lockout = { account: { maxFailures: 3 } };
    const a = await startHarness({ stateStore: { sqlite: db }, lockout });
    for (let i = 0; i < 3; i++) {
      const r = await a.server.app.inject({ method: 'POST', url: '/api/login', headers: a.same(), payload: { username: 'clara', password: `wrong-${i}-password` }, remoteAddress: `10.9.0.${i + 1}` });
      assert.equal(r.statusCode, 401);
    }
    await a.close();
    const b = await startHarness({ stateStore: { sqlite: db }, lockout });
    try {
      const r = await b.server.app.inject({ method: 'POST', url: '/api/login', headers: b.same(), payload: { username: 'clara', password: PASSWORDS.clara }, remoteAddress: '10.9.0.99' });
      assert.equal(r.statusCode, 429, 'still locked after the restart, even with the right password');
      assert.match(String(r.headers['retry-after']), /^\d+$/);
    } finally {
      await b.close();
    }
  });
});

describe('dashboard session store (SQLite): what the file holds', () => {
  it('holds the SHA-256 of each token, never the cookie value, its bytes or the CSRF token', async () => {
    const db = join(privateDir(), 'sessions.db');
    const h = await startHarness({ stateStore: { sqlite: db } });
    const sessions = [await h.login('admin'), await h.login('olga'), await h.login('victor')];
    // Let the other two sessions touch and log out, so every write path has run.
    await h.server.app.inject({ method: 'POST', url: '/api/logout', headers: h.same({ cookie: sessions[2]!.cookie, 'x-csrf-token': sessions[2]!.csrf }) });
    try {
      const bytes = fileBytes(db);
      const text = bytes.toString('latin1');
      for (const s of sessions) {
        const token = tokenOf(s.cookie);
        assert.equal(token.length, 43);
        assert.equal(text.includes(token), false, 'cookie value in the file');
        assert.equal(bytes.includes(Buffer.from(token, 'base64url')), false, 'raw token bytes in the file');
        assert.equal(text.includes(s.csrf), false, 'CSRF token in the file');
        assert.equal(s.csrf, csrfOf(token));
      }
      // The search does see the file's content: the hashes of the live sessions are there.
      assert.equal(text.includes(sessionIdOf(tokenOf(sessions[0]!.cookie))), true);
      assert.equal(statSync(db).mode & 0o777, 0o600);
      if (existsSync(`${db}-wal`)) assert.equal(statSync(`${db}-wal`).mode & 0o777, 0o600);
    } finally {
      await h.close();
    }
  });

  it('a CSRF token works only with the session it belongs to', async () => {
    const h = await startHarness({ stateStore: { sqlite: join(privateDir(), 'sessions.db') } });
    try {
      const a = await h.login('olga');
      const b = await h.login('olga');
      const r = await h.server.app.inject({ method: 'POST', url: '/api/logout', headers: h.same({ cookie: a.cookie, 'x-csrf-token': b.csrf }) });
      assert.equal(r.statusCode, 403);
      assert.equal((await me(h, a.cookie)).statusCode, 200);
    } finally {
      await h.close();
    }
  });
});

describe('dashboard session store: two servers sharing it', () => {
  const cases: Array<[string, () => { a: DashboardStateStore; b: DashboardStateStore; path?: string }]> = [
    [
      'SQLite, each server with its own connection (as two processes)',
      () => {
        const path = join(privateDir(), 'sessions.db');
        return { a: openSqliteStateStore({ path }), b: openSqliteStateStore({ path }), path };
      },
    ],
    [
      'memory, one store object',
      () => {
        const m = createMemoryStateStore();
        return { a: m, b: m };
      },
    ],
  ];
  for (const [name, open] of cases) {
    it(`${name}: a session, its logout, "log out everywhere" and a user removal count on both`, async () => {
      const { a: sa, b: sb } = open();
      const a = await startHarness({ stateStore: sa });
      const b = await startHarness({ stateStore: sb });
      try {
        const s = await a.login('victor');
        assert.equal((await me(b, s.cookie)).statusCode, 200, 'logged in on A, known on B');
        const out = await b.server.app.inject({ method: 'POST', url: '/api/logout', headers: b.same({ cookie: s.cookie, 'x-csrf-token': s.csrf }) });
        assert.equal(out.statusCode, 200);
        assert.equal((await me(a, s.cookie)).statusCode, 401, 'logged out on B, refused on A');

        const o1 = await a.login('olga');
        const o2 = await b.login('olga');
        const all = await b.server.app.inject({ method: 'POST', url: '/api/logout-everywhere', headers: b.same({ cookie: o2.cookie, 'x-csrf-token': o2.csrf }) });
        assert.equal(all.json().sessions, 2);
        assert.equal((await me(a, o1.cookie)).statusCode, 401);

        const c = await a.login('clara');
        const admin = await b.login('admin');
        const del = await b.server.app.inject({ method: 'DELETE', url: '/api/users/clara', headers: b.same({ cookie: admin.cookie, 'x-csrf-token': admin.csrf }) });
        assert.equal(del.statusCode, 200);
        assert.equal((await me(a, c.cookie)).statusCode, 401, 'removed on B, session gone on A');
      } finally {
        await a.close();
        await b.close();
        await sa.close();
        await sb.close();
      }
    });
  }

  it('SQLite: a logout on one server ends the live stream the session has open on the other', async () => {
    const path = join(privateDir(), 'sessions.db');
    const a = await startHarness({ stateStore: { sqlite: path } });
    const b = await startHarness({ stateStore: { sqlite: path } });
    try {
      const s = await a.login('victor');
      const url = await a.server.listen();
      const { request } = await import('node:https');
      let status = 0;
      let req: ReturnType<typeof request> | undefined;
      const ended = new Promise<void>((resolve, reject) => {
        req = request(`${url}/api/events`, { rejectUnauthorized: false, headers: { cookie: s.cookie } }, (res) => {
          status = res.statusCode ?? 0;
          res.resume();
          res.on('end', () => resolve());
        });
        req.on('error', reject);
        req.end();
      });
      await new Promise((r) => setTimeout(r, 700));
      assert.equal(status, 200);
      const out = await b.server.app.inject({ method: 'POST', url: '/api/logout', headers: b.same({ cookie: s.cookie, 'x-csrf-token': s.csrf }) });
      assert.equal(out.statusCode, 200);
      try {
        await Promise.race([ended, new Promise((_, rej) => setTimeout(() => rej(new Error('stream on A not ended after the logout on B')), 5000))]);
      } finally {
        req?.destroy();
      }
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('SQLite: failed logins on two servers count toward one lockout', async () => {
    const path = join(privateDir(), 'sessions.db');
    const sa = openSqliteStateStore({ path });
    const sb = openSqliteStateStore({ path });
    try {
      const opts = { maxFailures: 4, windowMs: 60_000, lockMs: 60_000 };
      const ta = createLoginThrottle({ ...opts, backend: sa.throttles });
      const tb = createLoginThrottle({ ...opts, backend: sb.throttles });
      assert.equal(await ta.fail('user:x'), false);
      assert.equal(await tb.fail('user:x'), false);
      assert.equal(await ta.fail('user:x'), false);
      assert.equal(await tb.fail('user:x'), true, 'the fourth failure, on either server, locks');
      assert.ok((await ta.lockedFor('user:x')) > 59_000);
      await tb.reset('user:x');
      assert.equal(await ta.lockedFor('user:x'), 0);
    } finally {
      await sa.close();
      await sb.close();
    }
  });
});

describe('dashboard session store: an account changed outside the server', () => {
  it('ends a password session at its next request when the account is removed or its role changes in the users file', async () => {
    const h = await startHarness();
    try {
      const v = await h.login('victor');
      const c = await h.login('clara');
      const other = openUserStore(h.usersPath); // another process: `celeriac dashboard users remove`
      assert.equal(other.remove('victor'), true);
      assert.equal((await me(h, v.cookie)).statusCode, 401);
      await other.add('clara', PASSWORDS.clara, 'viewer'); // view-clear withdrawn
      assert.equal((await me(h, c.cookie)).statusCode, 401);
    } finally {
      await h.close();
    }
  });
});

describe('dashboard session store: file safety', () => {
  it('creates the file 0600 in a 0700 directory', () => {
    const dir = join(privateDir(), 'new', 'deeper');
    const path = join(dir, 'sessions.db');
    const s = openSqliteStateStore({ path });
    void s.close();
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
  });

  it('refuses a symlink at the path or at a companion file, naming the fix (and the server does not start)', async () => {
    const dir = privateDir();
    const target = join(dir, 'elsewhere.db');
    writeFileSync(target, '', { mode: 0o600 });
    symlinkSync(target, join(dir, 'link.db'));
    assert.throws(() => openSqliteStateStore({ path: join(dir, 'link.db') }), (err: Error) => /is a symlink/.test(err.message) && /rm /.test(err.message));
    await assert.rejects(startHarness({ stateStore: { sqlite: join(dir, 'link.db') } }), /refusing the dashboard session store: .*link\.db is a symlink/);
    symlinkSync(target, join(dir, 'other.db-wal'));
    assert.throws(() => openSqliteStateStore({ path: join(dir, 'other.db') }), /other\.db-wal is a symlink/);
  });

  it('refuses a file other users may read, and a world-writable directory', () => {
    const dir = privateDir();
    const open = join(dir, 'open.db');
    writeFileSync(open, '');
    chmodSync(open, 0o644);
    assert.throws(() => openSqliteStateStore({ path: open }), (err: Error) => /accessible to every local user/.test(err.message) && /chmod 600/.test(err.message));
    const shared = join(dir, 'shared');
    mkdirSync(shared);
    chmodSync(shared, 0o777);
    assert.throws(() => openSqliteStateStore({ path: join(shared, 'sessions.db') }), /world-writable/);
    assert.equal(existsSync(join(shared, 'sessions.db')), false, 'nothing created there');
  });

  it('puts the default store beside the users file', () => {
    assert.equal(defaultSessionDbPath('/etc/celeriac/users.json'), '/etc/celeriac/users.sessions.db');
    assert.equal(defaultSessionDbPath('accounts'), 'accounts.sessions.db');
  });
});

describe('celeriac dashboard: revoking sessions from the command line', () => {
  function io(stdin?: string): { io: CliIo & { stdin?: NodeJS.ReadableStream }; out: () => string; err: () => string } {
    let out = '';
    let err = '';
    const sink = (append: (s: string) => void): Writable => new Writable({ write: (chunk: Buffer, _e, cb) => (append(chunk.toString()), cb()) });
    return {
      io: { stdout: sink((s) => (out += s)), stderr: sink((s) => (err += s)), env: { NODE_ENV: 'test' }, cwd: process.cwd(), ...(stdin !== undefined ? { stdin: Readable.from([stdin]) } : {}) },
      out: () => out,
      err: () => err,
    };
  }

  it('`users remove`, `users add` and `sessions revoke` end sessions in the store beside the users file', async () => {
    const probe = await startHarness();
    const usersPath = probe.usersPath;
    const db = defaultSessionDbPath(usersPath);
    const server = await startHarness({ stateStore: { sqlite: db }, users: openUserStore(usersPath) });
    try {
      const v = await server.login('victor');
      const o = await server.login('olga');
      const a = await server.login('admin');
      const rm = io();
      assert.equal(await main(['dashboard', 'users', 'remove', 'victor', '--users-file', usersPath], rm.io), Exit.OK, rm.err());
      assert.match(rm.out(), /removed victor and ended 1 open session/);
      assert.equal((await me(server, v.cookie)).statusCode, 401);

      const password = randomBytes(24).toString('base64url');
      const add = io(`${password}\n`);
      assert.equal(await main(['dashboard', 'users', 'add', 'olga', '--role', 'operator', '--users-file', usersPath], add.io), Exit.OK, add.err());
      assert.match(add.out(), /ended 1 open session/);
      assert.equal((await me(server, o.cookie)).statusCode, 401, 'a new password ends the sessions of the old one');

      assert.equal((await me(server, a.cookie)).statusCode, 200);
      const all = io();
      assert.equal(await main(['dashboard', 'sessions', 'revoke', '--all', '--users-file', usersPath], all.io), Exit.OK, all.err());
      assert.match(all.out(), /ended 1 session/);
      assert.equal((await me(server, a.cookie)).statusCode, 401);

      const usage = io();
      assert.equal(await main(['dashboard', 'sessions', 'revoke'], usage.io), Exit.USAGE);
    } finally {
      await server.close();
      await probe.close();
    }
  });
});
