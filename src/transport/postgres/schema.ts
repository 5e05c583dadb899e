/**
 * Tables of the PostgreSQL engine and their migrations, run on first
 * connect. Each component (broker, backend, replay) migrates its own tables
 * in one transaction under an advisory lock, so processes starting together
 * migrate once; the version is kept in `<schema>.meta`. A role that may not
 * create tables (a producer under `celeriac secrets generate postgres-roles`)
 * only reads the version: it finds the tables the worker role made.
 *
 * The replay nonces live in a schema of their own, `<schema>_replay`, so a
 * producer role can be kept out of it with one missing `USAGE` grant.
 */
import type pg from 'pg';
import { ConfigError } from '../../errors.ts';
import { ident } from './connection.ts';

/**
 * A component with its own tables. `coordination` holds what clients
 * share besides queues and results: celeriac beat's lease and schedule
 * state, and the shared send-rate buckets (it is migrated by the broker and
 * the backend, see {@link migrateCoordination}).
 */
export type PgComponent = 'broker' | 'backend' | 'replay' | 'coordination';

/**
 * Migrations by component; entry `i` takes the schema from version `i` to
 * `i + 1`. `@S` stands for the schema (quoted). Never edit a released entry:
 * append a new one.
 */
const MIGRATIONS: Readonly<Record<PgComponent, readonly (readonly string[])[]>> = {
  broker: [
    [
      // state: 0 ready, 1 reserved (leased to a consumer), 2 delayed (ETA/countdown not yet due).
      // priority: kombu's bucket (0, 3, 6, 9; lower first); seq orders FIFO within a bucket
      // (negative = put back at the head, served next). Times are the server's epoch ms.
      `CREATE SEQUENCE @S.message_seq`,
      `CREATE TABLE @S.messages (
        id bigserial PRIMARY KEY,
        queue text NOT NULL,
        priority smallint NOT NULL,
        seq bigint NOT NULL,
        state smallint NOT NULL,
        not_before bigint NOT NULL DEFAULT 0,
        lease_until bigint,
        tag text,
        redelivered boolean NOT NULL DEFAULT false,
        headers text NOT NULL,
        properties text NOT NULL,
        content_type text NOT NULL,
        content_encoding text NOT NULL,
        body bytea NOT NULL,
        published_at bigint NOT NULL
      )`,
      `CREATE INDEX messages_ready ON @S.messages (queue, priority, seq) WHERE state = 0`,
      `CREATE INDEX messages_delayed ON @S.messages (queue, not_before) WHERE state = 2`,
      `CREATE INDEX messages_leased ON @S.messages (lease_until) WHERE state = 1`,
      `CREATE INDEX messages_tag ON @S.messages (tag text_pattern_ops) WHERE state = 1`,
      `CREATE TABLE @S.dead_letters (
        id bigserial PRIMARY KEY,
        queue text NOT NULL,
        reason text NOT NULL,
        at bigint NOT NULL,
        headers text,
        properties text,
        content_type text,
        content_encoding text,
        body bytea
      )`,
      `CREATE INDEX dead_letters_queue ON @S.dead_letters (queue, id)`,
      // Broadcasts (events, remote control, replies): a row per broadcast, announced by NOTIFY with its id; pruned by age.
      `CREATE TABLE @S.fanout (
        id bigserial PRIMARY KEY,
        exchange text NOT NULL,
        routing_key text NOT NULL,
        headers text NOT NULL,
        properties text NOT NULL,
        content_type text NOT NULL,
        content_encoding text NOT NULL,
        body bytea NOT NULL,
        created_at bigint NOT NULL
      )`,
      `CREATE INDEX fanout_age ON @S.fanout (created_at)`,
    ],
  ],
  backend: [
    [
      // version: bumped from a sequence on every write, so a waiter hands each write once.
      `CREATE SEQUENCE @S.result_version`,
      `CREATE TABLE @S.results (
        task_id text PRIMARY KEY,
        state text NOT NULL,
        payload bytea NOT NULL,
        expires_at bigint,
        version bigint NOT NULL
      )`,
      `CREATE INDEX results_expiry ON @S.results (expires_at) WHERE expires_at IS NOT NULL`,
    ],
  ],
  replay: [
    [
      // state: 'S' settled, 'H<holder>' held; until: server epoch ms.
      `CREATE TABLE @S.replay (nonce text PRIMARY KEY, state text NOT NULL, until bigint NOT NULL)`,
      `CREATE INDEX replay_until ON @S.replay (until)`,
    ],
  ],
  coordination: [
    [
      // One row per beat name; never deleted (a release empties holder), so token is also the fencing counter.
      // Times are the server's epoch ms.
      `CREATE TABLE @S.beat_lease (ns text PRIMARY KEY, holder text NOT NULL, token bigint NOT NULL, expires_at bigint NOT NULL)`,
      `CREATE TABLE @S.beat_entry (
        ns text NOT NULL,
        name text NOT NULL,
        last_tick bigint NOT NULL,
        task_id text NOT NULL,
        sent_at bigint NOT NULL,
        token bigint NOT NULL,
        total bigint NOT NULL,
        skipped bigint NOT NULL,
        confirmed boolean NOT NULL DEFAULT false,
        PRIMARY KEY (ns, name)
      )`,
      // Shared send-rate token buckets: tokens left at ts (server epoch ms); a row past expires_at is full again anyway.
      `CREATE TABLE @S.rate_buckets (name text PRIMARY KEY, tokens double precision NOT NULL, ts bigint NOT NULL, expires_at bigint NOT NULL)`,
      `CREATE INDEX rate_buckets_expiry ON @S.rate_buckets (expires_at)`,
    ],
    [
      // The message of a claim that could not carry it, kept until its publish is confirmed (a new leader sends it again).
      `ALTER TABLE @S.beat_entry ADD COLUMN pending text`,
    ],
  ],
};

