/**
 * Fanout on the SQLite engine, across every process that opens the file:
 * a broadcast is a row of `fanout` (exchange, routing key, the message),
 * committed and then announced on the `fanout` wake channel (wake.ts);
 * each subscription keeps a cursor (the last row id it has seen, starting
 * at the newest row when it subscribes), reads the rows of its exchange
 * after it when woken, and takes those its binding keys match (AMQP's
 * rules, virtual/topic.ts) and that are younger than its message TTL.
 * Rows older than `FANOUT_RETENTION_MS` are pruned by the publishers, so
 * a subscriber stalled longer than that misses them: at-most-once, as
 * Celery's broadcasts are everywhere.
 *
 * Reply queues are subscriptions of the direct reply exchange bound with
 * the routing key, buffered for one reader.
 */
import { randomUUID } from 'node:crypto';
import type { DecodeLimits } from '../../codec/limits.ts';
import { ClosedError, DecodeError } from '../../errors.ts';
import type { MessageProperties, WireMessage } from '../../protocol/types.ts';
import { ReplyBuffer } from '../virtual/reply-buffer.ts';
import { anyBindingMatches } from '../virtual/topic.ts';
import type { Logger } from '../../observability/logging.ts';
import type { SqliteDatabase, SqliteStatement } from './open.ts';
import type { WakeHub } from './wake.ts';
import { FITS, ROW_SIZE } from './size-limit.ts';
import {
  subscriptionDefaults,
  type BroadcastDelivery,
  type BroadcastItem,
  type Exchange,
  type ReplyQueue,
  type ReplyQueueOptions,
  type SubscribeOptions,
  type Subscription,
} from '../../core/broker.ts';

/** How long a broadcast row is kept, ms. */
export const FANOUT_RETENTION_MS = 60_000;
/** Pruning runs at most this often per process, ms. */
const PRUNE_EVERY_MS = 1_000;
/** Rows read per query while catching up. */
const SCAN_BATCH = 500;

/** What the fanout uses of its broker (structural: no import cycle with broker.ts). */
export interface SqliteFanoutBroker {
  readonly logger: Logger;
  /** Run `fn` in a write transaction. */
  write<T>(fn: () => T): T;
  /** The decoding limits (a broadcast over `maxBytes` is not read). */
  readonly limits: DecodeLimits;
  /** A stored message under the decoding limits (throws DecodeError). */
  decode(headers: string, properties: string, contentType: string, contentEncoding: string, body: Buffer | string): WireMessage;
}

/** What the fanout needs from its broker. */
export interface SqliteFanoutOptions {
  broker: SqliteFanoutBroker;
  /** The open database (opening it on first use). */
  open: () => SqliteDatabase;
  /** This process's wake hub of the file (set while open). */
  hub: () => WakeHub;
}

/** A broadcast row; its parts are NULL when it is over the limit (it was measured, not read). */
interface FanoutRow {
  id: number;
  routing_key: string;
  size: number;
  headers: string | null;
  properties: string | null;
  content_type: string | null;
  content_encoding: string | null;
  body: Buffer | string | null;
  created_at: number;
}

/** The fanout half of a SQLite broker. */
export class SqliteFanout {
  private db: SqliteDatabase | undefined;
  private s!: Record<'insert' | 'prune' | 'last' | 'after', SqliteStatement>;
  private lastPrune = 0;
  private readonly subscriptions = new Set<SqliteSubscription>();
  private closed = false;

  constructor(private readonly o: SqliteFanoutOptions) {}

