/**
 * A task consumer: one channel on the consumer connection, `basic.qos`
 * with `global=true` as Celery sets it on RabbitMQ (one window shared by
 * all queues of the consumer), `basic.consume` with manual acks on each
 * queue.
 *
 * Settling follows AMQP's rules about channels: a delivery tag means
 * something only on the channel that delivered it. When the channel or
 * the connection dies, RabbitMQ requeues every unacknowledged message of
 * that channel by itself; the deliveries the application still holds
 * become *stale*, and settling them later is a no-op (an ack for an old
 * tag is never sent on a new channel: it would ack another message, or
 * make RabbitMQ close the channel). The requeued copies arrive again,
 * flagged `redelivered`, once the consumer is back: at most the messages
 * that were in flight run twice, none is lost.
 */
import type { Channel, ConsumeMessage } from 'amqplib';
import type { ConsumeOptions, Consumer, Delivery } from '../../core/broker.ts';
import type { DecodeLimits } from '../../codec/limits.ts';
import { ConnectionError, DecodeError } from '../../errors.ts';
import type { Logger } from '../../observability/logging.ts';
import type { WireMessage } from '../../protocol/types.ts';
import { wireMessageFrom } from './codec.ts';
import { limitContent, oversizedSize } from './content-guard.ts';
import type { AmqpConnection, Live } from './connection.ts';
import type { AmqpSettings } from './options.ts';
import { ConsumerCore, VirtualDelivery, type EnginePrimitives } from '../virtual/consumer-core.ts';
import type { QueueDeclaration, Topology } from './topology.ts';

/** What a consumer needs from its broker. */
export interface ConsumerContext {
  conn: AmqpConnection;
  topology: Topology;
  settings: AmqpSettings;
  logger: Logger;
  limits: DecodeLimits;
  declaration(queue: string): QueueDeclaration;
  /** Publish a copy to the queue's dead-letter queue (confirmed); `bodySize`: the real size of a body that was not read whole. */
  deadLetter(queue: string, message: WireMessage, reason: string, bodySize?: number): Promise<void>;
  forget(consumer: AmqpConsumer): void;
}

/** RabbitMQ's header on a message a quorum queue delivers again: how many times it was returned before. */
const DELIVERY_COUNT = 'x-delivery-count';

/**
 * Take RabbitMQ's delivery count out of the headers (so it never reaches
 * task code, nor a dead-letter copy that would carry a stale count into a
 * redriven message) and return it for a redelivered message. A first
 * delivery has none: RabbitMQ sets it when it delivers again, so a value a
 * publisher wrote is ignored there.
 */
function takeDeliveryCount(message: WireMessage, redelivered: boolean): number | undefined {
  const h = message.headers;
  if (!Object.hasOwn(h, DELIVERY_COUNT)) return undefined;
  const v = h[DELIVERY_COUNT];
  delete h[DELIVERY_COUNT];
  if (!redelivered) return undefined;
  const n = typeof v === 'bigint' ? Number(v) : v;
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 ? n : undefined;
}

/** Pause before a message whose dead-lettering failed goes back to its queue. */
const DLQ_RETRY_MS = 5000;

interface ChannelState {
  ch: Channel;
  epoch: number;
  /** Distinguishes channels opened within one connection epoch. */
  seq: number;
  closed: boolean;
  /** consumer tag → queue */
  tags: Map<string, string>;
  staleReported: boolean;
}

/** One delivery, settled on the channel that delivered it. */
class AmqpDelivery extends VirtualDelivery {
  constructor(
    core: ConsumerCore<AmqpDelivery>,
    readonly st: ChannelState,
    readonly raw: ConsumeMessage,
    message: WireMessage,
    queue: string,
    tag: string,
    /** RabbitMQ's count of earlier returns (quorum queues), see `Delivery.deliveryCount`. */
    readonly deliveryCount?: number,
  ) {
    super(core, tag, queue, message, raw.fields.redelivered);
  }

  /** The announced size of a body that was over the limit and not assembled (only its head is in `message`). */
  get oversized(): number | undefined {
    return oversizedSize(this.raw.properties);
  }
}

/**
 * The `Consumer` of the AMQP broker (see the module comment for settling
 * rules): a push engine on the shared consumer core — RabbitMQ enforces the
 * window (`basic.qos`), the core keeps held deliveries, settle-once and
 * malformed handling, and this class settles on the delivery's channel.
 */
export class AmqpConsumer implements Consumer, EnginePrimitives<AmqpDelivery> {
  private readonly core: ConsumerCore<AmqpDelivery>;
  private state: ChannelState | undefined;
  private seq = 0;
  private readonly unsubscribe: Array<() => void> = [];
  private settingUp: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryAttempt = 0;
  private prefetchQueued = false;
  private readonly global: boolean;

  constructor(
    private readonly ctx: ConsumerContext,
    private readonly queues: readonly string[],
    private readonly options: ConsumeOptions,
    private readonly onMessage: (d: Delivery) => void,
  ) {
    this.core = new ConsumerCore<AmqpDelivery>({ consume: options, primitives: this });
    // Quorum queues do not support a channel-wide (global) prefetch; there the window is per queue.
    this.global = ctx.settings.queueType !== 'quorum';
  }

