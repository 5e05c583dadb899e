/**
 * Schema and migrations of the embedded database. The broker and the result
 * backend may share one file or use two; each migrates its own tables, and
 * both record their version in `celeriac_meta` (which also holds the
 * counters that order messages and result versions).
 */
import { ConfigError } from '../../errors.ts';
import type { SqliteDatabase } from './open.ts';

/** A component with its own tables. */
export type SchemaComponent = 'broker' | 'backend';

const META = `CREATE TABLE IF NOT EXISTS celeriac_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID`;

/**
 * Migrations by component; entry `i` takes the schema from version `i` to
 * `i + 1`. Never edit a released entry: append a new one.
 */
export const MIGRATIONS: Readonly<Record<SchemaComponent, readonly (readonly string[])[]>> = {
  broker: [
    [
      // state: 0 ready, 1 reserved (leased to a consumer), 2 delayed (ETA/countdown not yet due).
      // priority holds kombu's bucket (0, 3, 6, 9; lower first); seq orders FIFO within a bucket
      // (negative seq = put back at the head, served next).
      `CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        queue TEXT NOT NULL,
        priority INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        state INTEGER NOT NULL,
        not_before INTEGER NOT NULL DEFAULT 0,
        lease_until INTEGER,
        tag TEXT,
        redelivered INTEGER NOT NULL DEFAULT 0,
        headers TEXT NOT NULL,
        properties TEXT NOT NULL,
        content_type TEXT NOT NULL,
        content_encoding TEXT NOT NULL,
        body BLOB NOT NULL,
        published_at INTEGER NOT NULL
      )`,
      `CREATE INDEX messages_ready ON messages (queue, priority, seq) WHERE state = 0`,
      `CREATE INDEX messages_delayed ON messages (queue, not_before) WHERE state = 2`,
      `CREATE INDEX messages_leased ON messages (lease_until) WHERE state = 1`,
      `CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY,
        queue TEXT NOT NULL,
        reason TEXT NOT NULL,
        at INTEGER NOT NULL,
        headers TEXT,
        properties TEXT,
        content_type TEXT,
        content_encoding TEXT,
        body BLOB
      )`,
      `CREATE INDEX dead_letters_queue ON dead_letters (queue, id)`,
      `INSERT OR IGNORE INTO celeriac_meta (key, value) VALUES ('broker.seq', 0)`,
    ],
    [
      // Broadcasts (events, remote control, control replies): each subscriber reads the rows of its
      // exchange after its own cursor (ids only grow: AUTOINCREMENT never reuses the id of a pruned
      // row); rows are pruned by age.
      `CREATE TABLE fanout (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        exchange TEXT NOT NULL,
        routing_key TEXT NOT NULL,
        headers TEXT NOT NULL,
        properties TEXT NOT NULL,
        content_type TEXT NOT NULL,
        content_encoding TEXT NOT NULL,
        body BLOB NOT NULL,
        created_at INTEGER NOT NULL
      )`,
      `CREATE INDEX fanout_exchange ON fanout (exchange, id)`,
      `CREATE INDEX fanout_age ON fanout (created_at)`,
    ],
  ],
  backend: [
    [
      // version: a database-wide counter bumped on every write, so a waiting
      // process finds new records with one index range scan.
      `CREATE TABLE results (
        task_id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        payload BLOB NOT NULL,
        expires_at INTEGER,
        version INTEGER NOT NULL
      )`,
      `CREATE INDEX results_version ON results (version, task_id)`,
      `CREATE INDEX results_expiry ON results (expires_at) WHERE expires_at IS NOT NULL`,
      `INSERT OR IGNORE INTO celeriac_meta (key, value) VALUES ('backend.version', 0)`,
    ],
    [
      // Expiring id sets (the revoked task ids): a row per id, so concurrent writers never lose each other's.
      `CREATE TABLE expiring_ids (
        name TEXT NOT NULL,
        id TEXT NOT NULL,
        until INTEGER NOT NULL,
        PRIMARY KEY (name, id)
      ) WITHOUT ROWID`,
      `CREATE INDEX expiring_ids_until ON expiring_ids (name, until)`,
      // Canvas (chord.ts): saved groups (Celery's celery-taskset-meta-<id>) and chord joins.
      // A part is keyed by its entry, as a member of Celery's sorted set: a redelivery counts once.
      `CREATE TABLE groups (group_id TEXT PRIMARY KEY, payload BLOB NOT NULL, expires_at INTEGER)`,
      `CREATE TABLE chords (group_id TEXT PRIMARY KEY, size INTEGER, expires_at INTEGER)`,
      `CREATE TABLE chord_parts (group_id TEXT NOT NULL, score REAL NOT NULL, entry BLOB NOT NULL, PRIMARY KEY (group_id, entry))`,
    ],
  ],
};

/** Bring a component's tables to the current version (in one write transaction, safe when processes race). */
export function migrate(db: SqliteDatabase, component: SchemaComponent): void {
  const steps = MIGRATIONS[component];
  const key = `schema.${component}`;
  const run = db.transaction(() => {
    db.exec(META);
    const row = db.prepare('SELECT value FROM celeriac_meta WHERE key = ?').get(key) as { value: number } | undefined;
    const current = row?.value ?? 0;
    if (current > steps.length) {
      throw new ConfigError(`the SQLite database ${db.name} holds a ${component} schema of version ${current}, newer than this Celeriac knows (${steps.length})`, {
        hint: 'upgrade Celeriac on this machine, or point it at another database file',
      });
    }
    for (let v = current; v < steps.length; v++) {
      for (const sql of steps[v]!) db.exec(sql);
    }
    db.prepare('INSERT INTO celeriac_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(key, steps.length);
  });
  run.immediate();
}

/**
 * Reserve `n` values of a counter; returns the last one (the range is
 * `last - n + 1 … last`). Call inside a write transaction.
 */
export function counterStatement(db: SqliteDatabase): (key: string, n: number) => number {
  const stmt = db.prepare('UPDATE celeriac_meta SET value = value + ? WHERE key = ? RETURNING value');
  return (key, n) => (stmt.get(n, key) as { value: number }).value;
}
