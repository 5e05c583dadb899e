/**
 * The embedded SQLite result backend: one row per task in `results`
 * (the encoded record exactly as the shared result layer produced it,
 * possibly encrypted), shared by every process on the machine through one
 * database file (WAL mode), the broker's or its own.
 *
 * - A stored SUCCESS is never overwritten (unless it expired), as on Redis:
 *   by the `state` column, which the result layer hands in beside the
 *   possibly encrypted record.
 * - Expiry: `expires_at` is checked on every read, and expired rows are
 *   deleted at most once a minute by a writer.
 * - Waiting without polling: every write takes a fresh value of a
 *   database-wide version counter and signals the wake hub
 *   (`../sqlite/wake.ts`). A process with waiters reacts to a signal by
 *   reading the rows whose version is newer than the last it saw (an index
 *   range scan of the few new rows) and hands watched ones to their waiters.
 */
import type { ExpiringIdSet } from '../../core/backend.ts';
import { sqliteExpiringIdSet } from './expiring-set.ts';
import type { SqliteAdapterOptions } from './location.ts';
import { ClosedError } from '../../errors.ts';
import type { Logger } from '../../observability/logging.ts';
import { isBusyError, openSqlite, sqliteLocationFromUrl, type SqliteDatabase, type SqliteLocation, type SqliteStatement } from './open.ts';
import { counterStatement, migrate } from './schema.ts';
import { WakeHub } from './wake.ts';
import type { ChordPart, ResultBackend, StoredRecord, StoreOptions } from '../../core/backend.ts';
import { sqliteCanvas, type SqliteCanvas } from './chord.ts';

/** How often a writer deletes expired rows, ms. */
const EXPIRY_SWEEP_MS = 60_000;
/** Rows read per scan of new versions. */
const SCAN_BATCH = 1000;

/** Options of the SQLite result backend. */
export type SqliteBackendOptions = SqliteAdapterOptions;

interface PendingStore {
  records: readonly StoredRecord[];
  expiresAt: number | null;
  resolve: () => void;
  reject: (e: unknown) => void;
}

type Statement = SqliteStatement;

/** Create the SQLite result backend adapter (the file is opened on `connect`). */
export function createSqliteBackend(options: SqliteBackendOptions): SqliteBackend {
  return new SqliteBackend(options);
}

/** The SQLite result backend. Instances on the same file share records, in one process or many. */
export class SqliteBackend implements ResultBackend {
  readonly kind = 'sqlite';
  readonly location: SqliteLocation;
  private readonly logger: Logger;
  private db: SqliteDatabase | undefined;
  private s!: Record<string, Statement>;
  private canvas: SqliteCanvas | undefined;
  private nextVersion!: (n: number) => number;
  private hub: WakeHub | undefined;
  private readonly watchers = new Map<string, Set<(p: Buffer) => void>>();
  /** Highest version handed to each watched task's waiters (avoids handing the same write twice). */
  private readonly delivered = new Map<string, number>();
  private cursor = 0;
  private unsubscribe: (() => void) | undefined;
  private queue: PendingStore[] = [];
  private flushScheduled = false;
  private lastSweep = 0;
  private closed = false;

  constructor(options: SqliteBackendOptions) {
    this.location = sqliteLocationFromUrl(options.url, options.cwd);
    this.logger = options.logger;
  }

  async connect(): Promise<void> {
    this.open();
  }

  private open(): SqliteDatabase {
    if (this.closed) throw new ClosedError('sqlite backend');
    if (this.db) return this.db;
    const db = openSqlite(this.location, { role: 'backend', logger: this.logger });
    try {
      migrate(db, 'backend');
      const counter = counterStatement(db);
      this.nextVersion = (n) => counter('backend.version', n);
      this.s = {
        // The conflict branch is skipped for a live SUCCESS: RETURNING then yields no row.
        upsert: db.prepare(
          `INSERT INTO results (task_id, state, payload, expires_at, version) VALUES (@id, @state, @payload, @expires, @version)
           ON CONFLICT (task_id) DO UPDATE SET state = excluded.state, payload = excluded.payload, expires_at = excluded.expires_at, version = excluded.version
           WHERE results.state <> 'SUCCESS' OR (results.expires_at IS NOT NULL AND results.expires_at <= @now)
           RETURNING version`,
        ),
        get: db.prepare('SELECT payload FROM results WHERE task_id = ? AND (expires_at IS NULL OR expires_at > ?)'),
        newer: db.prepare('SELECT task_id, version FROM results WHERE version > ? ORDER BY version LIMIT ?'),
        getVersioned: db.prepare('SELECT payload, version FROM results WHERE task_id = ? AND (expires_at IS NULL OR expires_at > ?)'),
        maxVersion: db.prepare('SELECT coalesce(max(version), 0) AS v FROM results'),
        forget: db.prepare('DELETE FROM results WHERE task_id = ?'),
        sweep: db.prepare('DELETE FROM results WHERE expires_at IS NOT NULL AND expires_at <= ?'),
      };
    } catch (err) {
      db.close();
      throw err;
    }
    this.db = db;
    this.canvas = sqliteCanvas(db, (fn) => this.write(fn));
    this.hub = WakeHub.acquire(this.location.path, { mode: this.location.wake, logger: this.logger });
    return db;
  }

  expiringIdSet(name: string): ExpiringIdSet {
    return sqliteExpiringIdSet(name, () => this.open(), (fn) => this.write(fn));
  }

  private write<T>(fn: () => T): T {
    const tx = this.open().transaction(fn);
    for (let attempt = 0; ; attempt++) {
      try {
        return tx.immediate();
      } catch (err) {
        if (!isBusyError(err) || attempt >= 3) throw err;
      }
    }
  }

