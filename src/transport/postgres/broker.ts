/**
 * The PostgreSQL broker: queues as rows of `<schema>.messages`, for teams
 * whose one stateful service is PostgreSQL. Same interface and semantics
 * as the SQLite broker, with a server in the middle:
 *
 * - A message is a row: the transport-neutral `WireMessage` (headers and
 *   properties as JSON text, body as `bytea`), its queue, kombu's priority
 *   bucket (0, 3, 6, 9; lower first) and a sequence number (FIFO within a
 *   bucket; a message given back gets a negative one and is served next).
 * - Reserving is one statement: `UPDATE … FROM (SELECT … FOR UPDATE SKIP
 *   LOCKED)`, which leases up to a batch of rows to one consumer (`state =
 *   1`, a fresh tag, `lease_until`): concurrent consumers skip each other's
 *   rows instead of waiting, and each row goes to one consumer at a time.
 * - Ack deletes the row, requeue and dead-letter move it, each conditional
 *   on the tag: a delivery whose lease ran out and that another consumer has
 *   since taken can no longer be settled by the first one.
 * - Leases: live consumers renew what they hold every visibility timeout / 4
 *   (at most every minute); every consuming process returns rows whose lease
 *   ran out (their consumer died) to the head of their queue, redelivered.
 *   Leases use the server's clock.
 * - ETA/countdown: a message whose `eta` lies ahead is stored delayed
 *   (`state = 2`, `not_before`) and promoted when due, so it neither
 *   occupies a prefetch window nor needs a lease.
 * - Waking: every publish NOTIFYs `<schema>_queue` with the queue names (at
 *   commit); idle consumers LISTEN and otherwise sleep until the next
 *   delayed message falls due, with a 5 s safety poll.
 * - Dead letters: `<schema>.dead_letters`, with the reason; bodies over 64 KiB
 *   are kept as their first KiB (and cannot be redriven).
 * - Fanout (events, remote control): `fanout.ts`.
 */
import type pg from 'pg';
import { decodeJsonText } from '../../codec/json.ts';
import type { DecodeLimits } from '../../codec/limits.ts';
import { ClosedError, DecodeError, QueueFullError } from '../../errors.ts';
import type { Logger } from '../../observability/logging.ts';
import { priorityStep } from '../virtual/priority.ts';
import { parseIso } from '../../protocol/time.ts';
import type { MessageProperties, WireMessage } from '../../protocol/types.ts';
import type { AdapterContext } from '../../core/adapter-context.ts';
import {
  deadLetterId,
  deadLetterQueueName,
  selectDeadLetters,
  TRUNCATED_REFUSAL,
  type BroadcastDelivery,
  type Broker,
  type ConsumeOptions,
  type Consumer,
  type DeadLetter,
  type DeadLetterSelection,
  type Delivery,
  type BroadcastItem,
  type Exchange,
  type PublishItem,
  type PublishOptions,
  type RecoverOptions,
  type RedriveOptions,
  type RedriveResult,
  type ReplyQueue,
  type ReplyQueueOptions,
  type SubscribeOptions,
  type Subscription,
} from '../../core/broker.ts';
import { ident, inTransaction, NOW_MS, openPool, pgTarget, updatePoolCredentials, type PgTarget } from './connection.ts';
import { DELAYED, messageColumns, pgTargetId, READY, writeMessages, type PgOutboxPublish } from './outbox.ts';
import { PgListener } from './listen.ts';
import { migrate, migrateCoordination } from './schema.ts';
import { PgConsumer } from './consumer.ts';
import { PgFanout } from './fanout.ts';

/** Dead letters keep a body whole up to this size; beyond it, the first KiB. */
const DEAD_LETTER_BODY_MAX = 64 * 1024;
const TRUNCATED_REASON = /\(body of \d+ bytes truncated to 1024\)$/;

/** Options of the PostgreSQL broker. */
export interface PgBrokerOptions extends AdapterContext {
  url: string;
}

/** A row as reserve returns it. */
export interface MessageRow {
  id: string;
  queue: string;
  tag: string;
  redelivered: boolean;
  headers: string;
  properties: string;
  content_type: string;
  content_encoding: string;
  body: Buffer;
}

interface DeadRow {
  id: string;
  reason: string;
  at: string;
  headers: string | null;
  properties: string | null;
  content_type: string | null;
  content_encoding: string | null;
  body: Buffer | null;
}

