/**
 * Fanout on RabbitMQ in Celery's topology (reference §4.1, vectors
 * amqp/broker_topology.json): the exchange declared as `Exchange` says
 * (`celeryev` durable topic, `celery.pidbox` non-durable fanout,
 * `reply.celery.pidbox` non-durable direct); each subscription is a
 * non-durable auto-delete queue bound to it with Celery's arguments
 * (`x-message-ttl`, `x-expires`, as signed 32-bit integers like py-amqp's),
 * consumed without acks on its own channel of the consuming connection —
 * at-most-once and only while subscribed, as Celery's event receivers and
 * pidbox queues are — and rebuilt on every reconnect.
 */
import { randomUUID } from 'node:crypto';
import type { ConsumeMessage } from 'amqplib';
import { limitContent, oversizedSize } from './content-guard.ts';
import type { DecodeLimits } from '../../codec/limits.ts';
import { ClosedError } from '../../errors.ts';
import type { Logger } from '../../observability/logging.ts';
import type { WireMessage } from '../../protocol/types.ts';
import { ReplyBuffer } from '../virtual/reply-buffer.ts';
import { encodeTable, publishOptions, wireMessageFrom } from './codec.ts';
import type { AmqpConnection, Live } from './connection.ts';
import type { AmqpSettings } from './options.ts';
import type { ConfirmPublisher } from './publisher.ts';
import type { Topology } from './topology.ts';
import {
  CONTROL_QUEUE_EXPIRES_MS,
  CONTROL_QUEUE_TTL_MS,
  subscriptionDefaults,
  type BroadcastDelivery,
  type BroadcastItem,
  type Exchange,
  type ReplyQueue,
  type ReplyQueueOptions,
  type SubscribeOptions,
  type Subscription,
} from '../../core/broker.ts';

/** What the fanout needs from its broker. */
export interface AmqpFanoutOptions {
  pubConn: AmqpConnection;
  pubTopology: Topology;
  publisher: ConfirmPublisher;
  /** The consuming connection (opened on first use). */
  subConn: () => AmqpConnection;
  settings: AmqpSettings;
  logger: Logger;
  limits: DecodeLimits;
}

/** A subscription's queue, as declared on every (re)connect. */
interface QueueSpec {
  name: string;
  exclusive: boolean;
  messageTtlMs: number;
  expiresMs: number;
  bindingKeys: readonly string[];
}

/** The fanout half of an AMQP broker. */
export class AmqpFanout {
  private readonly subscriptions = new Set<AmqpSubscription>();
  private readonly exchangesDeclared = new Map<string, Promise<void>>();
  private exchangesEpoch = 0;
  private closed = false;

  constructor(private readonly o: AmqpFanoutOptions) {}

  async broadcast(exchange: Exchange, routingKey: string, message: WireMessage): Promise<void> {
    if (this.closed) throw new ClosedError('amqp broker');
    await this.ensureExchange(exchange);
    // Not mandatory: a broadcast nobody listens to is dropped, as Celery's are.
    await this.o.publisher.publish([{ exchange: exchange.name, routingKey, content: message.body, options: publishOptions(message, undefined, false) }]);
  }

  /** The messages of `items` as one batch on the confirm channel: written back to back, their confirms awaited together. */
  async broadcastMany(exchange: Exchange, items: readonly BroadcastItem[]): Promise<void> {
    if (this.closed) throw new ClosedError('amqp broker');
    if (items.length === 0) return;
    await this.ensureExchange(exchange);
    await this.o.publisher.publish(items.map(({ routingKey, message }) => ({ exchange: exchange.name, routingKey, content: message.body, options: publishOptions(message, undefined, false) })));
  }

  private async ensureExchange(exchange: Exchange): Promise<void> {
    const live = await this.o.pubConn.ready(Date.now() + this.o.settings.publishTimeoutMs);
    if (live.epoch !== this.exchangesEpoch) {
      this.exchangesEpoch = live.epoch;
      this.exchangesDeclared.clear();
    }
    let p = this.exchangesDeclared.get(exchange.name);
    if (!p) {
      p = this.o.pubTopology.serial(async () => {
        const ch = await this.o.pubTopology.declareChannel(live);
        await ch.assertExchange(exchange.name, exchange.type, { durable: exchange.durable, autoDelete: false });
      });
      p.catch(() => this.exchangesDeclared.delete(exchange.name));
      this.exchangesDeclared.set(exchange.name, p);
    }
    await p;
  }

  async subscribe(exchange: Exchange, options: SubscribeOptions, onMessage: (d: BroadcastDelivery) => void): Promise<Subscription> {
    const d = subscriptionDefaults(exchange);
    return this.start(exchange, options, onMessage, {
      name: options.queue ?? `${exchange.name}.${randomUUID()}`,
      exclusive: options.exclusive ?? options.queue === undefined,
      messageTtlMs: options.messageTtlMs ?? d.messageTtlMs,
      expiresMs: options.expiresMs ?? d.expiresMs,
      bindingKeys: exchange.type === 'fanout' ? [''] : (options.bindingKeys ?? d.bindingKeys),
    });
  }

