/**
 * The Broker interface every transport implements (Redis, AMQP, SQLite,
 * memory). The worker and the client see only this; one conformance suite
 * (test/conformance/broker.ts) runs against every adapter.
 */
import type { WireMessage } from '../protocol/types.ts';

export interface PublishOptions {
  /** 0..9 on Redis/SQLite (lower runs first), 0..255 on AMQP (higher first). Defaults to the message property. */
  priority?: number;
  /** Exchange to publish through; default `''` (route straight to the queue). */
  exchange?: string;
  /**
   * Refuse with `QueueFullError` when the queue would hold more than this
   * many messages (checked atomically with the publish where the broker allows).
   */
  maxLength?: number;
}

/** One message in a bulk publish. */
export interface PublishItem {
  queue: string;
  message: WireMessage;
  options?: PublishOptions;
}

/** A delivered message. Exactly one of ack / reject / deadLetter must be called. */
export interface Delivery {
  readonly message: WireMessage;
  /** The queue it was taken from (without any priority suffix). */
  readonly queue: string;
  /** Adapter-assigned tag, unique among unsettled deliveries. */
  readonly deliveryTag: string;
  /** True when the broker says this message was delivered before. */
  readonly redelivered: boolean;
  /**
   * How many times the broker itself says this message was given back
   * before this delivery (RabbitMQ quorum queues' `x-delivery-count`):
   * crashes, kills, lost connections and explicit requeues alike. Undefined
   * where the engine does not count.
   */
  readonly deliveryCount?: number;
  /**
   * True once the broker has taken the message back (AMQP: its channel
   * closed; Redis: its lease ran out): another consumer may hold it now,
   * so it must not start here. Settling it is harmless.
   */
  readonly stale?: boolean;
  /** Remove the message for good. */
  ack(): Promise<void>;
  /** Give the message back (`requeue`) or drop it. */
  reject(requeue: boolean): Promise<void>;
  /**
   * Move the message, with the reason, to the queue's dead-letter queue
   * (`<queue>.dlq`), atomically where the broker allows.
   */
  deadLetter(reason: string): Promise<void>;
}

/** A message the adapter could not even turn into a `WireMessage`; it has already been dead-lettered. */
export interface MalformedDelivery {
  queue: string;
  reason: string;
  /** Task id when one could be found, for logs. */
  id: string | undefined;
}

export interface ConsumeOptions {
  /** Most unsettled deliveries at once; 0 = unlimited. */
  prefetch: number;
  /** Called for a transport-level malformed message (after it was dead-lettered). */
  onMalformed?: (info: MalformedDelivery) => void;
  /** Called when the adapter hits an error it recovers from (reconnects, retries). */
  onError?: (err: Error) => void;
}

export interface Consumer {
  /** Stop taking new messages. Unsettled deliveries stay valid and must still be settled. */
  cancel(): Promise<void>;
  /** Change the prefetch window (the worker widens it while it holds ETA tasks). */
  setPrefetch(prefetch: number): void;
  /** Deliveries taken and not yet settled. */
  readonly unsettled: number;
  /**
   * Identifies this consumer's deliveries at the broker, when the broker can
   * recover them for a consumer known to be dead (`Broker.recoverOwner`).
   */
  readonly owner?: string;
}

/** A message that went to a dead-letter queue. */
export interface DeadLetter {
  queue: string;
  reason: string;
  /** Epoch ms. */
  at: number;
  /** The original message, when it could be decoded. */
  message: WireMessage | undefined;
  /** The original bytes/text as stored, for inspection. */
  raw: string;
  /** The message was too large and only its start is stored: it cannot be redriven. */
  truncated?: boolean;
}

/** Which dead letters `redriveDeadLetters`/`dropDeadLetters` take. */
export interface DeadLetterSelection {
  /** Only the dead letters of these task ids (`message.headers.id`); default all. */
  ids?: readonly string[];
  /** At most this many (oldest first); default all. */
  limit?: number;
}

/** Options of `Broker.redriveDeadLetters`. */
export interface RedriveOptions extends DeadLetterSelection {
  /** Queue to publish them to; default the queue they were dead-lettered from. */
  to?: string;
}

/** What `redriveDeadLetters` did. */
export interface RedriveResult {
  /** Task ids moved back to a queue (each removed from the dead-letter queue exactly once). */
  moved: string[];
  /** Dead letters left in place, with why (a truncated record cannot be redriven). */
  refused: Array<{ id: string | undefined; reason: string }>;
}