/** Create the PostgreSQL broker (connected on first use). */
export function createPgBroker(options: PgBrokerOptions): PgBroker {
  return new PgBroker(options);
}

export class PgBroker implements Broker {
  readonly kind = 'postgres';
  readonly logger: Logger;
  readonly limits: DecodeLimits;
  /** Lease of a delivery, ms (`brokerTransportOptions.visibilityTimeout`, default 3600 s as kombu). */
  readonly visibilityTimeoutMs: number;
  /** How often leases are renewed and expired ones restored, ms. */
  readonly leaseCheckMs: number;
  /** Most records kept per dead-letter queue (`deadLetterMaxLength`, default 100,000; 0 = no limit). */
  readonly deadLetterMax: number;
  /** @internal */
  target: PgTarget;
  /** @internal */
  readonly pool: pg.Pool;
  /** @internal LISTEN connection shared by consumers and subscriptions. */
  readonly listener: PgListener;
  /** @internal Quoted schema. */
  readonly s: string;
  /** @internal Channel of queue wake-ups. */
  readonly queueChannel: string;
  private ready: Promise<void> | undefined;
  private readonly consumers = new Set<PgConsumer>();
  private restoreTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(options: PgBrokerOptions) {
    this.logger = options.logger;
    this.limits = options.settings.decodeLimits;
    const t = options.settings.brokerTransportOptions;
    const vt = typeof t.visibilityTimeout === 'number' && t.visibilityTimeout > 0 ? t.visibilityTimeout : 3600;
    this.visibilityTimeoutMs = vt * 1000;
    this.leaseCheckMs = Math.min(60_000, Math.max(250, this.visibilityTimeoutMs / 4));
    this.deadLetterMax = typeof t.deadLetterMaxLength === 'number' ? t.deadLetterMaxLength : 100_000;
    this.target = pgTarget(options.url, 'broker', options.settings, options.logger);
    this.pool = openPool(this.target, 'broker', 4);
    this.listener = new PgListener(this.target, 'broker-listen');
    this.s = ident(this.target.schema);
    this.queueChannel = `${this.target.schema}_queue`;
  }

  /** Connect and migrate the tables; safe to call twice. */
  connect(): Promise<void> {
    if (this.closed) return Promise.reject(new ClosedError('postgres broker'));
    // The coordination tables (beat, shared send-rate buckets) come with either component: see migrateCoordination.
    this.ready ??= migrate(this.pool, this.target.schema, 'broker')
      .then(() => migrateCoordination(this.pool, this.target.schema))
      .catch((err: unknown) => {
        this.ready = undefined;
        throw err;
      });
    return this.ready;
  }

  private async open(): Promise<void> {
    if (this.closed) throw new ClosedError('postgres broker');
    await this.connect();
  }

  async publish(queue: string, message: WireMessage, options?: PublishOptions): Promise<void> {
    await this.publishMany([{ queue, message, options }]);
  }

