/**
 * Fanout on the PostgreSQL engine (events, remote control, control
 * replies), across every client of the database: a broadcast is a row of
 * `<schema>.fanout` and, in the same statement, a NOTIFY on
 * `<schema>_fanout` whose payload is `<id> <exchange>` (delivered at
 * commit). Each process LISTENs once; when a notification names an
 * exchange it has subscriptions on, it reads that row by id and hands it to
 * the subscriptions whose binding keys match (AMQP's rules,
 * virtual/topic.ts) and whose message TTL it is within. Reading by the
 * announced id, rather than by a cursor over ids, cannot skip a row whose
 * transaction committed after a later one. A process that is not listening
 * when a broadcast commits never gets it: at-most-once, as Celery's
 * broadcasts are everywhere. Rows older than 60 s are pruned by publishers.
 *
 * Reply queues are subscriptions of the direct reply exchange bound with
 * their routing key, buffered for one reader.
 */
import { randomUUID } from 'node:crypto';
import type { MessageProperties, WireMessage } from '../../protocol/types.ts';
import { ReplyBuffer } from '../virtual/reply-buffer.ts';
import { anyBindingMatches } from '../virtual/topic.ts';
import { NOW_MS } from './connection.ts';
import type { PgBroker } from './broker.ts';
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
const FANOUT_RETENTION_MS = 60_000;
/** Pruning runs at most this often per process, ms. */
const PRUNE_EVERY_MS = 1_000;

interface FanoutRow {
  id: string;
  exchange: string;
  routing_key: string;
  headers: string;
  properties: string;
  content_type: string;
  content_encoding: string;
  body: Buffer;
  age: string;
}

class PgSubscription implements Subscription {
  closed = false;
  constructor(
    private readonly fanout: PgFanout,
    readonly exchange: Exchange,
    readonly queue: string,
    readonly bindingKeys: readonly string[],
    readonly ttlMs: number,
    readonly options: SubscribeOptions,
    readonly onMessage: (d: BroadcastDelivery) => void,
  ) {}

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fanout.forget(this);
  }
}

export class PgFanout {
  private readonly subs = new Set<PgSubscription>();
  private readonly channel: string;
  private unlisten: (() => void) | undefined;
  private listening: Promise<void> | undefined;
  private lastPrune = 0;
  /** Ids announced and not yet read, batched per turn of the event loop. */
  private pending: string[] = [];
  private readScheduled = false;
  /** Reads run one after another, so broadcasts are handed out in the order they were announced (commit order). */
  private reading: Promise<void> = Promise.resolve();

  constructor(private readonly broker: PgBroker) {
    this.channel = `${broker.target.schema}_fanout`;
  }

  async broadcast(exchange: Exchange, routingKey: string, message: WireMessage): Promise<void> {
    const { delivery_info: _i, delivery_tag: _t, body_encoding: _b, ...properties } = message.properties as MessageProperties & Record<string, unknown>;
    const s = this.broker.s;
    await this.broker.pool.query(
      `WITH ins AS (
         INSERT INTO ${s}.fanout (exchange, routing_key, headers, properties, content_type, content_encoding, body, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, ${NOW_MS}) RETURNING id)
       SELECT pg_notify($8, id || ' ' || $1) FROM ins`,
      [exchange.name, routingKey, JSON.stringify(message.headers), JSON.stringify(properties), message.contentType, message.contentEncoding, message.body, this.channel],
    );
    this.pruneNow();
  }

  /**
   * Every row of `items` and its NOTIFY in one statement (one transaction):
   * rows are inserted in the items' order (ascending ids) and announced in
   * id order, so readers hand them out in that order.
   */
  async broadcastMany(exchange: Exchange, items: readonly BroadcastItem[]): Promise<void> {
    if (items.length === 1) return this.broadcast(exchange, items[0]!.routingKey, items[0]!.message);
    if (items.length === 0) return;
    const cols: [string[], string[], string[], string[], string[], Buffer[]] = [[], [], [], [], [], []];
    for (const { routingKey, message } of items) {
      const { delivery_info: _i, delivery_tag: _t, body_encoding: _b, ...properties } = message.properties as MessageProperties & Record<string, unknown>;
      cols[0].push(routingKey);
      cols[1].push(JSON.stringify(message.headers));
      cols[2].push(JSON.stringify(properties));
      cols[3].push(message.contentType);
      cols[4].push(message.contentEncoding);
      cols[5].push(message.body);
    }
    const s = this.broker.s;
    // pg_notify is volatile, so PostgreSQL calls it after the ORDER BY: NOTIFYs go out in id order.
    await this.broker.pool.query(
      `WITH ins AS (
         INSERT INTO ${s}.fanout (exchange, routing_key, headers, properties, content_type, content_encoding, body, created_at)
         SELECT $1, rk, h, p, ct, ce, b, ${NOW_MS}
         FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[]) WITH ORDINALITY AS t(rk, h, p, ct, ce, b, n)
         ORDER BY n RETURNING id)
       SELECT pg_notify($8, id || ' ' || $1) FROM ins ORDER BY id`,
      [exchange.name, ...cols, this.channel],
    );
    this.pruneNow();
  }

