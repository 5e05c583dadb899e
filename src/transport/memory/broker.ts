/**
 * In-memory broker for unit tests of worker and client logic in one
 * process. Not for production: nothing survives the process, and nothing
 * is shared between processes.
 */
import { ClosedError, QueueFullError } from '../../errors.ts';
import type { WireMessage } from '../../protocol/types.ts';
import { PRIORITY_STEPS, priorityStep } from '../virtual/priority.ts';
import type {
  Broker,
  ConsumeOptions,
  Consumer,
  DeadLetter,
  Delivery,
  PublishItem,
  PublishOptions,
} from '../../core/broker.ts';
import { deadLetterId, deadLetterQueueName, selectDeadLetters, TRUNCATED_REFUSAL, type DeadLetterSelection, type RedriveOptions, type RedriveResult } from '../../core/broker.ts';
import { ConsumerCore, VirtualDelivery, type EnginePrimitives, type Held as CoreHeld } from '../virtual/consumer-core.ts';
import type { BroadcastDelivery, BroadcastItem, Exchange, ReplyQueue, ReplyQueueOptions, SubscribeOptions, Subscription } from '../../core/broker.ts';
import { MemoryFanout } from './fanout.ts';

interface Stored {
  message: WireMessage;
  redelivered: boolean;
}

const STEPS: readonly number[] = PRIORITY_STEPS;

/** The queues themselves; several broker instances may share one world, like processes sharing a server. */
export class MemoryWorld {
  readonly buckets = new Map<string, Stored[][]>();
  readonly dead = new Map<string, DeadLetter[]>();
  readonly brokers = new Set<MemoryBroker>();
}

export interface MemoryBrokerOptions {
  /** Simulated network latency per operation, in ms (0 = synchronous). */
  latencyMs?: number;
  /** Share queues with other instances (default: a private world). */
  world?: MemoryWorld;
}

/** Create an in-memory broker. */
export function createMemoryBroker(options: MemoryBrokerOptions = {}): MemoryBroker {
  return new MemoryBroker(options);
}

export class MemoryBroker implements Broker {
  readonly kind = 'memory';
  private readonly world: MemoryWorld;
  private readonly consumers = new Set<MemoryConsumer>();
  private closed = false;
  private tagSeq = 0;

  constructor(private readonly options: MemoryBrokerOptions = {}) {
    this.world = options.world ?? new MemoryWorld();
    this.world.brokers.add(this);
  }

  private get buckets(): Map<string, Stored[][]> {
    return this.world.buckets;
  }

  private get dead(): Map<string, DeadLetter[]> {
    return this.world.dead;
  }

  async connect(): Promise<void> {
    if (this.closed) throw new ClosedError('memory broker');
  }

  private bucketsOf(queue: string): Stored[][] {
    let b = this.buckets.get(queue);
    if (!b) {
      b = STEPS.map(() => []);
      this.buckets.set(queue, b);
    }
    return b;
  }

  private async tick(): Promise<void> {
    if (this.options.latencyMs) await new Promise((r) => setTimeout(r, this.options.latencyMs));
  }

  async publish(queue: string, message: WireMessage, options?: PublishOptions): Promise<void> {
    await this.publishMany([{ queue, message, options }]);
  }

  async publishMany(items: readonly PublishItem[]): Promise<void> {
    if (this.closed) throw new ClosedError('memory broker');
    await this.tick();
    // Check and push without awaiting in between, so concurrent sends cannot overshoot a cap.
    for (const { queue, options } of items) {
      const max = options?.maxLength;
      if (max !== undefined) {
        const length = (this.buckets.get(queue) ?? []).reduce((n, b) => n + b.length, 0);
        const adding = items.filter((i) => i.queue === queue).length;
        if (length + adding > max) throw new QueueFullError(queue, length, max);
      }
    }
    for (const { queue, message, options } of items) {
      const step = priorityStep(options?.priority ?? message.properties.priority);
      this.bucketsOf(queue)[STEPS.indexOf(step)]!.push({ message: cloneMessage(message), redelivered: false });
    }
    this.pump();
  }

  /** Take the next message of the first non-empty bucket among `queues` (priority outer, queues inner, like kombu). */
  take(queues: readonly string[]): { queue: string; stored: Stored } | undefined {
    for (let s = 0; s < STEPS.length; s++) {
      for (const q of queues) {
        const bucket = this.buckets.get(q)?.[s];
        if (bucket && bucket.length > 0) return { queue: q, stored: bucket.shift()! };
      }
    }
    return undefined;
  }

  /** Put a message back at the front of its queue (served next), as kombu's restore does. */
  restore(queue: string, stored: Stored): void {
    const step = priorityStep(stored.message.properties.priority);
    this.bucketsOf(queue)[STEPS.indexOf(step)]!.unshift({ message: stored.message, redelivered: true });
    this.pump();
  }

  nextTag(): string {
    return `mem-${this.world.brokers.size}-${++this.tagSeq}-${Math.random().toString(36).slice(2, 8)}`;
  }

  addDeadLetter(queue: string, message: WireMessage, reason: string): void {
    const name = deadLetterQueueName(queue);
    const list = this.dead.get(name) ?? [];
    list.push({ queue, reason, at: Date.now(), message, raw: message.body.toString('base64') });
    this.dead.set(name, list);
  }