  /** All items in one statement (or one transaction with caps): every message is stored or none. */
  async publishMany(items: readonly PublishItem[]): Promise<void> {
    if (items.length === 0) return;
    await this.open();
    const columns = messageColumns(items, Date.now());
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
    const capped = [...caps].filter(([, c]) => c.max !== Infinity);
    if (capped.length === 0) {
      await writeMessages(this.pool, this.s, this.queueChannel, columns);
      return;
    }
    // Caps: count and insert under a per-queue transaction lock, so two producers cannot both pass the check.
    await this.transaction(async (client) => {
      for (const [queue, c] of capped.sort(([a], [b]) => (a < b ? -1 : 1))) {
        await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`celeriac.cap.${this.target.schema}.${queue}`]);
        const length = Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${this.s}.messages WHERE queue = $1 AND state IN (0, 2)`, [queue])).rows[0]!.n);
        if (length + c.adding > c.max) throw new QueueFullError(queue, length, c.max);
      }
      await writeMessages(client, this.s, this.queueChannel, columns);
    });
  }

  /**
   * An uncapped publish as rows that a beat store on this database and
   * schema inserts in its own transaction (with the NOTIFY, delivered at
   * its commit). A capped queue's check needs this broker's own step:
   * undefined then, and the message is published directly.
   */
  async prepareOutbox(item: PublishItem): Promise<PgOutboxPublish | undefined> {
    if (item.options?.maxLength !== undefined) return undefined;
    await this.open();
    return {
      engine: 'postgres',
      target: pgTargetId(this.target),
      columns: messageColumns([item], Date.now()),
      // The NOTIFY went out with the commit that carried the row.
      afterCommit: async () => undefined,
    };
  }

  /** @internal Run `fn` in a transaction on one pooled connection. */
  transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return inTransaction(this.pool, fn);
  }

  async consume(queues: readonly string[], options: ConsumeOptions, onMessage: (d: Delivery) => void): Promise<Consumer> {
    await this.open();
    const c = new PgConsumer(this, [...queues], options, onMessage);
    this.consumers.add(c);
    if (!this.restoreTimer) {
      this.restoreTimer = setInterval(() => {
        this.restoreExpired().catch((err: Error) => {
          for (const k of this.consumers) k.reportError(err);
        });
      }, this.leaseCheckMs);
      this.restoreTimer.unref();
    }
    await this.restoreExpired();
    await c.start();
    return c;
  }

  /** @internal A consumer that shut down. */
  forgetConsumer(c: PgConsumer): void {
    this.consumers.delete(c);
  }

  async queueLength(queue: string): Promise<number> {
    await this.open();
    const r = await this.pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${this.s}.messages WHERE queue = $1 AND state IN (0, 2)`, [queue]);
    return Number(r.rows[0]!.n);
  }

  async purge(queue: string): Promise<number> {
    await this.open();
    return (await this.pool.query(`DELETE FROM ${this.s}.messages WHERE queue = $1 AND state IN (0, 2)`, [queue])).rowCount ?? 0;
  }

  async deadLetters(queue: string, limit = 100): Promise<DeadLetter[]> {
    await this.open();
    const r = await this.pool.query<DeadRow>(
      `SELECT id, reason, at, headers, properties, content_type, content_encoding, body FROM ${this.s}.dead_letters WHERE queue = $1 ORDER BY id DESC LIMIT $2`,
      [deadLetterQueueName(queue), limit],
    );
    return r.rows.map((row) => this.toDeadLetter(queue, row));
  }

  private toDeadLetter(queue: string, r: DeadRow): DeadLetter {
    let message: WireMessage | undefined;
    try {
      message = r.headers !== null ? this.decode(r.headers, r.properties ?? '{}', r.content_type ?? '', r.content_encoding ?? '', r.body ?? Buffer.alloc(0)) : undefined;
    } catch {
      message = undefined;
    }
    const raw = JSON.stringify({ headers: r.headers, properties: r.properties, content_type: r.content_type, content_encoding: r.content_encoding, body: r.body?.toString('base64') ?? null, body_encoding: 'base64' });
    return { queue, reason: r.reason, at: Number(r.at), message, raw, ...(TRUNCATED_REASON.test(r.reason) ? { truncated: true } : {}) };
  }

  /** The dead-letter rows of `queue` a selection takes, oldest first, locked for this transaction. */
  private async selectDead(client: pg.PoolClient, queue: string, selection: DeadLetterSelection): Promise<Array<DeadRow & { letter: DeadLetter }>> {
    const r = await client.query<DeadRow>(
      `SELECT id, reason, at, headers, properties, content_type, content_encoding, body FROM ${this.s}.dead_letters WHERE queue = $1 ORDER BY id FOR UPDATE`,
      [deadLetterQueueName(queue)],
    );
    const rows = r.rows.map((row) => ({ ...row, letter: this.toDeadLetter(queue, row) }));
    return selectDeadLetters(rows, (row) => row.letter, selection);
  }