  private stmt(name: 'insert' | 'prune' | 'last' | 'after'): SqliteStatement {
    const db = this.o.open();
    if (db !== this.db) {
      this.db = db;
      this.s = {
        insert: db.prepare('INSERT INTO fanout (exchange, routing_key, headers, properties, content_type, content_encoding, body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
        prune: db.prepare('DELETE FROM fanout WHERE created_at < ?'),
        last: db.prepare('SELECT coalesce(max(id), 0) AS id FROM fanout'),
        // A row over the body limit is measured, not read (octet_length looks at the record header only): its columns come back NULL.
        after: db.prepare(
          `SELECT id, routing_key, created_at, ${ROW_SIZE} AS size,
             CASE WHEN ${FITS} THEN headers END AS headers, CASE WHEN ${FITS} THEN properties END AS properties,
             CASE WHEN ${FITS} THEN content_type END AS content_type, CASE WHEN ${FITS} THEN content_encoding END AS content_encoding,
             CASE WHEN ${FITS} THEN body END AS body
           FROM fanout WHERE exchange = @exchange AND id > @cursor ORDER BY id LIMIT @limit`,
        ),
      };
    }
    return this.s[name];
  }

  async broadcast(exchange: Exchange, routingKey: string, message: WireMessage): Promise<void> {
    return this.broadcastMany(exchange, [{ routingKey, message }]);
  }

  /** Every row of `items` in one write transaction (ids in their order), then one wake-up. */
  async broadcastMany(exchange: Exchange, items: readonly BroadcastItem[]): Promise<void> {
    if (this.closed) throw new ClosedError('sqlite broker');
    if (items.length === 0) return;
    const insert = this.stmt('insert');
    const now = Date.now();
    this.o.broker.write(() => {
      for (const { routingKey, message } of items) {
        const { delivery_info: _i, delivery_tag: _t, body_encoding: _b, ...properties } = message.properties as MessageProperties & Record<string, unknown>;
        insert.run(exchange.name, routingKey, JSON.stringify(message.headers), JSON.stringify(properties), message.contentType, message.contentEncoding, message.body, now);
      }
      if (now - this.lastPrune >= PRUNE_EVERY_MS) {
        this.lastPrune = now;
        this.s.prune.run(now - FANOUT_RETENTION_MS);
      }
    });
    this.o.hub().signal('fanout');
  }

  async subscribe(exchange: Exchange, options: SubscribeOptions, onMessage: (d: BroadcastDelivery) => void): Promise<Subscription> {
    if (this.closed) throw new ClosedError('sqlite broker');
    const d = subscriptionDefaults(exchange);
    const cursor = (this.stmt('last').get() as { id: number }).id;
    const s = new SqliteSubscription(this, exchange, options.queue ?? `${exchange.name}.${randomUUID()}`, options.bindingKeys ?? d.bindingKeys, options.messageTtlMs ?? d.messageTtlMs, options, onMessage, cursor);
    this.subscriptions.add(s);
    s.unwake = this.o.hub().subscribe('fanout', () => s.scan());
    return s;
  }

  /** @internal Rows of `exchange` after `cursor`. */
  rowsAfter(exchange: string, cursor: number): FanoutRow[] {
    return this.stmt('after').all({ exchange, cursor, limit: SCAN_BATCH, max: this.o.broker.limits.maxBytes }) as FanoutRow[];
  }

  /** @internal Decode a row under the broker's limits (throws DecodeError). */
  decode(r: FanoutRow): WireMessage {
    if (r.body === null || r.headers === null || r.properties === null || r.content_type === null || r.content_encoding === null) {
      throw new DecodeError(`broadcast of ${r.size} bytes exceeds the ${this.o.broker.limits.maxBytes}-byte limit; not read`, { code: 'ERR_TOO_LARGE' });
    }
    return this.o.broker.decode(r.headers, r.properties, r.content_type, r.content_encoding, r.body);
  }

  get logger(): Logger {
    return this.o.broker.logger;
  }

  /** @internal */
  forget(s: SqliteSubscription): void {
    this.subscriptions.delete(s);
  }

  sendReply(exchange: Exchange, routingKey: string, message: WireMessage): Promise<void> {
    return this.broadcast(exchange, routingKey, message);
  }

  async openReplyQueue(exchange: Exchange, routingKey: string, options: ReplyQueueOptions = {}): Promise<ReplyQueue> {
    let sub: Subscription | undefined;
    const buffer = new ReplyBuffer(options.queue ?? `${routingKey}.${exchange.name}`, async () => sub?.close());
    sub = await this.subscribe({ ...exchange, type: 'direct' }, { bindingKeys: [routingKey], queue: buffer.queue, onMalformed: options.onMalformed }, (d) => buffer.push(d));
    return buffer;
  }

  close(): void {
    this.closed = true;
    for (const s of [...this.subscriptions]) void s.close();
  }
}

class SqliteSubscription implements Subscription {
  unwake: (() => void) | undefined;
  private closed = false;

  constructor(
    private readonly fanout: SqliteFanout,
    private readonly exchange: Exchange,
    readonly queue: string,
    private readonly bindingKeys: readonly string[],
    private readonly ttlMs: number,
    private readonly options: SubscribeOptions,
    private readonly onMessage: (d: BroadcastDelivery) => void,
    private cursor: number,
  ) {}

  /** Deliver what was broadcast since the last scan. */
  scan(): void {
    try {
      for (;;) {
        if (this.closed) return;
        const rows = this.fanout.rowsAfter(this.exchange.name, this.cursor);
        const oldest = Date.now() - this.ttlMs;
        for (const r of rows) {
          if (this.closed) return;
          this.cursor = r.id;
          if (r.created_at < oldest || !anyBindingMatches(this.exchange.type, this.bindingKeys, r.routing_key)) continue;
          let message: WireMessage;
          try {
            message = this.fanout.decode(r);
          } catch (err) {
            const reason = err instanceof Error ? err.message : String(err);
            this.fanout.logger.warn({ exchange: this.exchange.name, routingKey: r.routing_key }, `dropped a broadcast on ${this.exchange.name} that is not a message: ${reason}`);
            this.options.onMalformed?.({ exchange: this.exchange.name, routingKey: r.routing_key, reason });
            continue;
          }
          try {
            this.onMessage({ exchange: this.exchange.name, routingKey: r.routing_key, message });
          } catch (err) {
            this.fanout.logger.error({ err, exchange: this.exchange.name }, 'a broadcast handler failed');
          }
        }
        if (rows.length < SCAN_BATCH) return;
      }
    } catch (err) {
      // The database is busy or closing: the next wake (or the hub's safety check) tries again.
      this.options.onError?.(err as Error);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unwake?.();
    this.fanout.forget(this);
  }
}
