/**
 * RabbitMQ broker (AMQP 0-9-1) in Celery's layout: tasks go through the
 * default exchange with routing key = queue, as persistent messages with
 * the basic properties Python writes (byte-identical, see
 * `src/transport/amqp/codec.ts`); queues, exchanges and bindings are declared as
 * Celery declares them (`src/transport/amqp/topology.ts`), so Python clients and
 * workers share them.
 *
 * Two connections, as RabbitMQ recommends: one publishes (publisher
 * confirms: a send resolves once the broker holds the message), one
 * consumes (so that flow control on publishing never delays acks). Both
 * reconnect with backoff; consumers and subscriptions resume by
 * themselves (`src/transport/amqp/connection.ts`).
 *
 * Dead-lettering copies the message, with the reason, to the durable
 * queue `<queue>.dlq` and acks the original only after that copy is
 * confirmed. `maxLength` is checked against the queue's ready count just
 * before publishing; unlike Redis this is not atomic with the publish
 * (several clients may overshoot the limit together by their batch sizes).
 *
 * `broadcast` / `subscribe` / reply queues carry fanout and topic traffic
 * (events, remote control): see `src/transport/amqp/fanout.ts`.
 */
import type { AdapterContext } from '../../core/adapter-context.ts';
import type { ResolvedSettings } from '../../config/options.ts';
import { AmqpConnection, amqpEndpoint, type AmqpEndpoint } from './connection.ts';
import { limitContent, oversizedSize } from './content-guard.ts';
import { publishOptions, wireMessageFrom } from './codec.ts';
import { AmqpConsumer } from './consumer.ts';
import { amqpSettings, type AmqpSettings } from './options.ts';
import { ConfirmPublisher, type Outgoing } from './publisher.ts';
import { AmqpFanout } from './fanout.ts';
import { deadLetterDeclaration, replyCode, taskQueueDeclaration, Topology, type QueueDeclaration } from './topology.ts';
import type { DecodeLimits } from '../../codec/limits.ts';
import { ClosedError, ConfigError, QueueFullError } from '../../errors.ts';
import type { Logger } from '../../observability/logging.ts';
import type { WireMessage } from '../../protocol/types.ts';
import {
  deadLetterId,
  deadLetterQueueName,
  TRUNCATED_REFUSAL,
  type DeadLetterSelection,
  type RedriveOptions,
  type RedriveResult,
  type Broker,
  type ConsumeOptions,
  type Consumer,
  type DeadLetter,
  type Delivery,
  type PublishItem,
  type PublishOptions,
  type BroadcastDelivery,
  type BroadcastItem,
  type Exchange,
  type ReplyQueue,
  type ReplyQueueOptions,
  type SubscribeOptions,
  type Subscription,
} from '../../core/broker.ts';

/** Headers Celeriac adds to a dead-lettered copy. */
export const DLQ_HEADERS = {
  reason: 'x-celeriac-dead-letter-reason',
  at: 'x-celeriac-dead-lettered-at',
  queue: 'x-celeriac-original-queue',
  /** Set when only the first KiB of the body was kept: the original body size. */
  truncated: 'x-celeriac-truncated-size',
} as const;
/** Dead letters keep a body whole up to this size; beyond it, the first KiB (the queue stays bounded). */
const DEAD_LETTER_BODY_MAX = 64 * 1024;

export interface AmqpBrokerOptions extends AdapterContext {
  /** `amqp://`, `amqps://` or `pyamqp://` URL; the vhost is the path (`//` means `/`). */
  url: string;
}

/** Create the RabbitMQ broker adapter (connects lazily). */
export function createAmqpBroker(options: AmqpBrokerOptions): AmqpBroker {
  return new AmqpBroker(options);
}