  async redriveDeadLetters(queue: string, options: RedriveOptions = {}): Promise<RedriveResult> {
    await this.open();
    // One transaction: each row leaves the dead-letter table exactly when its message enters the queue.
    return this.transaction(async (client) => {
      const out: RedriveResult = { moved: [], refused: [] };
      const now = Date.now();
      for (const r of await this.selectDead(client, queue, options)) {
        const id = deadLetterId(r.letter);
        if (r.letter.truncated || !r.letter.message || r.headers === null) {
          out.refused.push({ id, reason: r.letter.truncated ? TRUNCATED_REFUSAL : 'the stored message could not be decoded' });
          continue;
        }
        const m = r.letter.message;
        const eta = typeof m.headers.eta === 'string' ? parseIso(m.headers.eta) : undefined;
        const delayed = eta !== undefined && eta > now;
        const target = options.to ?? queue;
        await client.query(
          `INSERT INTO ${this.s}.messages (queue, priority, seq, state, not_before, headers, properties, content_type, content_encoding, body, published_at)
           VALUES ($1, $2, nextval('${this.s}.message_seq'), $3, $4, $5, $6, $7, $8, $9, ${NOW_MS})`,
          [target, priorityStep(m.properties.priority), delayed ? DELAYED : READY, delayed ? eta : 0, r.headers, r.properties ?? '{}', r.content_type ?? m.contentType, r.content_encoding ?? m.contentEncoding, r.body ?? Buffer.alloc(0)],
        );
        await client.query(`DELETE FROM ${this.s}.dead_letters WHERE id = $1`, [r.id]);
        await client.query('SELECT pg_notify($1, $2)', [this.queueChannel, target]);
        out.moved.push(id ?? '');
      }
      return out;
    });
  }

  async dropDeadLetters(queue: string, options: DeadLetterSelection = {}): Promise<number> {
    await this.open();
    return this.transaction(async (client) => {
      const rows = await this.selectDead(client, queue, options);
      if (rows.length === 0) return 0;
      return (await client.query(`DELETE FROM ${this.s}.dead_letters WHERE id = ANY($1::bigint[])`, [rows.map((r) => r.id)])).rowCount ?? 0;
    });
  }

  /** Return deliveries whose lease ran out (their consumer died) to the head of their queue, redelivered. Returns how many. */
  async restoreExpired(): Promise<number> {
    if (this.closed) return 0;
    let restored = 0;
    for (;;) {
      // Negative seq: ahead of everything waiting, like kombu's restore.
      const r = await this.pool.query<{ queue: string }>(
        `UPDATE ${this.s}.messages m SET state = 0, tag = NULL, lease_until = NULL, redelivered = true, seq = -nextval('${this.s}.message_seq')
         FROM (SELECT id FROM ${this.s}.messages WHERE state = 1 AND lease_until <= ${NOW_MS} ORDER BY lease_until LIMIT 1000 FOR UPDATE SKIP LOCKED) x
         WHERE m.id = x.id RETURNING m.queue`,
      );
      const n = r.rowCount ?? 0;
      restored += n;
      if (n > 0) await this.notifyQueues(r.rows.map((row) => row.queue));
      if (n < 1000) break;
    }
    if (restored > 0) this.logger.warn({ restored }, `restored ${restored} unacknowledged message(s) after the visibility timeout`);
    return restored;
  }

  /** @internal Wake the consumers of these queues (in every process). */
  async notifyQueues(queues: readonly string[]): Promise<void> {
    const unique = [...new Set(queues)];
    if (unique.length) await this.pool.query('SELECT count(pg_notify($1, q)) FROM unnest($2::text[]) AS q', [this.queueChannel, unique]);
  }

  /**
   * Give back at once the deliveries of a consumer known to be dead (a
   * worker process killed by its supervisor), by its tag prefix: those in
   * `drop` are deleted, those in `deadLetter` dead-lettered with the reason,
   * the rest go back to the head of their queue.
   */
  async recoverOwner(owner: string, options: RecoverOptions = {}): Promise<number> {
    if (!owner) return 0;
    await this.open();
    const drop = (options.drop ?? []).filter((t) => t.startsWith(owner));
    if (drop.length) await this.pool.query(`DELETE FROM ${this.s}.messages WHERE state = 1 AND tag = ANY($1::text[])`, [drop]);
    for (const [tag, reason] of options.deadLetter ?? []) {
      if (tag.startsWith(owner)) await this.deadLetterTag(tag, reason);
    }
    const r = await this.pool.query<{ queue: string }>(
      `UPDATE ${this.s}.messages SET state = 0, tag = NULL, lease_until = NULL, redelivered = true, seq = -nextval('${this.s}.message_seq')
       WHERE state = 1 AND tag LIKE $1 RETURNING queue`,
      [`${owner.replace(/[\\%_]/g, (c) => `\\${c}`)}%`],
    );
    const n = r.rowCount ?? 0;
    if (n > 0) {
      this.logger.warn({ restored: n, owner }, `restored ${n} message(s) of a lost worker process`);
      await this.notifyQueues(r.rows.map((row) => row.queue));
    }
    return n;
  }

