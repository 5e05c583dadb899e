/**
 * Fanout on the in-memory engine: subscriptions live on the shared
 * `MemoryWorld`, so every broker instance of one world sees the others'
 * broadcasts, as processes sharing a server would. Delivery is
 * asynchronous (never inside the `broadcast` call) and each subscriber
 * gets its own copy.
 */
import { randomUUID } from 'node:crypto';
import { ClosedError } from '../../errors.ts';
import type { WireMessage } from '../../protocol/types.ts';
import { anyBindingMatches } from '../virtual/topic.ts';
import { ReplyBuffer } from '../virtual/reply-buffer.ts';
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

interface MemorySubscriber {
  exchange: string;
  type: Exchange['type'];
  bindingKeys: readonly string[];
  options: Pick<SubscribeOptions, 'onMalformed'>;
  deliver(d: BroadcastDelivery): void;
}

/** Subscribers by world (any object shared by the broker instances of one world). */
const SUBSCRIBERS = new WeakMap<object, Set<MemorySubscriber>>();

function subscribersOf(world: object): Set<MemorySubscriber> {
  let s = SUBSCRIBERS.get(world);
  if (!s) SUBSCRIBERS.set(world, (s = new Set()));
  return s;
}

/**
 * Put anything on an exchange of a world, as a faulty or hostile
 * publisher could: subscribers check that it is a message. For tests.
 */
export function broadcastRaw(world: object, exchange: string, routingKey: string, payload: unknown): void {
  for (const s of subscribersOf(world)) {
    if (s.exchange !== exchange || !anyBindingMatches(s.type, s.bindingKeys, routingKey)) continue;
    setImmediate(() => {
      if (!subscribersOf(world).has(s)) return;
      const reason = invalidReason(payload);
      if (reason) s.options.onMalformed?.({ exchange, routingKey, reason });
      else s.deliver({ exchange, routingKey, message: copy(payload as WireMessage) });
    });
  }
}

/** Why a payload is not a `WireMessage`, or undefined when it is one. */
function invalidReason(p: unknown): string | undefined {
  if (p === null || typeof p !== 'object') return 'payload is not a message object';
  const m = p as Partial<WireMessage>;
  if (m.headers === null || typeof m.headers !== 'object') return 'message has no headers object';
  if (m.properties === null || typeof m.properties !== 'object') return 'message has no properties object';
  if (!Buffer.isBuffer(m.body)) return 'message body is not bytes';
  if (typeof m.contentType !== 'string' || typeof m.contentEncoding !== 'string') return 'message has no content type or encoding';
  return undefined;
}

function copy(m: WireMessage): WireMessage {
  return {
    headers: structuredClone(m.headers),
    properties: structuredClone(m.properties),
    contentType: m.contentType,
    contentEncoding: m.contentEncoding,
    body: Buffer.from(m.body),
  };
}

/** The fanout half of a memory broker. */
export class MemoryFanout {
  private readonly mine = new Set<MemorySubscriber>();
  private closed = false;

  constructor(private readonly world: object) {}

  async broadcast(exchange: Exchange, routingKey: string, message: WireMessage): Promise<void> {
    if (this.closed) throw new ClosedError('memory broker');
    broadcastRaw(this.world, exchange.name, routingKey, message);
  }

  /** Each in order (delivery is already deferred to a later turn, in the order of the calls). */
  async broadcastMany(exchange: Exchange, items: readonly BroadcastItem[]): Promise<void> {
    if (this.closed) throw new ClosedError('memory broker');
    for (const { routingKey, message } of items) broadcastRaw(this.world, exchange.name, routingKey, message);
  }

  async subscribe(exchange: Exchange, options: SubscribeOptions, onMessage: (d: BroadcastDelivery) => void): Promise<Subscription> {
    if (this.closed) throw new ClosedError('memory broker');
    const all = subscribersOf(this.world);
    let open = true;
    const sub: MemorySubscriber = {
      exchange: exchange.name,
      type: exchange.type,
      bindingKeys: options.bindingKeys ?? subscriptionDefaults(exchange).bindingKeys,
      options,
      deliver: (d) => {
        if (open) onMessage(d);
      },
    };
    all.add(sub);
    this.mine.add(sub);
    return {
      queue: options.queue ?? `${exchange.name}.${randomUUID()}`,
      close: async () => {
        open = false;
        all.delete(sub);
        this.mine.delete(sub);
      },
    };
  }

  sendReply(exchange: Exchange, routingKey: string, message: WireMessage): Promise<void> {
    return this.broadcast(exchange, routingKey, message);
  }

  async openReplyQueue(exchange: Exchange, routingKey: string, options: ReplyQueueOptions = {}): Promise<ReplyQueue> {
    let sub: Subscription | undefined;
    const buffer = new ReplyBuffer(options.queue ?? `${routingKey}.${exchange.name}`, async () => sub?.close());
    sub = await this.subscribe({ ...exchange, type: 'direct' }, { bindingKeys: [routingKey], onMalformed: options.onMalformed }, (d) => buffer.push(d));
    return buffer;
  }

  /** Close every subscription of this broker instance. */
  close(): void {
    this.closed = true;
    const all = subscribersOf(this.world);
    for (const s of this.mine) all.delete(s);
    this.mine.clear();
  }
}
