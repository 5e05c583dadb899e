/**
 * Where an embedded SQLite database lives: `sqlite://` URLs to absolute
 * paths and connection options, and the embedded default's location. Pure
 * and free of the native SQLite module, so `createApp` can use it without
 * loading SQLite for apps on Redis or RabbitMQ.
 *
 * URL options: `?synchronous=normal|full` (default normal; see `open.ts`),
 * `?busy_timeout=<ms>` (default 5000), `?wake=watch|poll` (default watch;
 * see `wake.ts`).
 */
import { isAbsolute, resolve } from 'node:path';
import type { AdapterContext } from '../../core/adapter-context.ts';
import { parseConnectionUrl } from '../../config/url.ts';
import { ConfigError } from '../../errors.ts';

/** Where the embedded default lives, relative to the working directory. */
export const DEFAULT_SQLITE_PATH = '.celeriac/celeriac.db';

/** How idle connections learn about other processes' commits. */
export type WakeMode = 'watch' | 'poll';

/** A database location and its connection options, from a `sqlite://` URL. */
export interface SqliteLocation {
  /** Absolute path of the database file. */
  path: string;
  synchronous: 'NORMAL' | 'FULL';
  busyTimeoutMs: number;
  /** `watch` (default): file-change notifications; `poll`: periodic checks only (for file systems without them). */
  wake: WakeMode;
}

/**
 * `sqlite://` URL of a path (made absolute against `cwd`), percent-encoding
 * each path segment so the URL parser gives the same path back.
 */
export function sqliteUrlForPath(path: string, cwd: string = process.cwd()): string {
  const abs = resolve(cwd, path);
  return `sqlite://${abs.split('/').map(encodeURIComponent).join('/')}`;
}

/** The embedded default's URL for a working directory (absolute, so a later chdir cannot split client and worker). */
export function defaultSqliteUrl(cwd: string = process.cwd()): string {
  return sqliteUrlForPath(DEFAULT_SQLITE_PATH, cwd);
}

/** Parse a `sqlite://` URL: `sqlite:///abs.db`, `sqlite://rel/path.db` (against `cwd`), `sqlite://` (the default file). */
export function sqliteLocationFromUrl(url: string, cwd: string = process.cwd()): SqliteLocation {
  const u = parseConnectionUrl(url);
  if (u.kind !== 'sqlite') throw new ConfigError(`${u.redacted} is not a sqlite:// URL`);
  const raw = u.path ?? DEFAULT_SQLITE_PATH;
  if (raw === ':memory:' || raw.startsWith('file:')) {
    throw new ConfigError(`SQLite URL ${u.redacted} does not name a file`, {
      hint: 'the SQLite broker and backend are shared between processes through a file: use sqlite:///abs/path.db or sqlite://relative/path.db (memory:// is the in-process transport)',
    });
  }
  const sync = (u.params.synchronous ?? 'normal').toUpperCase();
  if (sync !== 'NORMAL' && sync !== 'FULL') {
    throw new ConfigError(`SQLite URL ${u.redacted}: synchronous must be normal or full`, { hint: 'use ?synchronous=full to fsync every commit' });
  }
  const busy = u.params.busy_timeout === undefined ? 5000 : Number(u.params.busy_timeout);
  if (!Number.isInteger(busy) || busy < 0) throw new ConfigError(`SQLite URL ${u.redacted}: busy_timeout must be a whole number of milliseconds`);
  const wake = (u.params.wake ?? 'watch').toLowerCase();
  if (wake !== 'watch' && wake !== 'poll') throw new ConfigError(`SQLite URL ${u.redacted}: wake must be watch or poll`);
  return { path: isAbsolute(raw) ? raw : resolve(cwd, raw), synchronous: sync, busyTimeoutMs: busy, wake };
}

/** Options of the SQLite broker and result backend. */
export interface SqliteAdapterOptions extends AdapterContext {
  /** `sqlite:///abs/path.db`, `sqlite://relative/path.db`, or `sqlite://` for `.celeriac/celeriac.db`. */
  url: string;
  /** Directory relative paths are resolved against (default: the working directory). */
  cwd?: string;
}
