/**
 * The embedded SQLite broker: the default for one machine, durable, shared
 * by any number of worker and client processes through one database file
 * (WAL mode). Same interface and semantics as the Redis broker.
 *
 * - Messages are rows (`messages`): the transport-neutral `WireMessage`
 *   (headers and properties as JSON text, body as a BLOB), the queue,
 *   kombu's priority bucket (0, 3, 6, 9; lower first) and a sequence number
 *   (FIFO within a bucket; restored messages get a negative one and are
 *   served next, like kombu's restore to the head).
 * - Reserving is one `BEGIN IMMEDIATE` transaction that marks up to
 *   `prefetch` rows as leased to this consumer (`state = 1`, a fresh tag,
 *   `lease_until = now + visibility timeout`). SQLite admits one writer at a
 *   time, so each message goes to exactly one consumer at a time, across
 *   processes.
 * - Ack deletes the row, reject(requeue) and dead-letter move it, each
 *   conditional on the tag: a delivery whose lease ran out and that another
 *   consumer has since taken can no longer be settled by the first one.
 * - Visibility timeout: every live consumer renews the leases of what it
 *   holds (every visibility timeout / 4, at most every minute), and every
 *   consuming process periodically returns rows whose lease ran out (their
 *   consumer died) to the head of their queue, flagged as redelivered.
 * - ETA/countdown: a message whose `eta` header lies in the future is stored
 *   as delayed (`state = 2`, `not_before`) and becomes ready when due, so
 *   long countdowns neither occupy a worker's prefetch nor need leases; the
 *   worker still applies `eta` and `expires` from the headers, as on Redis.
 * - Waiting: see `../sqlite/wake.ts` — idle consumers sleep until another
 *   process signals new work, with no polling loop.
 */
import type { SqliteAdapterOptions } from './location.ts';
import { decodeJsonText } from '../../codec/json.ts';
import { FITS, ROW_SIZE } from './size-limit.ts';
import type { DecodeLimits } from '../../codec/limits.ts';
import { ClosedError, DecodeError, QueueFullError } from '../../errors.ts';
import type { Logger } from '../../observability/logging.ts';
import { PRIORITY_STEPS, priorityStep } from '../virtual/priority.ts';
import { parseIso } from '../../protocol/time.ts';
import type { MessageProperties, WireMessage } from '../../protocol/types.ts';
import { isBusyError, openSqlite, sqliteLocationFromUrl, type SqliteDatabase, type SqliteLocation, type SqliteStatement } from './open.ts';
import { counterStatement, migrate } from './schema.ts';
import { WakeHub } from './wake.ts';
import { DELAYED, INSERT_MESSAGE, READY, messageRow, writeMessageRows, type SqliteOutboxPublish } from './outbox.ts';
import { SqliteConsumer } from './consumer.ts';
import { SqliteFanout } from './fanout.ts';
import type { BroadcastDelivery, BroadcastItem, Exchange, ReplyQueue, ReplyQueueOptions, SubscribeOptions, Subscription } from '../../core/broker.ts';
import {
  deadLetterId,
  deadLetterQueueName,
  selectDeadLetters,
  TRUNCATED_REFUSAL,
  type DeadLetterSelection,
  type RedriveOptions,
  type RedriveResult,
  type RecoverOptions,
  type Broker,
  type ConsumeOptions,
  type Consumer,
  type DeadLetter,
  type Delivery,
  type PublishItem,
  type PublishOptions,
} from '../../core/broker.ts';

/** Options of the SQLite broker. */
export type SqliteBrokerOptions = SqliteAdapterOptions;

/** A row as the reserve statement returns it. */
export interface MessageRow {
  id: number;
  queue: string;
  priority: number;
  seq: number;
  redelivered: number;
  tag: string;
  headers: string;
  properties: string;
  content_type: string;
  content_encoding: string;
  body: Buffer | string;
}

interface DeadRow {
  queue: string;
  reason: string;
  at: number;
  headers: string | null;
  properties: string | null;
  content_type: string | null;
  content_encoding: string | null;
  body: Buffer | string | null;
}

type Statement = SqliteStatement;

