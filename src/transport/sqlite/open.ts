/**
 * Opening the embedded SQLite database safely (its location comes from
 * `location.ts`): the file-system checks of `file-safety.ts`, creation with
 * mode 0600 in a 0700 directory, and the connection settings every Celeriac
 * connection uses.
 *
 * Connection settings and their trade-offs:
 * - `journal_mode=WAL`: readers never block the writer and vice versa, and
 *   several processes share the file safely (on a local file system; SQLite's
 *   WAL needs shared memory, so not over NFS).
 * - `synchronous=NORMAL` (default): a commit is durable against a crash of
 *   the process (SIGKILL, OOM kill) because the WAL is in the OS before the
 *   commit returns; after a power loss or kernel crash the last few commits
 *   may be lost, never the database's integrity. `?synchronous=full` fsyncs
 *   every commit (durable against power loss, several times slower).
 * - `busy_timeout` (default 5000 ms, `?busy_timeout=ms`): how long a
 *   connection waits for another process's write lock before failing.
 */
import { closeSync, constants, fchmodSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import type Database from 'better-sqlite3';
import { createRequire } from 'node:module';
import { ConfigError } from '../../errors.ts';
import type { Logger } from '../../observability/logging.ts';
import { gatherSqlitePathFacts, evaluateSqlitePath, type SqliteRole } from './file-safety.ts';
import type { SqliteLocation } from './location.ts';

export { DEFAULT_SQLITE_PATH, defaultSqliteUrl, sqliteLocationFromUrl, sqliteUrlForPath, type SqliteLocation, type WakeMode } from './location.ts';

/** The SQLite database type used by the adapters. */
export type SqliteDatabase = Database.Database;
/** A prepared statement taking positional or named parameters. */
export type SqliteStatement = Database.Statement<unknown[]>;

/**
 * Check the path (refusing with a `ConfigError` that names the path and the
 * fix), log its warnings, and create the directory (0700) and the file
 * (0600) when missing.
 */
export function prepareSqliteFile(path: string, role: SqliteRole, logger?: Pick<Logger, 'warn'>): void {
  if (process.platform !== 'win32') {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const report = evaluateSqlitePath(gatherSqlitePathFacts(path), role);
    for (const w of report.warnings) logger?.warn({ path, fix: w.fix }, w.message);
    const first = report.refusals[0];
    if (first) {
      const more = report.refusals.length > 1 ? ` (and ${report.refusals.length - 1} more: ${report.refusals.slice(1).map((r) => r.message).join('; ')})` : '';
      throw new ConfigError(`${first.message}${more}`, { hint: first.fix, code: 'ERR_SQLITE_UNSAFE_PATH' });
    }
  } else {
    mkdirSync(dirname(path), { recursive: true });
  }
  try {
    // O_EXCL + O_NOFOLLOW: create it ourselves, never through a planted symlink.
    const fd = openSync(path, constants.O_CREAT | constants.O_EXCL | constants.O_RDWR | (constants.O_NOFOLLOW ?? 0), 0o600);
    try {
      fchmodSync(fd, 0o600); // whatever the umask says
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new ConfigError(`cannot create SQLite database ${path}: ${(err as Error).message}`, { hint: 'check that the directory exists and is writable by this user' });
    }
  }
}

/** Options of {@link openSqlite}. */
export interface OpenSqliteOptions {
  role: SqliteRole;
  logger?: Pick<Logger, 'warn'>;
}

/**
 * Open a connection with Celeriac's settings (after `prepareSqliteFile`).
 * SQLite creates `-wal` and `-shm` with the database file's own mode, so
 * they are 0600 as well.
 */
let driver: typeof Database | undefined;

/**
 * better-sqlite3 is an optional dependency (a native module: an install
 * where it cannot be built still serves Redis and RabbitMQ), loaded on first
 * use of a `sqlite://` URL.
 */
function sqliteDriver(): typeof Database {
  if (driver) return driver;
  try {
    driver = createRequire(import.meta.url)('better-sqlite3') as typeof Database;
    return driver;
  } catch (err) {
    throw new ConfigError(`the embedded SQLite broker and backend need better-sqlite3, which is not installed or could not be loaded (${(err as Error).message.split('\n')[0]})`, {
      hint: 'install it (npm install better-sqlite3; it needs a prebuilt binary for your platform or a C++ toolchain), or set CELERIAC_BROKER_URL / CELERIAC_RESULT_BACKEND to a redis:// or amqp:// URL',
    });
  }
}

export function openSqlite(location: SqliteLocation, options: OpenSqliteOptions): SqliteDatabase {
  prepareSqliteFile(location.path, options.role, options.logger);
  const Driver = sqliteDriver();
  let db: SqliteDatabase;
  try {
    db = new Driver(location.path, { timeout: location.busyTimeoutMs, fileMustExist: true });
  } catch (err) {
    throw new ConfigError(`cannot open SQLite database ${location.path}: ${(err as Error).message}`, { hint: 'check the path and its permissions', cause: err });
  }
  try {
    db.pragma(`busy_timeout = ${location.busyTimeoutMs}`);
    // Switching to WAL needs a moment of exclusive access; several processes may open a new file at once.
    let mode: unknown;
    for (let attempt = 0; ; attempt++) {
      try {
        mode = db.pragma('journal_mode = WAL', { simple: true });
        break;
      } catch (err) {
        if ((err as { code?: string }).code !== 'SQLITE_BUSY' || attempt >= 20) throw err;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 25);
      }
    }
    if (String(mode).toLowerCase() !== 'wal') {
      throw new ConfigError(`SQLite database ${location.path} could not switch to WAL mode (got ${String(mode)})`, { hint: 'use a local file system; network file systems do not support WAL' });
    }
    db.pragma(`synchronous = ${location.synchronous}`);
    // Keep the WAL file from staying large after a burst.
    db.pragma('journal_size_limit = 67108864');
    db.pragma('temp_store = MEMORY');
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/** True for SQLite's "database is locked/busy" errors, which are worth a retry. */
export function isBusyError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'));
}
