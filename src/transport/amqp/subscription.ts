/**
 * Broadcast subscriptions (the base of events and remote control): a
 * queue bound to a fanout or topic exchange, consumed without acks —
 * at-most-once and only while subscribed, as Celery's event receivers and
 * pidbox queues are. Rebuilt on every reconnect.
 */
import type { ConsumeMessage } from 'amqplib';
import { ClosedError } from '../../errors.ts';
import type { Logger } from '../../observability/logging.ts';
import type { WireMessage } from '../../protocol/types.ts';
import { encodeTable, wireMessageFrom } from './codec.ts';
import type { AmqpConnection, Live } from './connection.ts';

/** How to declare the exchange of a broadcast. */
export interface ExchangeOptions {
  /** Exchange type (default `fanout`). Celery: `celery.pidbox` fanout, `celeryev` topic. */
  type?: 'fanout' | 'topic' | 'direct';
  /** Durable exchange (default false as `celery.pidbox`; `celeryev` is durable). Must match how others declared it. */
  durable?: boolean;
}

/** Options of `broadcast`. */
export interface BroadcastOptions extends ExchangeOptions {
  /** Routing key (default `''`; events use e.g. `task.succeeded`). */
  routingKey?: string;
}

/** Options of `subscribe`. */
export interface SubscribeOptions extends ExchangeOptions {
  /** Binding key (default `#` for topic exchanges, `''` otherwise). */
  bindingKey?: string;
  /**
   * A named queue, e.g. Celery's `<node>.celery.pidbox` with
   * `{ 'x-expires': 10000, 'x-message-ttl': 300000 }` and `autoDelete`.
   * Default: a server-named, exclusive, auto-delete queue.
   */
  queue?: { name: string; arguments?: Record<string, string | number | boolean>; autoDelete?: boolean; durable?: boolean; exclusive?: boolean };
  /** Called when the subscription hits an error it recovers from. */
  onError?: (err: Error) => void;
}

/** A message received from a broadcast exchange. */
export interface BroadcastMessage {
  exchange: string;
  routingKey: string;
  message: WireMessage;
}

/** An active subscription. */
export interface Subscription {
  /** Name of the queue currently bound (server-named queues change on reconnect). */
  readonly queue: string | undefined;
  cancel(): Promise<void>;
}

/** One subscription: its own channel, rebuilt on every reconnect. */
export class AmqpSubscription implements Subscription {
  queue: string | undefined;
  private cancelled = false;
  private channel: { close(): Promise<void> } | undefined;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly conn: AmqpConnection,
    private readonly exchange: string,
    private readonly options: SubscribeOptions,
    private readonly onMessage: (m: BroadcastMessage) => void,
    private readonly logger: Logger,
    private readonly forget: (s: AmqpSubscription) => void,
  ) {}

  async start(): Promise<void> {
    const live = await this.conn.open();
    this.unsubscribe = this.conn.onConnect((l) => {
      if (!this.cancelled) this.setup(l).catch((err: unknown) => this.options.onError?.(err as Error));
    });
    await this.setup(live);
  }

  private async setup(live: Live): Promise<void> {
    if (this.cancelled) throw new ClosedError('subscription');
    const o = this.options;
    const type = o.type ?? 'fanout';
    const ch = await live.model.createChannel();
    ch.on('error', (err: Error) => this.options.onError?.(err));
    try {
      await ch.assertExchange(this.exchange, type, { durable: o.durable ?? false, autoDelete: false });
      const q = o.queue;
      const { queue } = await ch.assertQueue(q?.name ?? '', {
        durable: q?.durable ?? false,
        autoDelete: q?.autoDelete ?? true,
        exclusive: q?.exclusive ?? q === undefined,
        arguments: q?.arguments ? encodeTable(q.arguments) : {},
      });
      await ch.bindQueue(queue, this.exchange, o.bindingKey ?? (type === 'topic' ? '#' : ''));
      await ch.consume(queue, (msg) => this.deliver(msg), { noAck: true });
      this.queue = queue;
      this.channel = ch;
    } catch (err) {
      await ch.close().catch(() => undefined);
      throw err;
    }
  }

  private deliver(msg: ConsumeMessage | null): void {
    if (!msg || this.cancelled) return;
    let message: WireMessage;
    try {
      message = wireMessageFrom(msg.properties, msg.content);
    } catch (err) {
      this.logger.warn({ exchange: this.exchange, err }, 'dropped an undecodable broadcast message');
      return;
    }
    try {
      this.onMessage({ exchange: msg.fields.exchange, routingKey: msg.fields.routingKey, message });
    } catch (err) {
      this.logger.error({ exchange: this.exchange, err }, 'broadcast handler failed');
    }
  }

  async cancel(): Promise<void> {
    if (this.cancelled) return;
    this.cancelled = true;
    this.unsubscribe?.();
    await this.channel?.close().catch(() => undefined);
    this.forget(this);
  }
}