  pump(): void {
    for (const b of this.world.brokers) b.pumpOwn();
  }

  private pumpOwn(): void {
    for (const c of this.consumers) c.pump();
  }

  async consume(queues: readonly string[], options: ConsumeOptions, onMessage: (d: Delivery) => void): Promise<Consumer> {
    if (this.closed) throw new ClosedError('memory broker');
    const c = new MemoryConsumer(this, [...queues], options, onMessage, () => this.consumers.delete(c));
    this.consumers.add(c);
    queueMicrotask(() => c.pump());
    return c;
  }

  async queueLength(queue: string): Promise<number> {
    return (this.buckets.get(queue) ?? []).reduce((n, b) => n + b.length, 0);
  }

  async purge(queue: string): Promise<number> {
    const n = await this.queueLength(queue);
    this.buckets.delete(queue);
    return n;
  }

  async deadLetters(queue: string, limit = 100): Promise<DeadLetter[]> {
    return (this.dead.get(deadLetterQueueName(queue)) ?? []).slice(0, limit);
  }

  async redriveDeadLetters(queue: string, options: RedriveOptions = {}): Promise<RedriveResult> {
    if (this.closed) throw new ClosedError('memory broker');
    const list = this.dead.get(deadLetterQueueName(queue)) ?? [];
    const result: RedriveResult = { moved: [], refused: [] };
    for (const d of selectDeadLetters(list, (x) => x, options)) {
      const id = deadLetterId(d);
      if (d.truncated || !d.message) {
        result.refused.push({ id, reason: d.truncated ? TRUNCATED_REFUSAL : 'the stored message could not be decoded' });
        continue;
      }
      // One process, no await between the two: the move is atomic.
      list.splice(list.indexOf(d), 1);
      const step = priorityStep(d.message.properties.priority);
      this.bucketsOf(options.to ?? d.queue)[STEPS.indexOf(step)]!.push({ message: cloneMessage(d.message), redelivered: false });
      result.moved.push(id ?? '');
    }
    if (result.moved.length) this.pump();
    return result;
  }

  async dropDeadLetters(queue: string, options: DeadLetterSelection = {}): Promise<number> {
    const list = this.dead.get(deadLetterQueueName(queue)) ?? [];
    const chosen = selectDeadLetters(list, (x) => x, options);
    for (const d of chosen) list.splice(list.indexOf(d), 1);
    return chosen.length;
  }

  // Fanout (events, remote control): see fanout.ts.
  private fanoutPart: MemoryFanout | undefined;
  private get fanout(): MemoryFanout {
    return (this.fanoutPart ??= new MemoryFanout(this.world));
  }
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

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.fanoutPart?.close();
    const mine = [...this.consumers];
    this.consumers.clear();
    this.world.brokers.delete(this);
    for (const c of mine) c.returnAllHeld();
  }
}

/** What settling needs: the stored message, to put it back or dead-letter it. */
interface Held extends CoreHeld {
  readonly stored: Stored;
}

class MemoryDelivery extends VirtualDelivery implements Held {
  constructor(core: ConsumerCore<Held>, tag: string, queue: string, readonly stored: Stored) {
    super(core, tag, queue, stored.message, stored.redelivered);
  }
}

/** A consumer: the shared core, filled synchronously whenever the window has room. */
class MemoryConsumer implements Consumer, EnginePrimitives<Held> {
  private readonly core: ConsumerCore<Held>;
  private readonly pumpNow = (): void => this.pump();

  constructor(
    private readonly broker: MemoryBroker,
    private readonly queues: string[],
    options: ConsumeOptions,
    private readonly onMessage: (d: Delivery) => void,
    private readonly onCancel: () => void,
  ) {
    this.core = new ConsumerCore<Held>({ consume: options, primitives: this });
  }

  get unsettled(): number {
    return this.core.unsettled;
  }

  setPrefetch(prefetch: number): void {
    this.core.prefetch = prefetch;
    queueMicrotask(this.pumpNow);
  }

  pump(): void {
    while (!this.core.cancelled && this.core.hasRoom()) {
      const next = this.broker.take(this.queues);
      if (!next) return;
      const d = new MemoryDelivery(this.core, this.broker.nextTag(), next.queue, next.stored);
      this.core.hold(d);
      this.onMessage(d);
    }
  }

  // ── the core's primitives (../virtual/consumer-core.ts) ─────────────

  settled(): void {
    queueMicrotask(this.pumpNow);
  }

  ack(): void {}

  requeue(held: Held): void {
    this.broker.restore(held.queue, held.stored);
  }

  deadLetter(held: Held, reason: string): void {
    this.broker.addDeadLetter(held.queue, held.stored.message, reason);
  }

  returnAll(held: Held[]): void {
    for (const h of held) this.broker.restore(h.queue, h.stored);
  }

  async cancel(): Promise<void> {
    this.core.cancelled = true;
    this.onCancel();
  }

  /** Broker closing: give every unsettled message back. */
  returnAllHeld(): void {
    this.core.cancelled = true;
    this.core.returnAll();
  }
}

function cloneMessage(m: WireMessage): WireMessage {
  return {
    headers: structuredClone(m.headers),
    properties: structuredClone(m.properties),
    contentType: m.contentType,
    contentEncoding: m.contentEncoding,
    body: Buffer.from(m.body),
  };
}