/** The task id a dead letter is known by (its message's id). */
export function deadLetterId(d: DeadLetter): string | undefined {
  const id = d.message?.headers.id ?? d.message?.properties.correlation_id;
  return typeof id === 'string' ? id : undefined;
}

/** The items (oldest first) a selection takes: those of its ids, at most its limit. */
export function selectDeadLetters<T>(items: readonly T[], letter: (item: T) => DeadLetter, selection: DeadLetterSelection = {}): T[] {
  const ids = selection.ids ? new Set(selection.ids) : undefined;
  const out: T[] = [];
  for (const item of items) {
    if (selection.limit !== undefined && out.length >= selection.limit) break;
    if (ids && !ids.has(deadLetterId(letter(item)) ?? '')) continue;
    out.push(item);
  }
  return out;
}

/** Why a truncated dead letter cannot be redriven. */
export const TRUNCATED_REFUSAL = 'the message was stored truncated (it was larger than the dead-letter record limit): only its start is kept, so it cannot be sent again';

/**
 * A publish prepared so that another atomic write on the same server or
 * file can carry it: celeriac beat's outbox stores a tick's record and its
 * task message in one step, so a leader that dies in between can neither
 * lose the tick nor send it twice. Only its own engine's beat store reads
 * what is inside (the store checks `engine` and `target` first).
 */
export interface OutboxPublish {
  /** The engine that prepared it (`Broker.kind`). */
  readonly engine: string;
  /** The server or file it must be written to; a store elsewhere cannot carry it. */
  readonly target: string;
  /** Run once the write that carried it committed (wake idle consumers, wait for replicas). */
  afterCommit(): Promise<void>;
}

export interface Broker {
  /** `redis`, `amqp`, `sqlite`, `memory`, … */
  readonly kind: string;
  /** Open connections; called lazily by the others, safe to call twice. */
  connect(): Promise<void>;
  /** Publish one message; resolves once the broker holds it. */
  publish(queue: string, message: WireMessage, options?: PublishOptions): Promise<void>;
  /** Publish many messages at once (one round trip where the broker allows). */
  publishMany(items: readonly PublishItem[]): Promise<void>;
  /**
   * Prepare `item` for a write of the same engine to carry (see
   * {@link OutboxPublish}); undefined when it cannot be carried (a capped
   * queue, whose check needs the broker's own step). Engines without it
   * are always published directly.
   */
  prepareOutbox?(item: PublishItem): Promise<OutboxPublish | undefined>;
  /** Start consuming `queues` in order; deliveries arrive through `onMessage`. */
  consume(queues: readonly string[], options: ConsumeOptions, onMessage: (delivery: Delivery) => void): Promise<Consumer>;
  /** Messages waiting in a queue (all priority buckets). */
  queueLength(queue: string): Promise<number>;
  /** Remove every waiting message of a queue; returns how many. */
  purge(queue: string): Promise<number>;
  /** Read (without removing) up to `limit` dead-lettered messages of a queue. */
  deadLetters(queue: string, limit?: number): Promise<DeadLetter[]>;
  /** Close every connection. Unsettled deliveries are returned to their queues. */
  close(): Promise<void>;
  /**
   * Move dead letters of `queue` back to it (or to `to`), oldest first, each
   * exactly once: atomically where the broker allows, else published with
   * a confirm before it is removed. Truncated records are refused.
   */
  redriveDeadLetters?(queue: string, options?: RedriveOptions): Promise<RedriveResult>;
  /** Delete dead letters of `queue` for good; returns how many. */
  dropDeadLetters?(queue: string, options?: DeadLetterSelection): Promise<number>;
  /**
   * Give back at once every unsettled delivery of a consumer known to be
   * dead (by its `Consumer.owner`), removing those listed in `drop` instead
   * and moving those in `deadLetter` (tag → reason) to their dead-letter
   * queue. Brokers without it fall back on their own redelivery (visibility
   * timeout, or AMQP's redelivery when the connection drops).
   */
  recoverOwner?(owner: string, options?: RecoverOptions): Promise<number>;
  /**
   * Renew the leases of deliveries held by another process (by their tags),
   * for brokers whose leases expire (a supervisor renews its children's
   * running tasks: a task that blocks its process's event loop stops that
   * process from renewing them).
   */
  renewLeases?(tags: readonly string[]): Promise<void>;
  /**
   * Use new credentials (same server) from now on, without dropping open
   * connections or in-flight work (secret rotation on SIGHUP).
   */
  updateCredentials?(url: string): Promise<void>;
  /**
   * Publish to a fanout or topic exchange (events, remote control): every
   * subscription bound at that moment whose binding matches `routingKey`
   * gets it once; nobody else, and nobody later. At-most-once, no ack.
   * Redis: kombu's pub/sub channel `/{db}.{exchange}[/{routingKey}]`;
   * AMQP: the exchange declared as `exchange` says.
   */
  broadcast(exchange: Exchange, routingKey: string, message: WireMessage): Promise<void>;
  /**
   * `broadcast` of several messages to one exchange, in their order, in one
   * round trip where the engine allows (Redis: one pipeline of PUBLISH;
   * AMQP: one batch on the confirm channel; SQLite: one transaction;
   * PostgreSQL: one statement). A subscriber gets them in this order.
   * Rejects once when the batch could not be sent; some of it may have
   * gone out (broadcasts are at-most-once). Callers fall back on
   * `broadcast` per item when an engine lacks it.
   */
  broadcastMany?(exchange: Exchange, items: readonly BroadcastItem[]): Promise<void>;
  /** Receive what is broadcast on `exchange` from now on, until `close()`. */
  subscribe(exchange: Exchange, options: SubscribeOptions, onMessage: (delivery: BroadcastDelivery) => void): Promise<Subscription>;
  /**
   * Send a reply through a direct exchange (pidbox's `reply.celery.pidbox`):
   * it reaches the reply queues opened with the same routing key; with none
   * open, it is dropped.
   */
  sendReply(exchange: Exchange, routingKey: string, message: WireMessage): Promise<void>;
  /**
   * Open a reply queue bound to a direct exchange with `routingKey`
   * (pidbox: `<oid>.reply.celery.pidbox`, key `<oid>`), read by this
   * client alone with a timeout.
   */
  openReplyQueue(exchange: Exchange, routingKey: string, options?: ReplyQueueOptions): Promise<ReplyQueue>;
}