  /** Publishers prune rows past the retention, at most once a second per process. */
  private pruneNow(): void {
    const s = this.broker.s;
    const now = Date.now();
    if (now - this.lastPrune >= PRUNE_EVERY_MS) {
      this.lastPrune = now;
      this.broker.pool.query(`DELETE FROM ${s}.fanout WHERE created_at < ${NOW_MS} - $1::bigint`, [FANOUT_RETENTION_MS]).catch((err: Error) => this.broker.logger.warn({ err: err.message }, 'pruning old broadcasts failed'));
    }
  }

  async subscribe(exchange: Exchange, options: SubscribeOptions, onMessage: (d: BroadcastDelivery) => void): Promise<Subscription> {
    const d = subscriptionDefaults(exchange);
    const sub = new PgSubscription(this, exchange, options.queue ?? `${exchange.name}.${randomUUID()}`, options.bindingKeys ?? d.bindingKeys, options.messageTtlMs ?? d.messageTtlMs, options, onMessage);
    this.subs.add(sub);
    this.listening ??= this.broker.listener.on(this.channel, (payload) => this.announced(payload)).then((off) => {
      this.unlisten = off;
    });
    try {
      await this.listening;
    } catch (err) {
      this.listening = undefined;
      this.subs.delete(sub);
      throw err;
    }
    return sub;
  }

  async openReplyQueue(exchange: Exchange, routingKey: string, options: ReplyQueueOptions = {}): Promise<ReplyQueue> {
    let sub: Subscription | undefined;
    const buffer = new ReplyBuffer(options.queue ?? `${routingKey}.${exchange.name}`, async () => sub?.close());
    sub = await this.subscribe({ ...exchange, type: 'direct' }, { bindingKeys: [routingKey], queue: buffer.queue, onMalformed: options.onMalformed }, (d) => buffer.push(d));
    return buffer;
  }

  /** @internal */
  async forget(sub: PgSubscription): Promise<void> {
    this.subs.delete(sub);
  }

  /** A broadcast was announced: read it if some subscription here is on its exchange. */
  private announced(payload: string | undefined): void {
    // After a reconnect there is nothing to catch up on: broadcasts are at-most-once.
    if (payload === undefined) return;
    const space = payload.indexOf(' ');
    if (space <= 0) return;
    const exchange = payload.slice(space + 1);
    let wanted = false;
    for (const s of this.subs) if (s.exchange.name === exchange) wanted = true;
    if (!wanted) return;
    this.pending.push(payload.slice(0, space));
    if (this.readScheduled) return;
    this.readScheduled = true;
    setImmediate(() => {
      this.reading = this.reading.then(() => this.read());
    });
  }

  private async read(): Promise<void> {
    this.readScheduled = false;
    const ids = this.pending;
    this.pending = [];
    let rows: FanoutRow[];
    try {
      const r = await this.broker.pool.query<FanoutRow>(
        `SELECT id, exchange, routing_key, headers, properties, content_type, content_encoding, body, ${NOW_MS} - created_at AS age
         FROM ${this.broker.s}.fanout WHERE id = ANY($1::bigint[])`,
        [ids],
      );
      const byId = new Map(r.rows.map((row) => [String(row.id), row]));
      rows = ids.map((id) => byId.get(id)).filter((row): row is FanoutRow => row !== undefined);
    } catch (err) {
      for (const s of this.subs) s.options.onError?.(err as Error);
      return;
    }
    for (const r of rows) this.dispatch(r);
  }

  private dispatch(r: FanoutRow): void {
    let message: WireMessage | undefined;
    let malformed: string | undefined;
    for (const s of [...this.subs]) {
      if (s.closed || s.exchange.name !== r.exchange) continue;
      if (Number(r.age) > s.ttlMs || !anyBindingMatches(s.exchange.type, s.bindingKeys, r.routing_key)) continue;
      if (message === undefined && malformed === undefined) {
        try {
          message = this.broker.decode(r.headers, r.properties, r.content_type, r.content_encoding, r.body);
        } catch (err) {
          malformed = err instanceof Error ? err.message : String(err);
          this.broker.logger.warn({ exchange: r.exchange, routingKey: r.routing_key }, `dropped a broadcast on ${r.exchange} that is not a message: ${malformed}`);
        }
      }
      if (malformed !== undefined) {
        s.options.onMalformed?.({ exchange: r.exchange, routingKey: r.routing_key, reason: malformed });
        continue;
      }
      try {
        // Each subscriber gets its own copy of the body (a handler may keep or change it).
        s.onMessage({ exchange: r.exchange, routingKey: r.routing_key, message: { ...message!, body: Buffer.from(message!.body) } });
      } catch (err) {
        this.broker.logger.error({ err, exchange: r.exchange }, 'a broadcast handler failed');
      }
    }
  }

  close(): void {
    for (const s of this.subs) s.closed = true;
    this.subs.clear();
    this.unlisten?.();
  }
}
