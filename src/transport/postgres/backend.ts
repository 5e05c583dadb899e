/**
 * The PostgreSQL result backend: one row per task in `<schema>.results`,
 * the encoded record exactly as the shared result layer produced it (JSON
 * or msgpack, possibly sealed) in a `bytea`, with the state beside it and
 * an expiry in the server's epoch ms.
 *
 * - A stored SUCCESS is never overwritten (unless it expired): the upsert's
 *   conflict branch is conditional on the `state` column.
 * - Expiry: every read checks `expires_at`; writers delete expired rows at
 *   most once a minute.
 * - Waiting: each write NOTIFYs `<schema>_result` with the task id in the
 *   same statement (delivered at commit); a process with waiters LISTENs,
 *   reads a watched record when its id is announced, and hands each
 *   version once. After a dropped LISTEN connection every watched record is
 *   read again.
 *
 * This is not Celery's database backend (SQLAlchemy tables holding pickled
 * results): a Python Celery client cannot read these rows through Celery.
 */
import type pg from 'pg';
import { ClosedError } from '../../errors.ts';
import type { ResultBackend, StoredRecord, StoreOptions } from '../../core/backend.ts';
import type { AdapterContext } from '../../core/adapter-context.ts';
import { ident, NOW_MS, openPool, pgTarget, updatePoolCredentials, type PgTarget } from './connection.ts';
import { PgListener } from './listen.ts';
import { migrate, migrateCoordination } from './schema.ts';

/** How often a writer deletes expired rows, ms. */
const EXPIRY_SWEEP_MS = 60_000;

interface PendingStore {
  records: readonly StoredRecord[];
  ttl: number;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** Options of the PostgreSQL result backend. */
export interface PgBackendOptions extends AdapterContext {
  url: string;
}

/** Create the PostgreSQL result backend (connected on first use). */
export function createPgBackend(options: PgBackendOptions): PgBackend {
  return new PgBackend(options);
}

export class PgBackend implements ResultBackend {
  readonly kind = 'postgres';
  private target: PgTarget;
  private readonly pool: pg.Pool;
  private readonly listener: PgListener;
  private readonly t: string;
  private readonly channel: string;
  private ready: Promise<void> | undefined;
  private readonly watchers = new Map<string, Set<(p: Buffer) => void>>();
  /** Highest version handed to each watched task's waiters. */
  private readonly delivered = new Map<string, number>();
  private unlisten: (() => void) | undefined;
  private listening: Promise<void> | undefined;
  private lastSweep = 0;
  private pending: PendingStore[] = [];
  private flushScheduled = false;
  private closed = false;

  constructor(options: PgBackendOptions) {
    this.target = pgTarget(options.url, 'backend', options.settings, options.logger);
    this.pool = openPool(this.target, 'backend', 3);
    this.listener = new PgListener(this.target, 'backend-listen');
    this.t = `${ident(this.target.schema)}.results`;
    this.channel = `${this.target.schema}_result`;
  }

  connect(): Promise<void> {
    if (this.closed) return Promise.reject(new ClosedError('postgres backend'));
    // The coordination tables (beat, shared send-rate buckets) come with either component: see migrateCoordination.
    this.ready ??= migrate(this.pool, this.target.schema, 'backend')
      .then(() => migrateCoordination(this.pool, this.target.schema))
      .catch((err: unknown) => {
        this.ready = undefined;
        throw err;
      });
    return this.ready;
  }