/** What `Broker.recoverOwner` does besides giving messages back. */
export interface RecoverOptions {
  /** Delivery tags to remove (their task is settled: it must not run again). */
  drop?: readonly string[];
  /** Delivery tags to dead-letter, with the reason (a poison message). */
  deadLetter?: ReadonlyMap<string, string>;
}

/** Name of a queue's dead-letter queue. */
export function deadLetterQueueName(queue: string): string {
  return `${queue}.dlq`;
}

// ── Fanout: the transport of events and remote control ─────────────────

/**
 * How an exchange routes, with AMQP's meaning on every engine: `fanout`
 * to every bound queue, `topic` by binding pattern (`*` one word, `#` zero
 * or more words), `direct` by equal key.
 */
export type ExchangeType = 'fanout' | 'topic' | 'direct';

/** An exchange for broadcast traffic, declared as Celery declares it (AMQP refuses a different declaration). */
export interface Exchange {
  readonly name: string;
  readonly type: ExchangeType;
  /** AMQP durability (Celery: `celeryev` durable, `celery.pidbox` and its reply exchange not). Other engines ignore it. */
  readonly durable: boolean;
}

/** Celery's event exchange (`event_exchange`, default `celeryev`): topic, durable; routing keys such as `worker.heartbeat`, `task.multi`. */
export function eventExchange(name = 'celeryev'): Exchange {
  return { name, type: 'topic', durable: true };
}

/** Celery's remote-control exchange `<control_exchange>.pidbox` (default `celery.pidbox`): fanout, not durable. */
export function controlExchange(controlExchangeName = 'celery'): Exchange {
  return { name: `${controlExchangeName}.pidbox`, type: 'fanout', durable: false };
}

/** The exchange control replies go through, `reply.<control_exchange>.pidbox`: direct, not durable. */
export function replyExchange(controlExchangeName = 'celery'): Exchange {
  return { name: `reply.${controlExchangeName}.pidbox`, type: 'direct', durable: false };
}

/** A worker's control queue, `<nodename>.<control_exchange>.pidbox`. */
export function controlQueueName(nodename: string, controlExchangeName = 'celery'): string {
  return `${nodename}.${controlExchangeName}.pidbox`;
}

/** A control client's reply queue, `<oid>.reply.<control_exchange>.pidbox` (bound with routing key `<oid>`). */
export function replyQueueName(oid: string, controlExchangeName = 'celery'): string {
  return `${oid}.reply.${controlExchangeName}.pidbox`;
}