  private async start(exchange: Exchange, options: SubscribeOptions, onMessage: (d: BroadcastDelivery) => void, spec: QueueSpec): Promise<AmqpSubscription> {
    if (this.closed) throw new ClosedError('amqp broker');
    const s = new AmqpSubscription(this.o.subConn(), exchange, spec, options, onMessage, this.o.logger, this.o.limits, (x) => this.subscriptions.delete(x));
    this.subscriptions.add(s);
    try {
      await s.start();
    } catch (err) {
      await s.close().catch(() => undefined);
      throw err;
    }
    return s;
  }

  sendReply(exchange: Exchange, routingKey: string, message: WireMessage): Promise<void> {
    return this.broadcast(exchange, routingKey, message);
  }

  /** Celery's reply queue: bound with the routing key, control-queue arguments; exclusive, as it has one reader. */
  async openReplyQueue(exchange: Exchange, routingKey: string, options: ReplyQueueOptions = {}): Promise<ReplyQueue> {
    const name = options.queue ?? `${routingKey}.${exchange.name}`;
    let sub: AmqpSubscription | undefined;
    const buffer = new ReplyBuffer(name, async () => sub?.close());
    sub = await this.start(exchange, { onMalformed: options.onMalformed }, (d) => buffer.push(d), {
      name,
      exclusive: true,
      messageTtlMs: CONTROL_QUEUE_TTL_MS,
      expiresMs: CONTROL_QUEUE_EXPIRES_MS,
      bindingKeys: [routingKey],
    });
    return buffer;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.subscriptions].map((s) => s.close()));
  }
}

/** One subscription: its own channel, rebuilt on every reconnect. */
class AmqpSubscription implements Subscription {
  private closed = false;
  private channel: { close(): Promise<void> } | undefined;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly conn: AmqpConnection,
    private readonly exchange: Exchange,
    private readonly spec: QueueSpec,
    private readonly options: SubscribeOptions,
    private readonly onMessage: (m: BroadcastDelivery) => void,
    private readonly logger: Logger,
    private readonly limits: DecodeLimits,
    private readonly forget: (s: AmqpSubscription) => void,
  ) {}

  get queue(): string {
    return this.spec.name;
  }

  async start(): Promise<void> {
    const live = await this.conn.open();
    this.unsubscribe = this.conn.onConnect((l) => {
      if (!this.closed) this.setup(l).catch((err: unknown) => this.options.onError?.(err as Error));
    });
    await this.setup(live);
  }

  private async setup(live: Live): Promise<void> {
    if (this.closed) throw new ClosedError('subscription');
    const ch = await live.model.createChannel();
    ch.on('error', (err: Error) => this.options.onError?.(err));
    // A broadcast over the body limit is not assembled in memory (content-guard.ts).
    limitContent(ch, this.limits.maxBytes);
    try {
      await ch.assertExchange(this.exchange.name, this.exchange.type, { durable: this.exchange.durable, autoDelete: false });
      await ch.assertQueue(this.spec.name, {
        durable: false,
        autoDelete: true,
        exclusive: this.spec.exclusive,
        arguments: encodeTable({ 'x-message-ttl': this.spec.messageTtlMs, 'x-expires': this.spec.expiresMs }),
      });
      for (const key of this.spec.bindingKeys) await ch.bindQueue(this.spec.name, this.exchange.name, key);
      await ch.consume(this.spec.name, (msg) => this.deliver(msg), { noAck: true });
      this.channel = ch;
    } catch (err) {
      await ch.close().catch(() => undefined);
      throw err;
    }
    // Closed while setting up: undo.
    if (this.closed) await ch.close().catch(() => undefined);
  }

  private deliver(msg: ConsumeMessage | null): void {
    if (!msg || this.closed) return;
    const { exchange, routingKey } = msg.fields;
    let message: WireMessage;
    try {
      const size = oversizedSize(msg.properties) ?? msg.content.length;
      if (size > this.limits.maxBytes) throw new Error(`body of ${size} bytes exceeds the ${this.limits.maxBytes}-byte limit`);
      message = wireMessageFrom(msg.properties, msg.content);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      this.logger.warn({ exchange, routingKey }, `dropped a broadcast on ${exchange} that is not a message: ${reason}`);
      this.options.onMalformed?.({ exchange, routingKey, reason });
      return;
    }
    try {
      this.onMessage({ exchange, routingKey, message });
    } catch (err) {
      this.logger.error({ exchange, err }, 'a broadcast handler failed');
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe?.();
    await this.channel?.close().catch(() => undefined);
    this.forget(this);
  }
}
