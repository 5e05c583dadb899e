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