/** The RabbitMQ `Broker`, with fanout and `updateCredentials`. */
export class AmqpBroker implements Broker {
  readonly kind = 'amqp';
  readonly settings: AmqpSettings;
  readonly endpoint: AmqpEndpoint;
  private readonly logger: Logger;
  private readonly limits: DecodeLimits;
  private readonly appSettings: ResolvedSettings;
  private readonly pubConn: AmqpConnection;
  private readonly pubTopology: Topology;
  private readonly publisher: ConfirmPublisher;
  private subConn: AmqpConnection | undefined;
  private subTopology: Topology | undefined;
  private readonly declarations = new Map<string, QueueDeclaration>();
  private readonly dlqDeclarations = new Map<string, QueueDeclaration>();
  private readonly consumers = new Set<AmqpConsumer>();
  private readonly fanout: AmqpFanout;
  private closed = false;

  constructor(options: AmqpBrokerOptions) {
    this.logger = options.logger;
    this.appSettings = options.settings;
    this.limits = options.settings.decodeLimits;
    this.settings = amqpSettings(options.settings);
    this.endpoint = amqpEndpoint(options.url, options.settings);
    this.pubConn = new AmqpConnection({ endpoint: this.endpoint, settings: this.settings, logger: this.logger, role: 'publisher' });
    this.pubTopology = new Topology(this.pubConn, this.logger);
    this.publisher = new ConfirmPublisher(this.pubConn, this.pubTopology, this.logger, this.settings.publishTimeoutMs);
    this.fanout = new AmqpFanout({
      pubConn: this.pubConn,
      pubTopology: this.pubTopology,
      publisher: this.publisher,
      subConn: () => this.consumerConnection().conn,
      settings: this.settings,
      logger: this.logger,
      limits: this.limits,
    });
  }

  /** Open the publishing connection (fails fast on a refused login or TLS error). */
  async connect(): Promise<void> {
    if (this.closed) throw new ClosedError('amqp broker');
    await this.pubConn.open();
  }

  /** Celery's declaration of a task queue, cached so the publisher can compare by identity. */
  declaration(queue: string): QueueDeclaration {
    let d = this.declarations.get(queue);
    if (!d) {
      d = taskQueueDeclaration(queue, this.settings);
      this.declarations.set(queue, d);
    }
    return d;
  }

  async publish(queue: string, message: WireMessage, options?: PublishOptions): Promise<void> {
    await this.publishMany([{ queue, message, options }]);
  }

  async publishMany(items: readonly PublishItem[]): Promise<void> {
    if (this.closed) throw new ClosedError('amqp broker');
    const capped = items.filter((i) => i.options?.maxLength !== undefined);
    if (capped.length > 0) await this.checkLengths(capped);
    const out: Outgoing[] = new Array(items.length);
    for (let i = 0; i < items.length; i++) {
      const { queue, message, options } = items[i]!;
      const exchange = options?.exchange ?? '';
      out[i] = {
        exchange,
        routingKey: queue,
        content: message.body,
        // mandatory: a task that no queue takes comes back instead of vanishing.
        options: publishOptions(message, options?.priority, typeof message.properties.correlation_id === 'string'),
        declare: this.declaration(queue),
      };
    }
    await this.publisher.publish(out);
  }

  /** QueueFullError when a capped queue would exceed its limit (ready messages + this batch). */
  private async checkLengths(items: readonly PublishItem[]): Promise<void> {
    const byQueue = new Map<string, { n: number; max: number }>();
    for (const it of items) {
      const g = byQueue.get(it.queue) ?? { n: 0, max: it.options!.maxLength! };
      g.n++;
      g.max = Math.min(g.max, it.options!.maxLength!);
      byQueue.set(it.queue, g);
    }
    for (const [queue, { n, max }] of byQueue) {
      const length = await this.queueLength(queue);
      if (length + n > max) throw new QueueFullError(queue, length, max);
    }
  }