/** The schema a component's tables live in. */
export function componentSchema(schema: string, component: PgComponent): string {
  return component === 'replay' ? `${schema}_replay` : schema;
}

/** Bring a component's tables to the current version (idempotent; safe when processes race). */
export async function migrate(pool: pg.Pool, schema: string, component: PgComponent): Promise<void> {
  const steps = MIGRATIONS[component];
  const s = ident(componentSchema(schema, component));
  const key = `schema.${component}`;
  // Fast path, and the only one a role without CREATE takes: the tables are current.
  try {
    const r = await pool.query<{ value: string }>(`SELECT value FROM ${s}.meta WHERE key = $1`, [key]);
    const current = Number(r.rows[0]?.value ?? 0);
    if (current === steps.length) return;
    if (current > steps.length) throw newer(schema, component, current, steps.length);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    if ((err as { code?: string }).code !== '42P01' && (err as { code?: string }).code !== '3F000') throw err; // undefined table / schema: migrate below
  }
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`celeriac.migrate.${componentSchema(schema, component)}`]);
    // CREATE SCHEMA checks the database's CREATE privilege even with IF NOT EXISTS: ask first.
    const exists = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [componentSchema(schema, component)]);
    if (exists.rowCount === 0) await client.query(`CREATE SCHEMA ${s}`);
    await client.query(`CREATE TABLE IF NOT EXISTS ${s}.meta (key text PRIMARY KEY, value bigint NOT NULL)`);
    const r = await client.query<{ value: string }>(`SELECT value FROM ${s}.meta WHERE key = $1`, [key]);
    const current = Number(r.rows[0]?.value ?? 0);
    if (current > steps.length) throw newer(schema, component, current, steps.length);
    for (let v = current; v < steps.length; v++) {
      for (const sql of steps[v]!) await client.query(sql.replaceAll('@S.', `${s}.`));
    }
    await client.query(`INSERT INTO ${s}.meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, [key, steps.length]);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    if ((err as { code?: string }).code === '42501') {
      throw new ConfigError(`this PostgreSQL role may not create Celeriac's ${component} tables in schema ${componentSchema(schema, component)}: ${(err as Error).message}`, {
        hint: 'start a worker of this Celeriac version first (its role owns the schema and creates the tables), or grant this role CREATE on the schema',
        code: 'ERR_PG_SCHEMA',
      });
    }
    throw err;
  } finally {
    client.release();
  }
}

/**
 * Migrate the coordination tables as a side step of a broker's or
 * backend's connect: a role that may create them (the worker's) makes
 * them, one that may not (a producer whose workers run an older Celeriac)
 * goes on sending and reading results; only the beat store and the shared
 * buckets, which need the tables, then fail with `ERR_PG_SCHEMA`.
 */
export async function migrateCoordination(pool: pg.Pool, schema: string): Promise<void> {
  try {
    await migrate(pool, schema, 'coordination');
  } catch (err) {
    if (!(err instanceof ConfigError && err.code === 'ERR_PG_SCHEMA')) throw err;
  }
}

function newer(schema: string, component: PgComponent, current: number, known: number): ConfigError {
  return new ConfigError(`PostgreSQL schema ${componentSchema(schema, component)} holds a ${component} schema of version ${current}, newer than this Celeriac knows (${known})`, {
    hint: 'upgrade Celeriac here, or use another ?schema=',
  });
}