  // ── used by consumers ───────────────────────────────────────────────

  /** @internal Put back, at the head, every row leased under a tag prefix (a reserve whose reply was lost). */
  async releaseTagPrefix(prefix: string): Promise<number> {
    const r = await this.pool.query<{ queue: string }>(
      `UPDATE ${this.s}.messages SET state = 0, tag = NULL, lease_until = NULL, seq = -nextval('${this.s}.message_seq')
       WHERE state = 1 AND tag LIKE $1 RETURNING queue`,
      [`${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`],
    );
    if (r.rows.length) await this.notifyQueues(r.rows.map((row) => row.queue));
    return r.rowCount ?? 0;
  }

  /** @internal Promote due delayed messages of these queues, then lease up to `limit` rows to a consumer. */
  async reserve(queues: readonly string[], limit: number, tagPrefix: string): Promise<MessageRow[]> {
    await this.pool.query(
      `UPDATE ${this.s}.messages m SET state = 0, seq = nextval('${this.s}.message_seq')
       FROM (SELECT id FROM ${this.s}.messages WHERE state = 2 AND queue = ANY($1::text[]) AND not_before <= ${NOW_MS} ORDER BY not_before, id LIMIT 1000 FOR UPDATE SKIP LOCKED) d
       WHERE m.id = d.id`,
      [queues],
    );
    // kombu's order over several queues: priority bucket first, then the queues in the order given, then FIFO.
    const r = await this.pool.query<MessageRow>(
      `UPDATE ${this.s}.messages m SET state = 1, tag = $2 || m.id, lease_until = ${NOW_MS} + $3::bigint
       FROM (
         SELECT c.id FROM unnest($1::text[]) WITH ORDINALITY AS q(name, i)
         CROSS JOIN LATERAL (
           SELECT id, priority, seq FROM ${this.s}.messages WHERE state = 0 AND queue = q.name ORDER BY priority, seq LIMIT $4 FOR UPDATE SKIP LOCKED
         ) c
         ORDER BY c.priority, q.i, c.seq LIMIT $4
       ) x
       WHERE m.id = x.id
       RETURNING m.id, m.queue, m.tag, m.redelivered, m.priority, m.seq, m.headers, m.properties, m.content_type, m.content_encoding, m.body`,
      [queues, tagPrefix, this.visibilityTimeoutMs, limit],
    );
    const qi = new Map(queues.map((q, i) => [q, i]));
    return (r.rows as Array<MessageRow & { priority: number; seq: string }>).sort(
      (a, b) => a.priority - b.priority || qi.get(a.queue)! - qi.get(b.queue)! || Number(a.seq) - Number(b.seq),
    );
  }

  /** @internal How long until the earliest delayed message of these queues falls due (ms, by the server's clock), if any. */
  async nextDueIn(queues: readonly string[]): Promise<number | undefined> {
    const r = await this.pool.query<{ ms: string | null }>(`SELECT min(not_before) - ${NOW_MS} AS ms FROM ${this.s}.messages WHERE state = 2 AND queue = ANY($1::text[])`, [queues]);
    const ms = r.rows[0]?.ms;
    return ms === null || ms === undefined ? undefined : Number(ms);
  }

  /** @internal Delete settled deliveries (those still held under their tags; a tag names its row). */
  async ackMany(tags: readonly string[]): Promise<void> {
    await this.pool.query(`DELETE FROM ${this.s}.messages WHERE state = 1 AND tag = ANY($1::text[])`, [tags]);
  }

  /** @internal Put a delivery back: at the head (served next) or the tail. */
  async requeue(tag: string, where: 'head' | 'tail'): Promise<void> {
    const r = await this.pool.query<{ queue: string }>(
      `UPDATE ${this.s}.messages SET state = 0, tag = NULL, lease_until = NULL, redelivered = true, seq = ${where === 'head' ? '-' : ''}nextval('${this.s}.message_seq')
       WHERE state = 1 AND tag = $1 RETURNING queue`,
      [tag],
    );
    if (r.rows[0]) await this.notifyQueues([r.rows[0].queue]);
  }