  private consumerConnection(): { conn: AmqpConnection; topology: Topology } {
    if (!this.subConn) {
      this.subConn = new AmqpConnection({ endpoint: this.endpoint, settings: this.settings, logger: this.logger, role: 'consumer' });
      this.subTopology = new Topology(this.subConn, this.logger);
    }
    return { conn: this.subConn, topology: this.subTopology! };
  }

  async consume(queues: readonly string[], options: ConsumeOptions, onMessage: (d: Delivery) => void): Promise<Consumer> {
    if (this.closed) throw new ClosedError('amqp broker');
    const { conn, topology } = this.consumerConnection();
    const c = new AmqpConsumer(
      {
        conn,
        topology,
        settings: this.settings,
        logger: this.logger,
        limits: this.limits,
        declaration: (q) => this.declaration(q),
        deadLetter: (q, m, reason, bodySize) => this.deadLetterCopy(q, m, reason, bodySize),
        forget: (x) => this.consumers.delete(x),
      },
      [...queues],
      options,
      onMessage,
    );
    this.consumers.add(c);
    try {
      await c.start();
    } catch (err) {
      await c.cancel().catch(() => undefined);
      throw err;
    }
    return c;
  }

  /** Publish a copy of `message` with the reason to `<queue>.dlq`; resolves once confirmed. */
  private async deadLetterCopy(queue: string, message: WireMessage, reason: string, bodySize?: number): Promise<void> {
    const dlq = deadLetterQueueName(queue);
    const headers: Record<string, unknown> = { ...message.headers, [DLQ_HEADERS.reason]: reason.slice(0, 1000), [DLQ_HEADERS.at]: Date.now(), [DLQ_HEADERS.queue]: queue };
    let body = message.body;
    if (bodySize !== undefined && bodySize > body.length) {
      // Only the head was read (content-guard.ts): the record says how large the message was.
      headers[DLQ_HEADERS.truncated] = bodySize;
      body = body.subarray(0, 1024);
    } else if (body.length > DEAD_LETTER_BODY_MAX) {
      headers[DLQ_HEADERS.truncated] = body.length;
      body = body.subarray(0, 1024);
    }
    // No TTL on a dead letter: it stays until someone looks at it.
    const properties = { ...message.properties, delivery_mode: 2 };
    delete properties.expiration;
    const options = publishOptions({ ...message, headers, properties }, 0, typeof properties.correlation_id === 'string');
    await this.publisher.publish([{ exchange: '', routingKey: dlq, content: body, options, declare: this.dlqDeclaration(dlq) }]);
  }

  private dlqDeclaration(dlq: string): QueueDeclaration {
    let d = this.dlqDeclarations.get(dlq);
    if (!d) {
      d = deadLetterDeclaration(dlq, this.settings);
      this.dlqDeclarations.set(dlq, d);
    }
    return d;
  }

  /** Run an administrative command on the publisher connection's declaration channel; 404 (no such queue) → `onMissing`. */
  private async admin<T>(op: (ch: import('amqplib').Channel) => Promise<T>, onMissing: T): Promise<T> {
    if (this.closed) throw new ClosedError('amqp broker');
    const live = await this.pubConn.ready(Date.now() + this.settings.publishTimeoutMs);
    return this.pubTopology.serial(async () => {
      const ch = await this.pubTopology.declareChannel(live);
      try {
        return await op(ch);
      } catch (err) {
        if (replyCode(err) === 404) return onMissing;
        throw err;
      }
    });
  }

  /** Ready messages of a queue (not counting unacknowledged ones); 0 for a queue that does not exist. */
  async queueLength(queue: string): Promise<number> {
    return this.admin(async (ch) => (await ch.checkQueue(queue)).messageCount, 0);
  }

  async purge(queue: string): Promise<number> {
    return this.admin(async (ch) => (await ch.purgeQueue(queue)).messageCount, 0);
  }