  get unsettled(): number {
    return this.core.unsettled;
  }

  private get cancelled(): boolean {
    return this.core.cancelled;
  }

  /** Open the channel and start consuming; errors of this first attempt are thrown. */
  async start(): Promise<void> {
    const live = await this.ctx.conn.open();
    this.unsubscribe.push(this.ctx.conn.onConnect((l) => this.resume(l)));
    this.unsubscribe.push(
      this.ctx.conn.onLost((_epoch, err) => {
        if (!this.cancelled) this.options.onError?.(new ConnectionError(`amqp consumer connection lost (${err.message.split('\n')[0]}); reconnecting`, { code: 'ERR_CONNECTION_LOST' }));
      }),
    );
    await this.setup(live);
  }

  /** (Re)build the channel on a new connection. */
  private resume(live: Live): void {
    if (this.cancelled) return;
    void this.trySetup(live);
  }

  private async trySetup(live: Live): Promise<void> {
    if (this.settingUp) return this.settingUp;
    const st = this.state;
    if (st && !st.closed && st.epoch === live.epoch) return;
    this.settingUp = this.setup(live)
      .then(() => {
        this.retryAttempt = 0;
      })
      .catch((err: unknown) => {
        if (this.cancelled) return;
        this.options.onError?.(err as Error);
        this.scheduleRetry();
      })
      .finally(() => {
        this.settingUp = undefined;
      });
    return this.settingUp;
  }

