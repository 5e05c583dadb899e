/**
 * Fanout on Redis in kombu's layout, so Python Celery's event receivers,
 * `celery inspect` and workers share it:
 *
 * - A broadcast is `PUBLISH` of kombu's JSON envelope (envelope.ts) on the
 *   channel `<global_keyprefix>/<db>.<exchange>` plus `/<routing key>` on
 *   topic exchanges (kombu's `fanout_prefix` and `fanout_patterns`, both on
 *   in Celery): `/0.celeryev/worker.heartbeat`, `/0.celery.pidbox`.
 * - A subscription `PSUBSCRIBE`s kombu's pattern of each binding key (`#`
 *   becomes `*`: `/0.celeryev/*`, `/0.celeryev/worker.*`), the exact
 *   patterns Redis ACLs grant (src/secrets/generate.ts), on one dedicated
 *   subscriber connection per broker (same TLS, ACL user and credential
 *   reload as the broker's). What arrives is then matched with AMQP's
 *   rules (a glob `*` also spans dots), delivered once per subscription
 *   even when several of its patterns match, and its binding is recorded
 *   in `_kombu.binding.<exchange>` while it lives.
 * - Replies go through a direct exchange as kombu routes one: the members
 *   `<routing key>\x06\x16\x06\x16<queue>` of `_kombu.binding.<exchange>`
 *   name the lists to `LPUSH` onto; a reply queue is such a list, read with
 *   `BRPOP` on its own connection and deleted when closed.
 *
 * Pub/sub is at-most-once and reaches only connected subscribers.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { ResolvedSettings } from '../../config/options.ts';
import { ClosedError } from '../../errors.ts';
import type { WireMessage } from '../../protocol/types.ts';
import { PRIORITY_STEPS, priorityStep } from '../virtual/priority.ts';
import { anyBindingMatches } from '../virtual/topic.ts';
import { connectClient, createRedisClient, parseRedisUrl, updateClientCredentials } from './connection.ts';
import { decodeRedisEnvelope, encodeRedisEnvelope, PRIORITY_SEP, priorityQueueKey } from './envelope.ts';
import type { DecodeLimits } from '../../codec/limits.ts';
import type { Logger } from '../../observability/logging.ts';
import {
  subscriptionDefaults,
  type BroadcastDelivery,
  type BroadcastItem,
  type Exchange,
  type MalformedBroadcast,
  type ReplyQueue,
  type ReplyQueueOptions,
  type SubscribeOptions,
  type Subscription,
} from '../../core/broker.ts';

/** What the fanout uses of its broker (structural: no import cycle with broker.ts). */
export interface RedisFanoutBroker {
  /** The broker's command connection (PUBLISH, binding sets, reply lists). */
  readonly client: Redis;
  /** `global_keyprefix`. */
  readonly prefix: string;
  readonly logger: Logger;
  readonly limits: DecodeLimits;
  connect(): Promise<void>;
}

/** What the fanout needs from its broker. */
export interface RedisFanoutOptions {
  broker: RedisFanoutBroker;
  /** The broker URL now (it changes on a credential reload). */
  url: () => string;
  settings: ResolvedSettings;
}

/** kombu's channel name of (exchange, routing key): the routing key is appended on topic exchanges only. */
export function fanoutChannel(prefix: string, db: number, exchange: Exchange, routingKey: string): string {
  const base = `${prefix}/${db}.${exchange.name}`;
  return exchange.type !== 'fanout' && routingKey !== '' ? `${base}/${routingKey}` : base;
}

/** A Redis glob matching `text` literally (its `*`, `?`, `[`, `]`, `\` escaped). */
function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