  /**
   * Stores made in one turn of the event loop go out as one statement (one
   * commit: with a durable server, each commit waits for its WAL flush, so
   * a worker finishing a batch of tasks pays for one, not one per task).
   */
  store(records: readonly StoredRecord[], options?: StoreOptions): Promise<void> {
    if (this.closed) return Promise.reject(new ClosedError('postgres backend'));
    if (records.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ records, ttl: options?.expiresSeconds ?? 0, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    this.flushScheduled = false;
    const pending = this.pending;
    this.pending = [];
    // One statement per expiry (almost always one), in the order the stores were made.
    const byTtl = new Map<number, PendingStore[]>();
    for (const p of pending) byTtl.set(p.ttl, [...(byTtl.get(p.ttl) ?? []), p]);
    await Promise.all(
      [...byTtl].map(async ([ttl, group]) => {
        try {
          await this.connect();
          await this.write(group.flatMap((p) => p.records), ttl);
          for (const p of group) p.resolve();
        } catch (err) {
          for (const p of group) p.reject(err);
        }
      }),
    );
  }

  private async write(records: readonly StoredRecord[], ttl: number): Promise<void> {
    // One upsert cannot touch a row twice: keep one record per task, the first SUCCESS if any, else the last.
    const byId = new Map<string, StoredRecord>();
    for (const r of records) {
      const prev = byId.get(r.taskId);
      if (prev?.state === 'SUCCESS') continue;
      byId.set(r.taskId, r);
    }
    const rs = [...byId.values()];
    await this.pool.query(
      `WITH input AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]) AS i(task_id, state, payload)),
       w AS (
         INSERT INTO ${this.t} AS r (task_id, state, payload, expires_at, version)
         SELECT task_id, state, payload, CASE WHEN $4::bigint > 0 THEN ${NOW_MS} + $4::bigint * 1000 END, nextval('${ident(this.target.schema)}.result_version') FROM input
         ON CONFLICT (task_id) DO UPDATE SET state = excluded.state, payload = excluded.payload, expires_at = excluded.expires_at, version = excluded.version
         WHERE r.state <> 'SUCCESS' OR (r.expires_at IS NOT NULL AND r.expires_at <= ${NOW_MS})
         RETURNING task_id)
       SELECT count(pg_notify($5, task_id)) FROM w`,
      [rs.map((r) => r.taskId), rs.map((r) => r.state), rs.map((r) => r.payload), ttl, this.channel],
    );
    const now = Date.now();
    if (now - this.lastSweep > EXPIRY_SWEEP_MS) {
      this.lastSweep = now;
      this.pool.query(`DELETE FROM ${this.t} WHERE expires_at IS NOT NULL AND expires_at <= ${NOW_MS}`).catch((err: Error) => this.target.logger.warn({ err: err.message }, 'deleting expired results failed'));
    }
  }

  async get(taskId: string): Promise<Buffer | undefined> {
    await this.connect();
    const r = await this.pool.query<{ payload: Buffer }>(`SELECT payload FROM ${this.t} WHERE task_id = $1 AND (expires_at IS NULL OR expires_at > ${NOW_MS})`, [taskId]);
    return r.rows[0]?.payload;
  }

  async getMany(taskIds: readonly string[]): Promise<Array<Buffer | undefined>> {
    if (taskIds.length === 0) return [];
    await this.connect();
    const r = await this.pool.query<{ task_id: string; payload: Buffer }>(
      `SELECT task_id, payload FROM ${this.t} WHERE task_id = ANY($1::text[]) AND (expires_at IS NULL OR expires_at > ${NOW_MS})`,
      [[...taskIds]],
    );
    const found = new Map(r.rows.map((row) => [row.task_id, row.payload]));
    return taskIds.map((id) => found.get(id));
  }

  async watch(taskId: string, onRecord: (payload: Buffer) => void): Promise<() => void> {
    await this.connect();
    let set = this.watchers.get(taskId);
    if (!set) {
      set = new Set();
      this.watchers.set(taskId, set);
    }
    set.add(onRecord);
    this.listening ??= this.listener.on(this.channel, (id) => this.announced(id)).then((off) => {
      this.unlisten = off;
    });
    try {
      await this.listening;
    } catch (err) {
      this.listening = undefined;
      set.delete(onRecord);
      throw err;
    }
    return () => {
      const s = this.watchers.get(taskId);
      if (!s || !s.delete(onRecord)) return;
      if (s.size === 0) {
        this.watchers.delete(taskId);
        this.delivered.delete(taskId);
      }
    };
  }

  /** A write was announced (`undefined`: the LISTEN connection came back, read every watched record). */
  private announced(taskId: string | undefined): void {
    const ids = taskId === undefined ? [...this.watchers.keys()] : this.watchers.has(taskId) ? [taskId] : [];
    if (ids.length === 0 || this.closed) return;
    this.pool
      .query<{ task_id: string; payload: Buffer; version: string }>(
        `SELECT task_id, payload, version FROM ${this.t} WHERE task_id = ANY($1::text[]) AND (expires_at IS NULL OR expires_at > ${NOW_MS})`,
        [ids],
      )
      .then((r) => {
        for (const row of r.rows) this.hand(row.task_id, row.payload, Number(row.version));
      })
      .catch((err: Error) => {
        if (!this.closed) this.target.logger.warn({ err: err.message }, 'reading an announced result failed; it is read again at the next announcement');
      });
  }

  private hand(taskId: string, payload: Buffer, version: number): void {
    const set = this.watchers.get(taskId);
    if (!set) return;
    if ((this.delivered.get(taskId) ?? 0) >= version) return;
    this.delivered.set(taskId, version);
    for (const w of [...set]) w(Buffer.from(payload));
  }

  async forget(taskId: string): Promise<void> {
    await this.connect();
    await this.pool.query(`DELETE FROM ${this.t} WHERE task_id = $1`, [taskId]);
  }

  async updateCredentials(url: string): Promise<void> {
    this.target = await updatePoolCredentials(this.pool, this.target, url);
    this.listener.target = this.target;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    if (this.pending.length > 0) await this.flush();
    this.closed = true;
    this.unlisten?.();
    this.watchers.clear();
    await this.listener.close();
    await this.pool.end();
  }
}