  /** Stores are gathered per event-loop turn and written in one transaction. */
  store(records: readonly StoredRecord[], options?: StoreOptions): Promise<void> {
    if (this.closed) return Promise.reject(new ClosedError('sqlite backend'));
    const ttl = options?.expiresSeconds ?? 0;
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ records, expiresAt: ttl > 0 ? Date.now() + ttl * 1000 : null, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.flushScheduled = false;
    const pending = this.queue;
    this.queue = [];
    if (pending.length === 0) return;
    const now = Date.now();
    const written: Array<{ taskId: string; payload: Buffer; version: number }> = [];
    try {
      this.write(() => {
        const count = pending.reduce((n, p) => n + p.records.length, 0);
        let version = this.nextVersion(count) - count;
        for (const p of pending) {
          for (const r of p.records) {
            const v = ++version;
            const row = this.s.upsert!.get({ id: r.taskId, state: r.state, payload: r.payload, expires: p.expiresAt, version: v, now }) as { version: number } | undefined;
            if (row) written.push({ taskId: r.taskId, payload: r.payload, version: v });
          }
        }
        if (now - this.lastSweep > EXPIRY_SWEEP_MS) {
          this.lastSweep = now;
          this.s.sweep!.run(now);
        }
      });
    } catch (err) {
      for (const p of pending) p.reject(err);
      return;
    }
    if (written.length > 0) this.hub!.signal('result');
    // Waiters in this process hear at once, without a read.
    for (const w of written) this.hand(w.taskId, w.payload, w.version);
    for (const p of pending) p.resolve();
  }

  private hand(taskId: string, payload: Buffer, version: number): void {
    const set = this.watchers.get(taskId);
    if (!set) return;
    if ((this.delivered.get(taskId) ?? 0) >= version) return;
    this.delivered.set(taskId, version);
    for (const w of [...set]) w(Buffer.from(payload));
  }

  async get(taskId: string): Promise<Buffer | undefined> {
    this.open();
    return (this.s.get!.get(taskId, Date.now()) as { payload: Buffer } | undefined)?.payload;
  }

  async getMany(taskIds: readonly string[]): Promise<Array<Buffer | undefined>> {
    if (taskIds.length === 0) return [];
    this.open();
    const now = Date.now();
    // One read transaction: a consistent snapshot for all of them.
    return this.db!.transaction(() => taskIds.map((id) => (this.s.get!.get(id, now) as { payload: Buffer } | undefined)?.payload))();
  }

  async watch(taskId: string, onRecord: (payload: Buffer) => void): Promise<() => void> {
    this.open();
    if (this.watchers.size === 0) {
      // Start from now: only writes after this point need a scan.
      this.cursor = (this.s.maxVersion!.get() as { v: number }).v;
      this.unsubscribe = this.hub!.subscribe('result', () => this.scan());
    }
    let set = this.watchers.get(taskId);
    if (!set) {
      set = new Set();
      this.watchers.set(taskId, set);
    }
    set.add(onRecord);
    return () => {
      const s = this.watchers.get(taskId);
      if (!s || !s.delete(onRecord)) return;
      if (s.size === 0) {
        this.watchers.delete(taskId);
        this.delivered.delete(taskId);
      }
      if (this.watchers.size === 0) {
        this.unsubscribe?.();
        this.unsubscribe = undefined;
      }
    };
  }

  /** Read what was written since the last scan and hand watched records to their waiters. */
  private scan(): void {
    if (this.closed || this.watchers.size === 0) return;
    const now = Date.now();
    try {
      for (;;) {
        const rows = this.s.newer!.all(this.cursor, SCAN_BATCH) as Array<{ task_id: string; version: number }>;
        for (const r of rows) {
          if (!this.watchers.has(r.task_id)) continue;
          const cur = this.s.getVersioned!.get(r.task_id, now) as { payload: Buffer; version: number } | undefined;
          if (cur) this.hand(r.task_id, cur.payload, cur.version);
        }
        if (rows.length > 0) this.cursor = rows[rows.length - 1]!.version;
        if (rows.length < SCAN_BATCH) break;
      }
    } catch (err) {
      this.logger.warn({ err }, 'reading new results failed; retrying at the next signal');
    }
  }

  private chords(): SqliteCanvas {
    this.open();
    return this.canvas!;
  }

  async saveGroup(groupId: string, payload: Buffer, options?: StoreOptions): Promise<void> {
    this.chords().saveGroup(groupId, payload, options);
  }

  async getGroup(groupId: string): Promise<Buffer | undefined> {
    return this.chords().getGroup(groupId);
  }

  async forgetGroup(groupId: string): Promise<void> {
    this.chords().forgetGroup(groupId);
  }

  async setChordSize(groupId: string, size: number, options?: StoreOptions): Promise<void> {
    this.chords().setChordSize(groupId, size, options);
  }

  async chordPartReturn(part: ChordPart, options?: StoreOptions): Promise<Buffer[] | undefined> {
    return this.chords().chordPartReturn(part, options);
  }

  /** Celery's `add_to_chord`: the join waits for `count` more parts. */
  async addToChord(groupId: string, count: number, options?: StoreOptions): Promise<void> {
    this.chords().addToChord(groupId, count, options);
  }

  async forget(taskId: string): Promise<void> {
    this.write(() => this.s.forget!.run(taskId));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    if (this.queue.length > 0) this.flush();
    this.closed = true;
    this.unsubscribe?.();
    this.watchers.clear();
    this.hub?.release();
    this.hub = undefined;
    this.db?.close();
    this.db = undefined;
  }
}