  private scheduleRetry(): void {
    if (this.cancelled || this.retryTimer) return;
    const { backoffInitialMs, backoffMaxMs } = this.ctx.settings;
    const delay = Math.min(backoffMaxMs, Math.max(50, backoffInitialMs) * 2 ** this.retryAttempt++);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      const live = this.ctx.conn.current();
      // Without a connection, the reconnect will call resume().
      if (live) void this.trySetup(live);
    }, delay);
  }

  private async setup(live: Live): Promise<void> {
    const ch = await live.model.createChannel();
    const st: ChannelState = { ch, epoch: live.epoch, seq: ++this.seq, closed: false, tags: new Map(), staleReported: false };
    ch.on('error', (err: Error) => {
      if (!this.cancelled) this.options.onError?.(err);
    });
    ch.on('close', () => this.channelClosed(st));
    // A body over the limit is never assembled in memory (content-guard.ts): the consumer dead-letters its head.
    limitContent(ch, this.ctx.limits.maxBytes);
    try {
      await ch.prefetch(this.core.prefetch, this.global);
      for (const q of this.queues) {
        const p = this.ctx.topology.ensure(this.ctx.declaration(q), live);
        if (p) await p;
      }
      if (this.cancelled) {
        await ch.close().catch(() => undefined);
        return;
      }
      this.state = st;
      for (const q of this.queues) {
        const { consumerTag } = await ch.consume(q, (msg) => this.onDelivery(st, q, msg), { noAck: false });
        st.tags.set(consumerTag, q);
      }
    } catch (err) {
      if (!st.closed) await ch.close().catch(() => undefined);
      throw err;
    }
  }

  private channelClosed(st: ChannelState): void {
    st.closed = true;
    // The broker requeued every unacked message of this channel: those deliveries are void now.
    for (const d of this.core.held.values()) if (d.st === st) this.core.forget(d);
    if (this.state === st) this.state = undefined;
    if (this.cancelled) return;
    // A channel-only failure (the connection lives on): rebuild after a pause.
    const live = this.ctx.conn.current();
    if (live && live.epoch === st.epoch) this.scheduleRetry();
  }

  private onDelivery(st: ChannelState, queue: string, msg: ConsumeMessage | null): void {
    if (msg === null) {
      // Consumer cancelled by the broker (queue deleted): declare the queue again and re-subscribe.
      if (this.cancelled || st.closed) return;
      this.options.onError?.(new ConnectionError(`RabbitMQ cancelled the consumer of queue ${JSON.stringify(queue)} (deleted?); re-declaring it`, { code: 'ERR_CONSUMER_CANCELLED' }));
      this.ctx.topology.forget(queue);
      void st.ch.close().catch(() => undefined);
      return;
    }
    if (this.cancelled) {
      // Arrived after cancel: give it straight back.
      try {
        st.ch.nack(msg, false, true);
      } catch {
        // channel already gone: the broker requeues it anyway
      }
      return;
    }
    const tag = `${st.epoch}.${st.seq}.${msg.fields.deliveryTag}`;
    let message: WireMessage;
    let malformed: string | undefined;
    try {
      message = wireMessageFrom(msg.properties, msg.content);
      const announced = oversizedSize(msg.properties);
      if (announced !== undefined) {
        malformed = `body of ${announced} bytes exceeds the ${this.ctx.limits.maxBytes}-byte limit (not read: only its first ${msg.content.length} bytes are kept)`;
      } else if (msg.content.length > this.ctx.limits.maxBytes) {
        malformed = `body of ${msg.content.length} bytes exceeds the ${this.ctx.limits.maxBytes}-byte limit`;
      }
    } catch (err) {
      malformed = err instanceof DecodeError ? err.reason : (err as Error).message;
      message = { headers: {}, properties: { correlation_id: msg.properties.correlationId as string | undefined }, contentType: String(msg.properties.contentType ?? ''), contentEncoding: String(msg.properties.contentEncoding ?? ''), body: msg.content };
    }
    const d = new AmqpDelivery(this.core, st, msg, message, queue, tag, takeDeliveryCount(message, msg.fields.redelivered));
    if (malformed !== undefined) {
      const reason = `malformed message: ${malformed}`;
      // The top-level id header survives even when the rest of the headers did not decode.
      const rawId = (msg.properties.headers as Record<string, unknown> | undefined)?.id;
      const id = typeof rawId === 'string' ? rawId : (msg.properties.correlationId as string | undefined);
      this.core.malformed(d, reason, reason, id);
      return;
    }
    this.core.hold(d);
    this.onMessage(d);
  }

  // ── the core's primitives (../virtual/consumer-core.ts) ─────────────

  ack(d: AmqpDelivery): void {
    this.onChannel(d, 'ack');
  }

  requeue(d: AmqpDelivery): void {
    this.onChannel(d, 'requeue');
  }

  drop(d: AmqpDelivery): void {
    this.onChannel(d, 'drop');
  }

  /** True once the broker has taken the message back (its channel closed): settling it does nothing. */
  isStale(d: AmqpDelivery): boolean {
    return d.st.closed;
  }

  /**
   * Copy to `<queue>.dlq` (confirmed); the core then acks. If the copy fails
   * (e.g. the user may not declare or write the dead-letter queue) the
   * message is requeued after a pause, so nothing is lost and a refused
   * message does not spin through the consumer.
   */
  async copyToDeadLetter(d: AmqpDelivery, reason: string): Promise<void> {
    try {
      await this.ctx.deadLetter(d.queue, d.message, reason, d.oversized);
    } catch (err) {
      setTimeout(() => void this.core.requeue(d, 'tail'), DLQ_RETRY_MS).unref();
      throw err;
    }
  }

  /** Ack, requeue or drop on the delivery's own channel; for a stale delivery, only a log line. */
  private onChannel(d: AmqpDelivery, how: 'ack' | 'requeue' | 'drop'): void {
    const st = d.st;
    if (st.closed) {
      this.reportStale(st, d);
      return;
    }
    try {
      if (how === 'ack') st.ch.ack(d.raw);
      else st.ch.reject(d.raw, how === 'requeue');
    } catch {
      // The channel closed in between: the broker has requeued the message.
      this.reportStale(st, d);
    }
  }

  private reportStale(st: ChannelState, d: AmqpDelivery): void {
    const msg = `delivery ${d.deliveryTag} not settled: its channel closed, so RabbitMQ has requeued the message (it will be delivered again, flagged redelivered)`;
    if (!st.staleReported) {
      st.staleReported = true;
      this.ctx.logger.warn({ queue: d.queue, id: d.message.headers.id }, msg);
    } else {
      this.ctx.logger.debug({ queue: d.queue, id: d.message.headers.id }, msg);
    }
  }

  /** After a settle: a cancelled consumer keeps its channel only for the deliveries still held. */
  settled(): void {
    if (this.cancelled && this.core.held.size === 0) {
      const st = this.state;
      if (st && !st.closed) void st.ch.close().catch(() => undefined);
    }
  }

  setPrefetch(prefetch: number): void {
    this.core.prefetch = Math.max(0, Math.floor(prefetch));
    // The worker may call this many times in one tick (ETA holds): send only the last value.
    if (this.prefetchQueued) return;
    this.prefetchQueued = true;
    queueMicrotask(() => {
      this.prefetchQueued = false;
      const st = this.state;
      if (!st || st.closed) return; // the next setup uses the new value
      st.ch.prefetch(this.core.prefetch, this.global).catch((err: unknown) => this.options.onError?.(err as Error));
    });
  }

  /** Stop consuming; unsettled deliveries stay valid on the open channel until settled. */
  async cancel(): Promise<void> {
    if (this.cancelled) return;
    this.core.cancelled = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    for (const u of this.unsubscribe.splice(0)) u();
    await this.settingUp?.catch(() => undefined);
    const st = this.state;
    if (st && !st.closed) {
      for (const tag of st.tags.keys()) await st.ch.cancel(tag).catch(() => undefined);
      if (this.core.held.size === 0) await st.ch.close().catch(() => undefined);
    }
    this.ctx.forget(this);
  }

  /** Broker closing: stop, and give every unsettled delivery back to its queue. */
  async shutdown(): Promise<void> {
    await this.cancel();
    const st = this.state;
    // Not settled: a later settle finds the channel closed and says so (see `onChannel`).
    this.core.held.clear();
    if (st && !st.closed) {
      try {
        // Requeue explicitly before the close, so the messages are back by the time close() resolves.
        st.ch.nackAll(true);
      } catch {
        // already closed
      }
      st.closed = true;
      await st.ch.close().catch(() => undefined);
    }
  }
}