  /** Read up to `limit` dead letters of `queue` without removing them (they are requeued in order). */
  async deadLetters(queue: string, limit = 100): Promise<DeadLetter[]> {
    return this.onReaderConnection(async (live) => {
      const ch = await live.model.createChannel();
      ch.on('error', () => undefined);
      // A dead letter Celeriac wrote is at most 64 KiB; anything larger (put there by others) is read as its head only.
      limitContent(ch, Math.max(this.limits.maxBytes, DEAD_LETTER_BODY_MAX));
      const out: DeadLetter[] = [];
      try {
        for (let i = 0; i < limit; i++) {
          const m = await ch.get(deadLetterQueueName(queue), { noAck: false });
          if (m === false) break;
          out.push(this.toDeadLetter(queue, m.properties, m.content));
        }
      } catch (err) {
        if (replyCode(err) !== 404) throw err;
      } finally {
        // Closing the channel without acking puts every message back where it was.
        await ch.close().catch(() => undefined);
      }
      return out;
    });
  }

  /**
   * Run a dead-letter read (`basic.get`) on a short-lived connection of its
   * own. A `basic.get` on a quorum queue whose leader is not up yet (declared
   * a moment ago by the worker's first dead letter) fails with a *connection*
   * exception (541 internal_error, "noproc"): on the publisher's connection
   * that would fail every send in flight. A listing is tried again, for up
   * to ~3 s, on a fresh connection; a walk that acknowledges (redrive, drop)
   * is not, since part of it may be done.
   */
  private async onReaderConnection<T>(op: (live: Awaited<ReturnType<AmqpConnection['open']>>) => Promise<T>, retry = true): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      if (this.closed) throw new ClosedError('amqp broker');
      const reader = new AmqpConnection({ endpoint: this.endpoint, settings: this.settings, logger: this.logger, role: 'dead-letter reader' });
      try {
        return await op(await reader.open());
      } catch (err) {
        if (replyCode(err) !== 541 && !/Channel ended|Connection closed/i.test((err as Error).message ?? '')) throw err;
        if (!retry || attempt >= 6) throw err;
        await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
      } finally {
        await reader.close().catch(() => undefined);
      }
    }
  }

  /**
   * Walk `<queue>.dlq` with `basic.get` on a private channel and apply
   * `take` to each selected dead letter: acknowledged ones leave the queue,
   * the rest go back in order when the channel closes.
   */
  private async walkDeadLetters(queue: string, selection: DeadLetterSelection, take: (d: DeadLetter, ack: () => void) => Promise<void>): Promise<void> {
    await this.onReaderConnection(async (live) => {
      const ch = await live.model.createChannel();
      ch.on('error', () => undefined);
      // A dead letter Celeriac wrote is at most 64 KiB; anything larger (put there by others) is read as its head only.
      limitContent(ch, Math.max(this.limits.maxBytes, DEAD_LETTER_BODY_MAX));
      const ids = selection.ids ? new Set(selection.ids) : undefined;
      let taken = 0;
      try {
        while (selection.limit === undefined || taken < selection.limit) {
          const m = await ch.get(deadLetterQueueName(queue), { noAck: false });
          if (m === false) break;
          const d = this.toDeadLetter(queue, m.properties, m.content);
          if (ids && !ids.has(deadLetterId(d) ?? '')) continue;
          taken++;
          await take(d, () => ch.ack(m));
        }
      } catch (err) {
        if (replyCode(err) !== 404) throw err;
      } finally {
        // Unacknowledged messages (not selected, refused, or not confirmed) go back to the dead-letter queue.
        await ch.close().catch(() => undefined);
      }
    }, false);
  }

  /** Publish each selected dead letter (confirmed by the broker), then remove it: nothing is lost; a crash between the two can at worst leave a copy in the DLQ. */
  async redriveDeadLetters(queue: string, options: RedriveOptions = {}): Promise<RedriveResult> {
    const out: RedriveResult = { moved: [], refused: [] };
    await this.walkDeadLetters(queue, options, async (d, ack) => {
      const id = deadLetterId(d);
      if (d.truncated || !d.message) {
        out.refused.push({ id, reason: d.truncated ? TRUNCATED_REFUSAL : 'the stored message could not be decoded' });
        return;
      }
      await this.publish(options.to ?? d.queue, d.message);
      ack();
      out.moved.push(id ?? '');
    });
    return out;
  }

  async dropDeadLetters(queue: string, options: DeadLetterSelection = {}): Promise<number> {
    let n = 0;
    await this.walkDeadLetters(queue, options, async (_d, ack) => {
      ack();
      n++;
    });
    return n;
  }

  private toDeadLetter(queue: string, properties: import('amqplib').MessageProperties, content: Buffer): DeadLetter {
    let message: WireMessage | undefined;
    let reason = 'unknown';
    let at = 0;
    let original = queue;
    let truncated = false;
    try {
      const m = wireMessageFrom(properties, content);
      const h = m.headers;
      if (typeof h[DLQ_HEADERS.reason] === 'string') reason = h[DLQ_HEADERS.reason] as string;
      if (typeof h[DLQ_HEADERS.at] === 'number') at = h[DLQ_HEADERS.at] as number;
      if (typeof h[DLQ_HEADERS.queue] === 'string') original = h[DLQ_HEADERS.queue] as string;
      if (h[DLQ_HEADERS.truncated] !== undefined || oversizedSize(properties) !== undefined) truncated = true;
      for (const k of Object.values(DLQ_HEADERS)) delete h[k];
      // The dead-letter queue's own count of returns (a quorum DLQ counts every listing): not the message's.
      delete h['x-delivery-count'];
      message = m;
    } catch {
      message = undefined;
    }
    const utf8 = /utf-?8/i.test(String(properties.contentEncoding ?? ''));
    return { queue: original, reason, at, message, raw: content.toString(utf8 ? 'utf8' : 'base64'), ...(truncated ? { truncated: true } : {}) };
  }

  // ── fanout (events, remote control): see fanout.ts ──────────────────

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

  /**
   * Use new credentials (secret rotation): they are checked on a probe
   * connection first (a typo fails here, not at the next reconnect), then
   * every later (re)connect uses them. Open connections stay as they are —
   * RabbitMQ checks credentials only when a connection opens — so in-flight
   * work is not disturbed. The URL must name the same server and vhost.
   */
  async updateCredentials(url: string): Promise<void> {
    if (this.closed) throw new ClosedError('amqp broker');
    const next = amqpEndpoint(url, this.appSettings);
    const a = this.endpoint.connect;
    const b = next.connect;
    if (a.hostname !== b.hostname || a.port !== b.port || a.vhost !== b.vhost || a.protocol !== b.protocol) {
      throw new ConfigError(`new broker URL ${next.url.redacted} names another server or vhost than ${this.endpoint.url.redacted}`, {
        hint: 'credential rotation keeps host, port, vhost and scheme; restart to move to another broker',
      });
    }
    const probe = new AmqpConnection({ endpoint: next, settings: this.settings, logger: this.logger, role: 'credential-check' });
    try {
      await probe.open();
    } finally {
      await probe.close();
    }
    a.username = b.username;
    a.password = b.password;
    // A failover list: the other nodes take the credentials of their own URL in the new list.
    for (const [i, node] of (this.endpoint.nodes ?? []).entries()) {
      const n = next.nodes?.[i];
      if (i === 0 || !n) continue;
      node.connect.username = n.connect.username;
      node.connect.password = n.connect.password;
    }
    this.endpoint.tls = next.tls;
    this.endpoint.url = next.url;
    this.logger.info({ host: this.endpoint.display }, 'amqp credentials updated; new connections use them');
  }

  /** Close everything; unsettled deliveries go back to their queues. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.consumers].map((c) => c.shutdown()));
    await this.fanout.close();
    await this.publisher.close();
    await Promise.allSettled([this.pubConn.close(), this.subConn?.close()]);
  }
}