/** Create the SQLite broker adapter (the file is opened on `connect`). */
export function createSqliteBroker(options: SqliteBrokerOptions): SqliteBroker {
  return new SqliteBroker(options);
}

/** Dead letters keep a body whole up to this size; beyond it, the first KiB. */
const DEAD_LETTER_BODY_MAX = 64 * 1024;
/** How the reason of a dead letter stored truncated, or dead-lettered unread, ends (see `deadLetterRow`, `sweepOversized`). */
const TRUNCATED_REASON = /(\(body of \d+ bytes truncated to 1024\)|; dead-lettered unread)$/;

/** A row over the limit as the size checks return it: its id, its stored size, the start of its headers when they are small. */
interface UnreadRow {
  id: number;
  size: number;
  head: string | null;
}

/** How often, and how deep, a reserve measures the head of its queues for oversized rows. */
const HEAD_SWEEP_MS = 10_000;
const HEAD_SWEEP_ROWS = 1000;

/** A message the reserve found over the limit and dead-lettered without reading it. */
export interface OversizedRow {
  queue: string;
  /** The task id, when the headers were small enough to look at. */
  id: string | undefined;
  reason: string;
}

/** The SQLite broker. Instances on the same file share queues, in one process or many. */
export class SqliteBroker implements Broker {
  readonly kind = 'sqlite';
  readonly location: SqliteLocation;
  readonly logger: Logger;
  readonly limits: DecodeLimits;
  /** Lease length of a delivery, ms (`brokerTransportOptions.visibilityTimeout`, default 3600 s as kombu). */
  readonly visibilityTimeoutMs: number;
  /** How often leases are renewed and expired ones restored, ms. */
  readonly leaseCheckMs: number;
  /** Most records kept per dead-letter queue (`brokerTransportOptions.deadLetterMaxLength`, default 100,000; 0 = no limit). */
  readonly deadLetterMax: number;
  private db: SqliteDatabase | undefined;
  private s!: Record<string, Statement>;
  private nextSeq!: (n: number) => number;
  /** @internal This process's wake hub for the file (consumers subscribe to it); set while open. */
  hub: WakeHub | undefined;
  private readonly consumers = new Set<SqliteConsumer>();
  /** When the reserve last measured the head of its queues for oversized rows (see `oversizedHead`). */
  private lastHeadSweep = 0;
  private restoreTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(options: SqliteBrokerOptions) {
    this.location = sqliteLocationFromUrl(options.url, options.cwd);
    this.logger = options.logger;
    this.limits = options.settings.decodeLimits;
    const t = options.settings.brokerTransportOptions;
    const vt = typeof t.visibilityTimeout === 'number' && t.visibilityTimeout > 0 ? t.visibilityTimeout : 3600;
    this.visibilityTimeoutMs = vt * 1000;
    this.leaseCheckMs = Math.min(60_000, Math.max(250, this.visibilityTimeoutMs / 4));
    this.deadLetterMax = typeof t.deadLetterMaxLength === 'number' ? t.deadLetterMaxLength : 100_000;
  }

  /** Open the file (checks, creation, schema); safe to call twice. */
  async connect(): Promise<void> {
    this.open();
  }

  /** The open database (opening it on first use). */
  private open(): SqliteDatabase {
    if (this.closed) throw new ClosedError('sqlite broker');
    if (this.db) return this.db;
    const db = openSqlite(this.location, { role: 'broker', logger: this.logger });
    try {
      migrate(db, 'broker');
      this.prepare(db);
    } catch (err) {
      db.close();
      throw err;
    }
    this.db = db;
    this.hub = WakeHub.acquire(this.location.path, { mode: this.location.wake, logger: this.logger });
    return db;
  }

