/**
 * better-sqlite3 for the dashboard's own SQLite files (its task store, its
 * session store), loaded on first use: it is an optional dependency, and a
 * dashboard on memory stores never needs it.
 */
import { createRequire } from 'node:module';
import type Database from 'better-sqlite3';
import { ConfigError } from '../../errors.ts';

let driver: typeof Database | undefined;

/** The driver, or a `ConfigError` naming `what` needs it and `hint` (the way around it). */
export function loadSqliteDriver(what: string, hint: string): typeof Database {
  if (driver) return driver;
  try {
    driver = createRequire(import.meta.url)('better-sqlite3') as typeof Database;
    return driver;
  } catch (err) {
    throw new ConfigError(`${what} needs better-sqlite3, which is not installed or could not be loaded (${(err as Error).message.split('\n')[0]})`, { hint });
  }
}
