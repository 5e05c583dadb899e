/**
 * The dashboard's state in SQLite (better-sqlite3, WAL): sessions and login
 * lockout counters in one 0600 file, by default beside the users file
 * (`users.json` → `users.sessions.db`). A restart keeps everyone logged in
 * and keeps lockouts; dashboards on one host sharing the file (replicas
 * behind a load balancer) share both. WAL lets them read while one writes;
 * it needs a local file system (not NFS).
 *
 * What is stored per session: the SHA-256 of the cookie token (never the
 * token), user, role, view-clear grant, login method and two times. The CSRF
 * token is derived from the cookie token and not stored either. Expired rows
 * are deleted when met and at every login (sessions.ts).
 */
import { basename, dirname, extname, join } from 'node:path';
import type Database from 'better-sqlite3';
import { loadSqliteDriver } from '../model/sqlite-driver.ts';
import { ConfigError } from '../../errors.ts';
import type { DashboardStateStore, SessionBackend, SessionRecord, ThrottleBackend, ThrottleEntry } from '../../core/dashboard-state.ts';
import { preparePrivateDbFile } from './private-db-file.ts';

const SCHEMA_VERSION = '1';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY NOT NULL,
  user TEXT NOT NULL,
  role TEXT NOT NULL,
  view_clear INTEGER NOT NULL,
  method TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  last_seen INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions(user);