  /** @internal Extend the leases of held deliveries by a visibility timeout from now. */
  async renew(tags: readonly string[]): Promise<void> {
    if (tags.length) await this.pool.query(`UPDATE ${this.s}.messages SET lease_until = ${NOW_MS} + $2::bigint WHERE state = 1 AND tag = ANY($1::text[])`, [tags, this.visibilityTimeoutMs]);
  }

  async renewLeases(tags: readonly string[]): Promise<void> {
    await this.open();
    await this.renew(tags);
  }

  /** @internal Move a delivery to `<queue>.dlq` with the reason, in one statement (nothing happens if it is no longer ours). */
  async deadLetterTag(tag: string, reason: string): Promise<boolean> {
    const r = await this.pool.query(
      `WITH d AS (DELETE FROM ${this.s}.messages WHERE state = 1 AND tag = $1 RETURNING queue, headers, properties, content_type, content_encoding, body)
       INSERT INTO ${this.s}.dead_letters (queue, reason, at, headers, properties, content_type, content_encoding, body)
       SELECT queue || '.dlq',
              CASE WHEN length(body) > $3 THEN $2 || ' (body of ' || length(body) || ' bytes truncated to 1024)' ELSE $2 END,
              ${NOW_MS}, headers, properties, content_type, content_encoding,
              CASE WHEN length(body) > $3 THEN substring(body FROM 1 FOR 1024) ELSE body END
       FROM d RETURNING queue`,
      [tag, reason, DEAD_LETTER_BODY_MAX],
    );
    const row = (r.rows as Array<{ queue: string }>)[0];
    if (row && this.deadLetterMax > 0) {
      await this.pool.query(
        `DELETE FROM ${this.s}.dead_letters WHERE queue = $1 AND id <= (SELECT id FROM ${this.s}.dead_letters WHERE queue = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)`,
        [row.queue, this.deadLetterMax],
      );
    }
    return row !== undefined;
  }

  /** @internal Turn stored columns into a `WireMessage` under the decoding limits. */
  decode(headers: string, properties: string, contentType: string, contentEncoding: string, body: Buffer): WireMessage {
    if (body.length > this.limits.maxBytes) {
      throw new DecodeError(`body of ${body.length} bytes exceeds the ${this.limits.maxBytes}-byte limit`, { code: 'ERR_TOO_LARGE' });
    }
    const h = decodeJsonText(headers, this.limits);
    const p = decodeJsonText(properties, this.limits);
    if (!isPlainObject(h)) throw new DecodeError('stored headers are not a JSON object', { code: 'ERR_ENVELOPE' });
    if (!isPlainObject(p)) throw new DecodeError('stored properties are not a JSON object', { code: 'ERR_ENVELOPE' });
    return { headers: h, properties: p as MessageProperties, contentType, contentEncoding, body };
  }

  // Fanout (events, remote control) across every client of the database: see fanout.ts.
  private fanoutPart: PgFanout | undefined;
  private get fanout(): PgFanout {
    return (this.fanoutPart ??= new PgFanout(this));
  }
  async broadcast(exchange: Exchange, routingKey: string, message: WireMessage): Promise<void> {
    await this.open();
    return this.fanout.broadcast(exchange, routingKey, message);
  }
  async broadcastMany(exchange: Exchange, items: readonly BroadcastItem[]): Promise<void> {
    await this.open();
    return this.fanout.broadcastMany(exchange, items);
  }
  async subscribe(exchange: Exchange, options: SubscribeOptions, onMessage: (d: BroadcastDelivery) => void): Promise<Subscription> {
    await this.open();
    return this.fanout.subscribe(exchange, options, onMessage);
  }
  async sendReply(exchange: Exchange, routingKey: string, message: WireMessage): Promise<void> {
    await this.open();
    return this.fanout.broadcast(exchange, routingKey, message);
  }
  async openReplyQueue(exchange: Exchange, routingKey: string, options?: ReplyQueueOptions): Promise<ReplyQueue> {
    await this.open();
    return this.fanout.openReplyQueue(exchange, routingKey, options);
  }

  async updateCredentials(url: string): Promise<void> {
    this.target = await updatePoolCredentials(this.pool, this.target, url);
    this.listener.target = this.target;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.fanoutPart?.close();
    for (const c of [...this.consumers]) await c.shutdown();
    this.closed = true;
    if (this.restoreTimer) clearInterval(this.restoreTimer);
    await this.listener.close();
    await this.pool.end();
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