/** Celery's queue arguments, ms: event receivers (`event_queue_ttl` 5 s, `event_queue_expires` 60 s). */
export const EVENT_QUEUE_TTL_MS = 5_000;
export const EVENT_QUEUE_EXPIRES_MS = 60_000;
/** Control and reply queues (`control_queue_ttl` 300 s, `control_queue_expires` 10 s). */
export const CONTROL_QUEUE_TTL_MS = 300_000;
export const CONTROL_QUEUE_EXPIRES_MS = 10_000;

/** One message of `Broker.broadcastMany`, under its routing key. */
export interface BroadcastItem {
  readonly routingKey: string;
  readonly message: WireMessage;
}

/** A message received from a broadcast exchange or a reply queue. */
export interface BroadcastDelivery {
  readonly exchange: string;
  readonly routingKey: string;
  readonly message: WireMessage;
}

/** Something arrived on a fanout channel that is not a message; it was dropped. */
export interface MalformedBroadcast {
  exchange: string;
  /** Routing key when known (Redis: from the channel name). */
  routingKey: string;
  reason: string;
}

/** Options of `Broker.subscribe`. */
export interface SubscribeOptions {
  /**
   * Binding keys. Topic exchanges: patterns, default `['#']` (everything).
   * Fanout exchanges take every message whatever the key. On Redis each key
   * becomes kombu's PSUBSCRIBE pattern (`#` → `*`, so `worker.#` is
   * `/{db}.celeryev/worker.*`, the pattern Redis ACLs grant) and what
   * arrives is then matched with AMQP's rules.
   */
  bindingKeys?: readonly string[];
  /**
   * Queue name: the AMQP queue, the member of kombu's Redis binding set.
   * Default `<exchange>.<uuid>` (Celery's event receivers: `celeryev.<uuid>`);
   * a worker's control queue is `controlQueueName(node)`.
   */
  queue?: string;
  /**
   * Exclusive to this connection (AMQP). Default: true for a generated
   * name, false for a given one (as Celery 5.2.6 declares its pidbox queue).
   */
  exclusive?: boolean;
  /**
   * A message older than this is not delivered (AMQP `x-message-ttl`;
   * SQLite skips older rows). Default Celery's: 5 s on topic exchanges
   * (events), 300 s otherwise (control).
   */
  messageTtlMs?: number;
  /** AMQP `x-expires` of the queue. Default Celery's: 60 s on topic exchanges, 10 s otherwise. */
  expiresMs?: number;
  /** Called for what arrived on the channel and could not be read as a message (it was dropped). */
  onMalformed?: (info: MalformedBroadcast) => void;
  /** Called when the subscription hits an error it recovers from (reconnects). */
  onError?: (err: Error) => void;
}

/** An active subscription. */
export interface Subscription {
  /** The queue name (see `SubscribeOptions.queue`). */
  readonly queue: string;
  /** Stop delivery; resolves once nothing more will be delivered. Safe to call twice. */
  close(): Promise<void>;
}

/** Options of `Broker.openReplyQueue`. */
export interface ReplyQueueOptions {
  /** Queue name; default `<routingKey>.<exchange>` (pidbox: `<oid>.reply.celery.pidbox`). */
  queue?: string;
  /** Called for a reply that could not be read as a message (it was dropped). */
  onMalformed?: (info: MalformedBroadcast) => void;
}

/** A queue that collects the replies sent to one routing key of a direct exchange, for one reader. */
export interface ReplyQueue {
  readonly queue: string;
  /** The next reply, or `undefined` when none came within `timeoutMs` (or the queue was closed). */
  receive(timeoutMs: number): Promise<BroadcastDelivery | undefined>;
  /** Stop collecting and delete the queue; a pending `receive` resolves `undefined`. */
  close(): Promise<void>;
}

/** Default queue-argument values of a subscription to `exchange` (Celery's, see `SubscribeOptions`). */
export function subscriptionDefaults(exchange: Exchange): { messageTtlMs: number; expiresMs: number; bindingKeys: readonly string[] } {
  return exchange.type === 'topic'
    ? { messageTtlMs: EVENT_QUEUE_TTL_MS, expiresMs: EVENT_QUEUE_EXPIRES_MS, bindingKeys: ['#'] }
    : { messageTtlMs: CONTROL_QUEUE_TTL_MS, expiresMs: CONTROL_QUEUE_EXPIRES_MS, bindingKeys: [''] };
}