/** kombu's PSUBSCRIBE pattern of a binding key (`#` → `*`); other glob characters are matched literally. */
export function subscribePattern(prefix: string, db: number, exchange: Exchange, bindingKey: string): string {
  const base = globEscape(`${prefix}/${db}.${exchange.name}`);
  if (exchange.type === 'fanout' || bindingKey === '') return base;
  const key = bindingKey
    .split(/([*#])/)
    .map((part) => (part === '*' || part === '#' ? '*' : globEscape(part)))
    .join('');
  return `${base}/${key}`;
}

/** Whether a pattern made by `subscribePattern` (only `*` wildcards and `\` escapes) matches a channel. */
export function globMatches(pattern: string, text: string): boolean {
  // Split into literal pieces around unescaped `*`.
  const pieces: string[] = [''];
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\' && i + 1 < pattern.length) pieces[pieces.length - 1] += pattern[++i]!;
    else if (c === '*') pieces.push('');
    else pieces[pieces.length - 1] += c;
  }
  if (pieces.length === 1) return pieces[0] === text;
  const first = pieces[0]!;
  const last = pieces[pieces.length - 1]!;
  if (!text.startsWith(first) || text.length < first.length + last.length || !text.endsWith(last)) return false;
  let at = first.length;
  const end = text.length - last.length;
  for (let i = 1; i < pieces.length - 1; i++) {
    const found = text.indexOf(pieces[i]!, at);
    if (found < 0 || found + pieces[i]!.length > end) return false;
    at = found + pieces[i]!.length;
  }
  return true;
}

interface RedisSubscriber {
  exchange: Exchange;
  base: string;
  bindingKeys: readonly string[];
  patterns: string[];
  /** Its members of `_kombu.binding.<exchange>`. */
  members: string[];
  options: SubscribeOptions;
  onMessage: (d: BroadcastDelivery) => void;
  open: boolean;
}

/** The fanout half of a Redis broker. */
export class RedisFanout {
  private readonly prefix: string;
  private readonly db: number;
  private sub: Redis | undefined;
  private subConnecting: Promise<void> | undefined;
  /** Patterns subscribed on the connection: how many subscriptions use each, and its PSUBSCRIBE. */
  private readonly patterns = new Map<string, { n: number; ready: Promise<unknown> }>();
  private readonly subscribers = new Set<RedisSubscriber>();
  private readonly replyQueues = new Set<RedisReplyQueue>();
  private closed = false;

  constructor(private readonly o: RedisFanoutOptions) {
    this.prefix = o.broker.prefix;
    this.db = parseRedisUrl(o.url()).db;
  }

  private get client(): Redis {
    return this.o.broker.client;
  }

  /** A new connection of this broker's server, user and TLS settings. */
  newClient(role: string): Redis {
    return createRedisClient({ url: this.o.url(), settings: this.o.settings, logger: this.o.broker.logger, role, side: 'broker' });
  }

  async broadcast(exchange: Exchange, routingKey: string, message: WireMessage): Promise<void> {
    if (this.closed) throw new ClosedError('redis broker');
    await this.o.broker.connect();
    const envelope = encodeRedisEnvelope(message, { exchange: exchange.name, routingKey, deliveryTag: randomUUID() });
    await this.client.publish(fanoutChannel(this.prefix, this.db, exchange, routingKey), envelope);
  }

  /** Every PUBLISH of `items` in one pipeline: one write and one round trip, in order. */
  async broadcastMany(exchange: Exchange, items: readonly BroadcastItem[]): Promise<void> {
    if (items.length === 1) return this.broadcast(exchange, items[0]!.routingKey, items[0]!.message);
    if (this.closed) throw new ClosedError('redis broker');
    if (items.length === 0) return;
    await this.o.broker.connect();
    const pipeline = this.client.pipeline();
    for (const { routingKey, message } of items) {
      pipeline.publish(fanoutChannel(this.prefix, this.db, exchange, routingKey), encodeRedisEnvelope(message, { exchange: exchange.name, routingKey, deliveryTag: randomUUID() }));
    }
    const replies = await pipeline.exec();
    // A pipeline resolves with each command's error in place; the batch fails with the first.
    const failed = replies?.find(([err]) => err);
    if (failed) throw failed[0];
  }

  private async subscriber(): Promise<Redis> {
    if (!this.sub) {
      // ioredis re-subscribes every pattern after a reconnect (autoResubscribe).
      const sub = this.newClient('fanout');
      sub.on('pmessageBuffer', (pattern: string | Buffer, channel: Buffer, payload: Buffer) => this.dispatch(String(pattern), channel.toString(), payload));
      // The client logs and reconnects by itself; subscriptions that asked are told too.
      sub.on('error', (err: Error) => {
        for (const s of this.subscribers) s.options.onError?.(err);
      });
      this.sub = sub;
    }
    this.subConnecting ??= connectClient(this.sub, this.o.url(), 'broker fanout subscriber').catch((err: unknown) => {
      this.subConnecting = undefined;
      throw err;
    });
    await this.subConnecting;
    return this.sub;
  }

  async subscribe(exchange: Exchange, options: SubscribeOptions, onMessage: (d: BroadcastDelivery) => void): Promise<Subscription> {
    if (this.closed) throw new ClosedError('redis broker');
    await this.o.broker.connect();
    const sub = await this.subscriber();
    const bindingKeys = exchange.type === 'fanout' ? [''] : (options.bindingKeys ?? subscriptionDefaults(exchange).bindingKeys);
    const patterns = [...new Set(bindingKeys.map((k) => subscribePattern(this.prefix, this.db, exchange, k)))];
    const queue = options.queue ?? `${exchange.name}.${randomUUID()}`;
    const members = bindingKeys.map((k) => bindingMember(k, queue));
    const s: RedisSubscriber = { exchange, base: `${this.prefix}/${this.db}.${exchange.name}`, bindingKeys, patterns, members, options, onMessage, open: true };
    // A pattern another subscription is still subscribing counts only once its PSUBSCRIBE is answered.
    const waits: Promise<unknown>[] = [];
    for (const p of patterns) {
      let entry = this.patterns.get(p);
      if (entry) entry.n++;
      else this.patterns.set(p, (entry = { n: 1, ready: sub.psubscribe(p) }));
      waits.push(entry.ready);
    }
    this.subscribers.add(s);
    try {
      await Promise.all(waits);
      await this.client.sadd(this.bindingKey(exchange.name), ...members);
    } catch (err) {
      await this.unsubscribe(s);
      throw err;
    }
    return { queue, close: () => this.unsubscribe(s) };
  }

  private async unsubscribe(s: RedisSubscriber): Promise<void> {
    if (!s.open) return;
    s.open = false;
    this.subscribers.delete(s);
    const gone: string[] = [];
    for (const p of s.patterns) {
      const entry = this.patterns.get(p);
      if (entry && --entry.n > 0) continue;
      this.patterns.delete(p);
      gone.push(p);
    }
    if (this.closed) return;
    await Promise.all([
      gone.length > 0 && this.sub ? this.sub.punsubscribe(...gone).catch(() => undefined) : undefined,
      this.client.srem(this.bindingKey(s.exchange.name), ...s.members).catch(() => undefined),
    ]);
  }

  private bindingKey(exchange: string): string {
    return `${this.prefix}_kombu.binding.${exchange}`;
  }

  /** One message of one pattern: to every subscription for which it is the first of its patterns to match. */
  private dispatch(pattern: string, channel: string, payload: Buffer): void {
    for (const s of [...this.subscribers]) {
      if (!s.open || !s.patterns.includes(pattern)) continue;
      if (s.patterns.length > 1 && s.patterns.find((p) => globMatches(p, channel)) !== pattern) continue;
      let channelKey: string;
      if (channel === s.base) channelKey = '';
      else if (channel.startsWith(`${s.base}/`)) channelKey = channel.slice(s.base.length + 1);
      else continue; // another exchange whose name the pattern also matched
      if (s.exchange.type === 'topic' && !anyBindingMatches('topic', s.bindingKeys, channelKey)) continue;
      // Decoded for each subscription: each gets a message of its own to keep or change.
      const decoded = this.decode(payload, channelKey);
      if ('reason' in decoded) {
        const info: MalformedBroadcast = { exchange: s.exchange.name, routingKey: channelKey, reason: decoded.reason };
        this.o.broker.logger.warn(info, `dropped a broadcast on ${channel} that is not a message: ${decoded.reason}`);
        s.options.onMalformed?.(info);
        continue;
      }
      try {
        s.onMessage({ exchange: s.exchange.name, routingKey: decoded.routingKey, message: decoded.message });
      } catch (err) {
        this.o.broker.logger.error({ err, exchange: s.exchange.name }, 'a broadcast handler failed');
      }
    }
  }

  private decode(payload: Buffer, channelKey: string): { message: WireMessage; routingKey: string } | { reason: string } {
    try {
      const e = decodeRedisEnvelope(payload.toString('utf8'), this.o.broker.limits);
      return { message: e.message, routingKey: e.routing.routingKey || channelKey };
    } catch (err) {
      return { reason: err instanceof Error ? err.message : String(err) };
    }
  }

  async sendReply(exchange: Exchange, routingKey: string, message: WireMessage): Promise<void> {
    if (this.closed) throw new ClosedError('redis broker');
    await this.o.broker.connect();
    const queues = new Set<string>();
    for (const m of await this.client.smembers(this.bindingKey(exchange.name))) {
      const [key, , queue] = m.split(PRIORITY_SEP);
      if (queue && key === routingKey) queues.add(queue);
    }
    const step = priorityStep(message.properties.priority);
    await Promise.all(
      [...queues].map((q) => this.client.lpush(this.prefix + priorityQueueKey(q, step), encodeRedisEnvelope(message, { exchange: exchange.name, routingKey, deliveryTag: randomUUID() }))),
    );
  }

  async openReplyQueue(exchange: Exchange, routingKey: string, options: ReplyQueueOptions = {}): Promise<ReplyQueue> {
    if (this.closed) throw new ClosedError('redis broker');
    await this.o.broker.connect();
    const queue = options.queue ?? `${routingKey}.${exchange.name}`;
    const reader = this.newClient('reply reader');
    await connectClient(reader, this.o.url(), 'broker reply reader');
    const member = bindingMember(routingKey, queue);
    await this.client.sadd(this.bindingKey(exchange.name), member);
    const r = new RedisReplyQueue(queue, exchange.name, reader, this, options, async () => {
      this.replyQueues.delete(r);
      if (this.closed) return;
      await this.client.srem(this.bindingKey(exchange.name), member).catch(() => undefined);
      await this.client.del(...this.bucketKeys(queue)).catch(() => undefined);
    });
    this.replyQueues.add(r);
    return r;
  }

  /** The lists of a queue, in kombu's BRPOP order (priority 0 first). */
  bucketKeys(queue: string): string[] {
    return PRIORITY_STEPS.map((s) => this.prefix + priorityQueueKey(queue, s));
  }

  get limits(): DecodeLimits {
    return this.o.broker.limits;
  }

  /** New credentials: the subscriber and the reply readers use them on their next (re)connect. */
  async updateCredentials(url: string): Promise<void> {
    if (this.sub) await updateClientCredentials(this.sub, url);
    for (const r of this.replyQueues) await r.updateCredentials(url);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // Bindings go as the subscriptions do (kombu removes an auto-delete queue's binding on close).
    await Promise.allSettled([...this.subscribers].map((s) => this.unsubscribe(s)));
    await Promise.allSettled([...this.replyQueues].map((r) => r.close()));
    this.closed = true;
    if (this.sub) await this.sub.quit().catch(() => this.sub?.disconnect());
  }
}

function bindingMember(bindingKey: string, queue: string): string {
  return `${bindingKey}${PRIORITY_SEP}${PRIORITY_SEP}${queue}`;
}

/** A reply list read with BRPOP on its own connection. */
class RedisReplyQueue implements ReplyQueue {
  private closed = false;

  constructor(
    readonly queue: string,
    private readonly exchange: string,
    private readonly reader: Redis,
    private readonly fanout: RedisFanout,
    private readonly options: ReplyQueueOptions,
    private readonly onClose: () => Promise<void>,
  ) {}

  async receive(timeoutMs: number): Promise<BroadcastDelivery | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = deadline - Date.now();
      if (this.closed || left <= 0) return undefined;
      let got: [string, string] | null;
      try {
        // BRPOP takes fractional seconds (Redis ≥ 6); 0 would mean forever.
        got = await this.reader.brpop(...this.fanout.bucketKeys(this.queue), Math.max(0.01, left / 1000));
      } catch (err) {
        if (this.closed) return undefined;
        throw err;
      }
      if (!got) continue;
      try {
        const e = decodeRedisEnvelope(got[1], this.fanout.limits);
        return { exchange: e.routing.exchange || this.exchange, routingKey: e.routing.routingKey, message: e.message };
      } catch (err) {
        this.options.onMalformed?.({ exchange: this.exchange, routingKey: '', reason: err instanceof Error ? err.message : String(err) });
      }
    }
  }

  updateCredentials(url: string): Promise<void> {
    return updateClientCredentials(this.reader, url);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // A pending BRPOP ends with the connection.
    this.reader.disconnect();
    await this.onClose();
  }
}