  private prepare(db: SqliteDatabase): void {
    const counter = counterStatement(db);
    this.nextSeq = (n) => counter('broker.seq', n);
    const cols = 'id, queue, priority, seq, redelivered, tag, headers, properties, content_type, content_encoding, body';
    this.s = {
      insert: db.prepare(INSERT_MESSAGE),
      countWaiting: db.prepare('SELECT (SELECT count(*) FROM messages WHERE state = 0 AND queue = @q) + (SELECT count(*) FROM messages WHERE state = 2 AND queue = @q) AS n'),
      // One queue: priority then FIFO straight off the partial index.
      // Rows over the size limit are never taken (an UPDATE would rewrite, so read, the whole record): see sweepOversized.
      reserveAll: db.prepare(
        `UPDATE messages SET state = 1, tag = @tag || id, lease_until = @lease
         WHERE id IN (SELECT id FROM messages WHERE state = 0 AND queue = @queue AND ${FITS} ORDER BY priority, seq LIMIT @limit)
         RETURNING ${cols}`,
      ),
      // Several queues: kombu's order, priority bucket outer, queue inner.
      reserveStep: db.prepare(
        `UPDATE messages SET state = 1, tag = @tag || id, lease_until = @lease
         WHERE id IN (SELECT id FROM messages WHERE state = 0 AND queue = @queue AND priority = @priority AND ${FITS} ORDER BY seq LIMIT @limit)
         RETURNING ${cols}`,
      ),
      // After a reserve that found fewer fitting rows than it asked for, the ready rows left in the queue (or bucket) are
      // oversized ones: these find them through the ready index, measuring each without reading it.
      oversizedAll: db.prepare(
        `SELECT id, ${ROW_SIZE} AS size,
           CASE WHEN octet_length(headers) <= @max THEN substr(headers, 1, 4096) END AS head
         FROM messages WHERE state = 0 AND queue = @queue AND NOT ${FITS} LIMIT 100`,
      ),
      oversizedStep: db.prepare(
        `SELECT id, ${ROW_SIZE} AS size,
           CASE WHEN octet_length(headers) <= @max THEN substr(headers, 1, 4096) END AS head
         FROM messages WHERE state = 0 AND queue = @queue AND priority = @priority AND NOT ${FITS} LIMIT 100`,
      ),
      // Under sustained load the reserve always fills its window, so the sweep above never runs: every
      // HEAD_SWEEP_MS the first HEAD_SWEEP_ROWS ready rows are measured too, so an oversized row near the head
      // is dead-lettered within that time instead of waiting for the queue to drain.
      oversizedHead: db.prepare(
        `SELECT m.id AS id, ${ROW_SIZE.replace(/octet_length\(/g, 'octet_length(m.')} AS size,
           CASE WHEN octet_length(m.headers) <= @max THEN substr(m.headers, 1, 4096) END AS head
         FROM (SELECT id FROM messages WHERE state = 0 AND queue = @queue ORDER BY priority, seq LIMIT ${HEAD_SWEEP_ROWS}) AS h
         JOIN messages AS m ON m.id = h.id
         WHERE NOT ${FITS.replace(/octet_length\(/g, 'octet_length(m.')}`,
      ),
      // The dead-letter record of an oversized row: its metadata when that is small, never its body.
      insertDeadUnread: db.prepare(
        `INSERT INTO dead_letters (queue, reason, at, headers, properties, content_type, content_encoding, body)
         SELECT @dlq, @reason, @at,
           CASE WHEN octet_length(headers) <= @max THEN headers END, CASE WHEN octet_length(properties) <= @max THEN properties END,
           CASE WHEN octet_length(content_type) <= 1024 THEN content_type END, CASE WHEN octet_length(content_encoding) <= 1024 THEN content_encoding END, NULL
         FROM messages WHERE id = @id`,
      ),
      deleteRow: db.prepare('DELETE FROM messages WHERE id = ?'),
      // A due row over the limit is not promoted (the UPDATE would rewrite, so read, its record): it is dead-lettered unread.
      dueDelayed: db.prepare(
        `SELECT id, ${FITS} AS fits, ${ROW_SIZE} AS size, CASE WHEN octet_length(headers) <= @max THEN substr(headers, 1, 4096) END AS head
         FROM messages WHERE state = 2 AND queue = @queue AND not_before <= @now ORDER BY not_before, id LIMIT 1000`,
      ),
      promote: db.prepare('UPDATE messages SET state = 0, seq = ? WHERE id = ? AND state = 2'),
      hasReady: db.prepare('SELECT 1 FROM messages WHERE state = 0 AND queue = ? LIMIT 1'),
      nextDue: db.prepare('SELECT min(not_before) AS t FROM messages WHERE state = 2 AND queue = ?'),
      ack: db.prepare('DELETE FROM messages WHERE id = ? AND tag = ?'),
      requeue: db.prepare('UPDATE messages SET state = 0, tag = NULL, lease_until = NULL, redelivered = 1, seq = ? WHERE id = ? AND tag = ?'),
      renew: db.prepare('UPDATE messages SET lease_until = ? WHERE id = ? AND tag = ?'),
      expired: db.prepare('SELECT id FROM messages WHERE state = 1 AND lease_until <= ? ORDER BY lease_until LIMIT 1000'),
      restore: db.prepare('UPDATE messages SET state = 0, tag = NULL, lease_until = NULL, redelivered = 1, seq = ? WHERE id = ? AND state = 1 AND lease_until <= ?'),
      held: db.prepare('SELECT queue, headers, properties, content_type, content_encoding, body FROM messages WHERE id = ? AND tag = ?'),
      insertDead: db.prepare('INSERT INTO dead_letters (queue, reason, at, headers, properties, content_type, content_encoding, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
      trimDead: db.prepare('DELETE FROM dead_letters WHERE queue = @q AND id <= (SELECT id FROM dead_letters WHERE queue = @q ORDER BY id DESC LIMIT 1 OFFSET @keep)'),
      allDead: db.prepare('SELECT id, queue, reason, at, headers, properties, content_type, content_encoding, body FROM dead_letters WHERE queue = ? ORDER BY id'),
      dropDead: db.prepare('DELETE FROM dead_letters WHERE id = ?'),
      listDead: db.prepare('SELECT queue, reason, at, headers, properties, content_type, content_encoding, body FROM dead_letters WHERE queue = ? ORDER BY id DESC LIMIT ?'),
      purgeReady: db.prepare('DELETE FROM messages WHERE state = 0 AND queue = ?'),
      purgeDelayed: db.prepare('DELETE FROM messages WHERE state = 2 AND queue = ?'),
      // Reserved rows are few (at most every consumer's prefetch): scanning them through the lease index is cheap.
      ownedBy: db.prepare('SELECT id, tag FROM messages WHERE state = 1 AND lease_until >= 0 AND substr(tag, 1, length(@owner)) = @owner'),
      dropTag: db.prepare('DELETE FROM messages WHERE state = 1 AND tag = ?'),
    };
  }

  /**
   * @internal Run `fn` in a `BEGIN IMMEDIATE` transaction (the write lock is taken up
   * front, so `busy_timeout` applies), retrying a few times if another
   * process holds the lock past the timeout.
   */
  write<T>(fn: () => T): T {
    const db = this.open();
    const tx = db.transaction(fn);
    for (let attempt = 0; ; attempt++) {
      try {
        return tx.immediate();
      } catch (err) {
        if (!isBusyError(err) || attempt >= 3) throw err;
      }
    }
  }

  private stmt(name: string): Statement {
    this.open();
    return this.s[name]!;
  }

  async publish(queue: string, message: WireMessage, options?: PublishOptions): Promise<void> {
    await this.publishMany([{ queue, message, options }]);
  }

  /** All items in one transaction: either every message is stored or none (also when a cap refuses). */
  async publishMany(items: readonly PublishItem[]): Promise<void> {
    if (this.closed) throw new ClosedError('sqlite broker');
    if (items.length === 0) return;
    const now = Date.now();
    const rows = items.map((item) => messageRow(item, now));
    const caps = new Map<string, { max: number; adding: number }>();
    for (const { queue, options } of items) {
      const c = caps.get(queue);
      if (c) {
        c.adding++;
        if (options?.maxLength !== undefined) c.max = Math.min(c.max, options.maxLength);
      } else {
        caps.set(queue, { max: options?.maxLength ?? Infinity, adding: 1 });
      }
    }
    this.write(() => {
      for (const [queue, c] of caps) {
        if (c.max === Infinity) continue;
        const length = (this.s.countWaiting!.get({ q: queue }) as { n: number }).n;
        if (length + c.adding > c.max) throw new QueueFullError(queue, length, c.max);
      }
      writeMessageRows(this.db!, rows, now);
    });
    this.hub!.signal('queue');
  }

  /** An uncapped publish as rows a beat store on this file writes in its own transaction. */
  async prepareOutbox(item: PublishItem): Promise<SqliteOutboxPublish | undefined> {
    if (this.closed) throw new ClosedError('sqlite broker');
    if (item.options?.maxLength !== undefined) return undefined;
    this.open();
    return {
      engine: 'sqlite',
      target: this.location.path,
      rows: [messageRow(item, Date.now())],
      afterCommit: async () => this.hub?.signal('queue'),
    };
  }

  async consume(queues: readonly string[], options: ConsumeOptions, onMessage: (d: Delivery) => void): Promise<Consumer> {
    this.open();
    const c = new SqliteConsumer(this, [...queues], options, onMessage);
    this.consumers.add(c);
    if (!this.restoreTimer) {
      this.restoreTimer = setInterval(() => {
        try {
          this.restoreExpired();
        } catch (err) {
          for (const k of this.consumers) k.reportError(err as Error);
        }
      }, this.leaseCheckMs);
      this.restoreTimer.unref();
    }
    this.restoreExpired();
    c.start();
    return c;
  }

  /** @internal A consumer that shut down. */
  forgetConsumer(c: SqliteConsumer): void {
    this.consumers.delete(c);
  }

  async queueLength(queue: string): Promise<number> {
    return (this.stmt('countWaiting').get({ q: queue }) as { n: number }).n;
  }

  async purge(queue: string): Promise<number> {
    const n = this.write(() => this.s.purgeReady!.run(queue).changes + this.s.purgeDelayed!.run(queue).changes);
    return n;
  }

  async deadLetters(queue: string, limit = 100): Promise<DeadLetter[]> {
    const rows = this.stmt('listDead').all(deadLetterQueueName(queue), limit) as DeadRow[];
    return rows.map((r) => this.toDeadLetter(queue, r));
  }

  private toDeadLetter(queue: string, r: DeadRow): DeadLetter {
    let message: WireMessage | undefined;
    try {
      message = r.headers !== null ? this.decode(r.headers, r.properties ?? '{}', r.content_type ?? '', r.content_encoding ?? '', r.body ?? Buffer.alloc(0)) : undefined;
    } catch {
      message = undefined;
    }
    return { queue, reason: r.reason, at: r.at, message, raw: rawRecord(r), ...(TRUNCATED_REASON.test(r.reason) ? { truncated: true } : {}) };
  }

  /** The dead-letter rows of `queue` a selection takes, oldest first (inside a transaction). */
  private selectDead(queue: string, selection: DeadLetterSelection): Array<DeadRow & { id: number; letter: DeadLetter }> {
    const rows = (this.stmt('allDead').all(deadLetterQueueName(queue)) as Array<DeadRow & { id: number }>).map((r) => ({ ...r, letter: this.toDeadLetter(queue, r) }));
    return selectDeadLetters(rows, (r) => r.letter, selection);
  }

  async redriveDeadLetters(queue: string, options: RedriveOptions = {}): Promise<RedriveResult> {
    if (this.closed) throw new ClosedError('sqlite broker');
    const now = Date.now();
    // One transaction: each row leaves the dead-letter table exactly when its message enters the queue.
    const result = this.write(() => {
      const out: RedriveResult = { moved: [], refused: [] };
      for (const r of this.selectDead(queue, options)) {
        const id = deadLetterId(r.letter);
        if (r.letter.truncated || !r.letter.message || r.headers === null) {
          out.refused.push({ id, reason: r.letter.truncated ? TRUNCATED_REFUSAL : 'the stored message could not be decoded' });
          continue;
        }
        const m = r.letter.message;
        const eta = typeof m.headers.eta === 'string' ? parseIso(m.headers.eta) : undefined;
        const delayed = eta !== undefined && eta > now;
        this.s.insert!.run(options.to ?? queue, priorityStep(m.properties.priority), this.nextSeq(1), delayed ? DELAYED : READY, delayed ? eta : 0, r.headers, r.properties ?? '{}', r.content_type ?? m.contentType, r.content_encoding ?? m.contentEncoding, r.body ?? Buffer.alloc(0), now);
        this.s.dropDead!.run(r.id);
        out.moved.push(id ?? '');
      }
      return out;
    });
    if (result.moved.length) this.hub!.signal('queue');
    return result;
  }

  async dropDeadLetters(queue: string, options: DeadLetterSelection = {}): Promise<number> {
    if (this.closed) throw new ClosedError('sqlite broker');
    return this.write(() => this.selectDead(queue, options).reduce((n, r) => n + this.s.dropDead!.run(r.id).changes, 0));
  }

  /**
   * Return deliveries whose lease ran out (their consumer died) to the head
   * of their queue, flagged as redelivered. Returns how many.
   */
  restoreExpired(now: number = Date.now()): number {
    if (this.closed) return 0;
    let restored = 0;
    for (;;) {
      const n = this.write(() => {
        const ids = this.s.expired!.all(now) as Array<{ id: number }>;
        if (ids.length === 0) return 0;
        const last = this.nextSeq(ids.length);
        let k = 0;
        // Negative: ahead of everything waiting; later restores go further ahead, like kombu's RPUSH.
        for (const { id } of ids) k += this.s.restore!.run(-(last - ids.length + 1 + k), id, now).changes;
        return k;
      });
      restored += n;
      if (n < 1000) break;
    }
    if (restored > 0) {
      this.logger.warn({ restored }, `restored ${restored} unacknowledged message(s) after the visibility timeout`);
      this.hub?.signal('queue');
    }
    return restored;
  }

  /**
   * Recover at once the deliveries of a consumer known to be dead (a worker
   * process killed by its supervisor), without waiting for the visibility
   * timeout: every leased row whose tag starts with `owner` goes back to the
   * head of its queue, except those whose tags are in `drop`, which are
   * deleted (the message that caused the kill must not run again).
   */
  async recoverOwner(owner: string, options: RecoverOptions = {}): Promise<number> {
    if (!owner) return 0;
    const drop = options.drop ?? [];
    const restored = this.write(() => {
      for (const tag of drop) if (tag.startsWith(owner)) this.s.dropTag!.run(tag);
      if (options.deadLetter?.size) {
        for (const r of this.s.ownedBy!.all({ owner }) as Array<{ id: number; tag: string }>) {
          const reason = options.deadLetter.get(r.tag);
          const row = reason === undefined ? undefined : (this.s.held!.get(r.id, r.tag) as { queue: string } | undefined);
          if (row) this.deadLetterRow(r.id, r.tag, row.queue, reason!);
        }
      }
      const rows = this.s.ownedBy!.all({ owner }) as Array<{ id: number; tag: string }>;
      if (rows.length === 0) return 0;
      const last = this.nextSeq(rows.length);
      let k = 0;
      for (const r of rows) k += this.s.requeue!.run(-(last - rows.length + 1 + k), r.id, r.tag).changes;
      return k;
    });
    if (restored > 0) {
      this.logger.warn({ restored, owner }, `restored ${restored} message(s) of a lost worker process`);
      this.hub?.signal('queue');
    }
    return restored;
  }

  // ── used by consumers ───────────────────────────────────────────────

  /**
   * @internal Take up to `limit` messages for a consumer (one write
   * transaction). A message over the size limit is never read: it is
   * skipped, and once the rows that fit are all taken it is moved to the
   * dead-letter queue unread (reported in `oversized`).
   */
  reserve(queues: readonly string[], limit: number, tagPrefix: string, now: number, oversized?: OversizedRow[]): MessageRow[] {
    const max = this.limits.maxBytes;
    return this.write(() => {
      // Due delayed messages join the end of their queue first.
      for (const q of queues) {
        const due = this.s.dueDelayed!.all({ queue: q, now, max }) as Array<UnreadRow & { fits: number }>;
        if (due.length === 0) continue;
        let seq = this.nextSeq(due.length) - due.length;
        for (const r of due) {
          if (r.fits) this.s.promote!.run(++seq, r.id);
          else this.deadLetterUnread(q, r, max, now, oversized);
        }
      }
      const lease = now + this.visibilityTimeoutMs;
      if (now - this.lastHeadSweep >= HEAD_SWEEP_MS) {
        this.lastHeadSweep = now;
        for (const queue of queues) this.sweepOversized(this.s.oversizedHead!, { queue, max }, now, oversized);
      }
      if (queues.length === 1) {
        const rows = this.s.reserveAll!.all({ tag: tagPrefix, lease, queue: queues[0], limit, max }) as MessageRow[];
        if (rows.length < limit) this.sweepOversized(this.s.oversizedAll!, { queue: queues[0]!, max }, now, oversized);
        return rows.sort(byPriorityThenSeq);
      }
      const out: MessageRow[] = [];
      for (const priority of PRIORITY_STEPS) {
        for (const queue of queues) {
          if (out.length >= limit) return out;
          const want = limit - out.length;
          const rows = this.s.reserveStep!.all({ tag: tagPrefix, lease, queue, priority, limit: want, max }) as MessageRow[];
          if (rows.length < want) this.sweepOversized(this.s.oversizedStep!, { queue, priority, max }, now, oversized);
          out.push(...rows.sort(byPriorityThenSeq));
        }
      }
      return out;
    });
  }

  /** Move the ready rows over the limit that `find` finds to the dead-letter queue, unread (inside the reserve's transaction). */
  private sweepOversized(find: Statement, params: { queue: string; priority?: number; max: number }, now: number, out: OversizedRow[] | undefined): void {
    const found = find.all(params) as UnreadRow[];
    for (const r of found) this.deadLetterUnread(params.queue, r, params.max, now, out);
  }

  /** Dead-letter one row over the limit: its metadata when small, never its body; the reason gives its size (inside a transaction). */
  private deadLetterUnread(queue: string, r: UnreadRow, max: number, now: number, out: OversizedRow[] | undefined): void {
    const dlq = deadLetterQueueName(queue);
    const reason = `message of ${r.size} bytes exceeds the ${max}-byte limit; dead-lettered unread`;
    this.s.insertDeadUnread!.run({ dlq, reason, at: now, max, id: r.id });
    this.s.deleteRow!.run(r.id);
    if (this.deadLetterMax > 0) this.s.trimDead!.run({ q: dlq, keep: this.deadLetterMax });
    const id = r.head === null ? undefined : /"id":\s*"([^"]{1,64})"/.exec(r.head)?.[1];
    out?.push({ queue, id, reason });
  }

  /** @internal Cheap read: is anything ready or due for these queues? (Avoids taking the write lock for nothing.) */
  hasWork(queues: readonly string[], now: number): boolean {
    for (const q of queues) {
      if (this.s.hasReady!.get(q)) return true;
      const t = (this.s.nextDue!.get(q) as { t: number | null }).t;
      if (t !== null && t <= now) return true;
    }
    return false;
  }

  /** @internal When the earliest delayed message of these queues falls due (epoch ms), if any. */
  nextDue(queues: readonly string[]): number | undefined {
    let min: number | undefined;
    for (const q of queues) {
      const t = (this.s.nextDue!.get(q) as { t: number | null }).t;
      if (t !== null && (min === undefined || t < min)) min = t;
    }
    return min;
  }

  /** @internal Delete settled deliveries (those still held under their tags). */
  ackMany(batch: ReadonlyArray<{ id: number; tag: string }>): void {
    this.write(() => {
      for (const h of batch) this.s.ack!.run(h.id, h.tag);
    });
  }

  /** @internal Put a delivery back: at the head (served next) or the tail (served last). */
  requeue(id: number, tag: string, where: 'head' | 'tail'): boolean {
    const changed = this.write(() => {
      const seq = this.nextSeq(1);
      return this.s.requeue!.run(where === 'head' ? -seq : seq, id, tag).changes;
    });
    if (changed > 0) this.hub?.signal('queue');
    return changed > 0;
  }

  /** @internal Extend the leases of held deliveries by a visibility timeout from `now`. */
  renew(held: Iterable<{ id: number; tag: string }>, now: number): void {
    const lease = now + this.visibilityTimeoutMs;
    this.write(() => {
      for (const h of held) this.s.renew!.run(lease, h.id, h.tag);
    });
  }

  /** @internal Move a delivery to `<queue>.dlq` with the reason (atomically; nothing happens if it is no longer ours). */
  deadLetterRow(id: number, tag: string, queue: string, reason: string): boolean {
    return this.write(() => {
      const row = this.s.held!.get(id, tag) as Omit<DeadRow, 'reason' | 'at'> | undefined;
      if (!row) return false;
      this.s.ack!.run(id, tag);
      const dlq = deadLetterQueueName(queue);
      // A large body is kept as its first KiB (the reason says so): the dead-letter table stays bounded by count × 64 KiB.
      const body = row.body as Buffer | string | null;
      const big = body !== null && body.length > DEAD_LETTER_BODY_MAX;
      this.s.insertDead!.run(dlq, big ? `${reason} (body of ${body!.length} bytes truncated to 1024)` : reason, Date.now(), row.headers, row.properties, row.content_type, row.content_encoding, big ? body!.slice(0, 1024) : body);
      if (this.deadLetterMax > 0) this.s.trimDead!.run({ q: dlq, keep: this.deadLetterMax });
      return true;
    });
  }

  /** @internal Turn stored columns into a `WireMessage` under the decoding limits. */
  decode(headers: string, properties: string, contentType: string, contentEncoding: string, body: Buffer | string): WireMessage {
    const bytes = typeof body === 'string' ? Buffer.from(body) : body;
    if (bytes.length > this.limits.maxBytes) {
      throw new DecodeError(`body of ${bytes.length} bytes exceeds the ${this.limits.maxBytes}-byte limit`, { code: 'ERR_TOO_LARGE' });
    }
    const h = decodeJsonText(headers, this.limits);
    const p = decodeJsonText(properties, this.limits);
    if (!isPlainObject(h)) throw new DecodeError('stored headers are not a JSON object', { code: 'ERR_ENVELOPE' });
    if (!isPlainObject(p)) throw new DecodeError('stored properties are not a JSON object', { code: 'ERR_ENVELOPE' });
    return { headers: h, properties: p as MessageProperties, contentType, contentEncoding, body: bytes };
  }

  // Fanout (events, remote control) across the processes of the file: see fanout.ts.
  private fanoutPart: SqliteFanout | undefined;
  private get fanout(): SqliteFanout {
    return (this.fanoutPart ??= new SqliteFanout({ broker: this, open: () => this.open(), hub: () => this.hub! }));
  }
  broadcast(exchange: Exchange, routingKey: string, message: WireMessage): Promise<void> {
    return this.fanout.broadcast(exchange, routingKey, message);
  }
  broadcastMany(exchange: Exchange, items: readonly BroadcastItem[]): Promise<void> {
    return this.fanout.broadcastMany(exchange, items);
  }
  subscribe(exchange: Exchange, options: SubscribeOptions, onMessage: (d: BroadcastDelivery) => void): Promise<Subscription> {
    return this.fanout.subscribe(exchange, options, onMessage);
  }
  sendReply(exchange: Exchange, routingKey: string, message: WireMessage): Promise<void> {
    return this.fanout.sendReply(exchange, routingKey, message);
  }
  openReplyQueue(exchange: Exchange, routingKey: string, options?: ReplyQueueOptions): Promise<ReplyQueue> {
    return this.fanout.openReplyQueue(exchange, routingKey, options);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.fanoutPart?.close();
    for (const c of [...this.consumers]) await c.shutdown();
    this.closed = true;
    if (this.restoreTimer) clearInterval(this.restoreTimer);
    this.hub?.release();
    this.hub = undefined;
    this.db?.close();
    this.db = undefined;
  }
}

function byPriorityThenSeq(a: MessageRow, b: MessageRow): number {
  return a.priority - b.priority || a.seq - b.seq;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** The stored record as text, for inspection of dead letters. */
function rawRecord(r: DeadRow): string {
  const body = r.body === null ? null : (typeof r.body === 'string' ? Buffer.from(r.body) : r.body).toString('base64');
  return JSON.stringify({ headers: r.headers, properties: r.properties, content_type: r.content_type, content_encoding: r.content_encoding, body, body_encoding: 'base64' });
}