CREATE INDEX IF NOT EXISTS sessions_by_last_seen ON sessions(last_seen);
CREATE INDEX IF NOT EXISTS sessions_by_created ON sessions(created_at);
CREATE TABLE IF NOT EXISTS login_throttle (
  key TEXT PRIMARY KEY NOT NULL,
  failures TEXT NOT NULL,
  locked_until INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS login_throttle_by_expiry ON login_throttle(expires_at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', '${SCHEMA_VERSION}');
`;

/** The default session store of a users file: same directory, `<name>.sessions.db`. */
export function defaultSessionDbPath(usersFile: string): string {
  return join(dirname(usersFile), `${basename(usersFile, extname(usersFile))}.sessions.db`);
}

export interface SqliteStateOptions {
  /** Database file (created 0600 in a 0700 directory when missing; see private-db-file.ts for what is refused). */
  path: string;
  /** Warnings about the file's permissions (default stderr). */
  warn?: (line: string) => void;
  /** How long to wait for another process's write lock, ms (default 5000). */
  busyTimeoutMs?: number;
}

type SessionRow = { id: string; user: string; role: string; view_clear: number; method: string; created_at: number; last_seen: number };
type ThrottleRow = { failures: string; locked_until: number; expires_at: number };

/** Open (or create) the SQLite state store. */
export function openSqliteStateStore(options: SqliteStateOptions): DashboardStateStore {
  const warn = options.warn ?? ((line: string) => process.stderr.write(`${line}\n`));
  preparePrivateDbFile(options.path, warn);
  const Driver = loadSqliteDriver("the dashboard's SQLite session store", 'install it (npm install better-sqlite3), or pass --session-store memory (a restart then logs everyone out)');
  let db: Database.Database;
  try {
    db = new Driver(options.path, { timeout: options.busyTimeoutMs ?? 5000, fileMustExist: true });
  } catch (err) {
    throw new ConfigError(`cannot open the dashboard session store ${options.path}: ${(err as Error).message}`, { hint: 'check the path and its permissions', cause: err });
  }
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.exec(SCHEMA);
    const version = (db.prepare("SELECT value FROM meta WHERE key = 'schema'").get() as { value: string } | undefined)?.value;
    if (version !== SCHEMA_VERSION) {
      throw new ConfigError(`the dashboard session store ${options.path} has schema ${String(version)}, this version reads ${SCHEMA_VERSION}`, { hint: 'use the dashboard version that wrote it, or delete the file (everyone logs in again)' });
    }
  } catch (err) {
    db.close();
    throw err;
  }

  const q = {
    insert: db.prepare('INSERT INTO sessions (id, user, role, view_clear, method, created_at, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?)'),
    find: db.prepare('SELECT id, user, role, view_clear, method, created_at, last_seen FROM sessions WHERE id = ?'),
    touch: db.prepare('UPDATE sessions SET last_seen = ? WHERE id = ? AND last_seen < ?'),
    delete: db.prepare('DELETE FROM sessions WHERE id = ?'),
    deleteUser: db.prepare('DELETE FROM sessions WHERE user = ?'),
    deleteAll: db.prepare('DELETE FROM sessions'),
    purge: db.prepare('DELETE FROM sessions WHERE last_seen < ? OR created_at < ?'),
    count: db.prepare('SELECT count(*) AS n FROM sessions'),
    tGet: db.prepare('SELECT failures, locked_until, expires_at FROM login_throttle WHERE key = ?'),
    tPut: db.prepare('INSERT INTO login_throttle (key, failures, locked_until, expires_at) VALUES (?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET failures = excluded.failures, locked_until = excluded.locked_until, expires_at = excluded.expires_at'),
    tDelete: db.prepare('DELETE FROM login_throttle WHERE key = ?'),
    tPurge: db.prepare('DELETE FROM login_throttle WHERE expires_at < ?'),
  };

  const sessions: SessionBackend = {
    async insert(r: SessionRecord) {
      q.insert.run(r.id, r.user, r.role, r.viewClear ? 1 : 0, r.method, r.createdAt, r.lastSeen);
    },
    async find(id) {
      const row = q.find.get(id) as SessionRow | undefined;
      if (!row) return undefined;
      // role and method are checked by the session rules (sessions.ts), which drop a row they do not recognise.
      return { id: row.id, user: row.user, role: row.role, viewClear: row.view_clear === 1, method: row.method, createdAt: row.created_at, lastSeen: row.last_seen };
    },
    async touch(id, lastSeen) {
      // Never moves last_seen backwards when replicas' clocks differ a little.
      q.touch.run(lastSeen, id, lastSeen);
    },
    async delete(id) {
      q.delete.run(id);
    },
    deleteUser: async (user) => q.deleteUser.run(user).changes,
    deleteAll: async () => q.deleteAll.run().changes,
    purge: async (seenBefore, createdBefore) => q.purge.run(seenBefore, createdBefore).changes,
    count: async () => (q.count.get() as { n: number }).n,
  };

  const decode = (row: ThrottleRow | undefined): ThrottleEntry | undefined => {
    if (!row) return undefined;
    let failures: unknown;
    try {
      failures = JSON.parse(row.failures);
    } catch {
      failures = [];
    }
    return { failures: Array.isArray(failures) ? failures.filter((f): f is number => typeof f === 'number') : [], lockedUntil: row.locked_until, expiresAt: row.expires_at };
  };
  // IMMEDIATE: take the write lock before reading, so two replicas counting the same key do not lose a failure.
  const update = db.transaction((key: string, fn: (e: ThrottleEntry | undefined) => ThrottleEntry | undefined): ThrottleEntry | undefined => {
    const next = fn(decode(q.tGet.get(key) as ThrottleRow | undefined));
    if (next) q.tPut.run(key, JSON.stringify(next.failures), next.lockedUntil, next.expiresAt);
    else q.tDelete.run(key);
    return next;
  });
  const throttles: ThrottleBackend = {
    get: async (key) => decode(q.tGet.get(key) as ThrottleRow | undefined),
    update: async (key, fn) => update.immediate(key, fn),
    async delete(key) {
      q.tDelete.run(key);
    },
    purge: async (t) => q.tPurge.run(t).changes,
  };

  let closed = false;
  return {
    kind: 'sqlite',
    location: options.path,
    sessions,
    throttles,
    async close() {
      if (closed) return;
      closed = true;
      db.close();
    },
  };
}
