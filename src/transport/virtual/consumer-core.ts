/**
 * The shared consumer core (the idea of kombu's virtual transport layer):
 * the bookkeeping every engine's consumer needs — the held deliveries and
 * the prefetch window, settle-once, ack batching, malformed messages going
 * to the dead-letter queue, giving back what is held at shutdown — written
 * once. An engine supplies only its primitives (`EnginePrimitives`): how to
 * remove, requeue, drop or dead-letter a message at the broker.
 *
 * Pull engines (Redis, SQLite, memory) drive it with `PullLoop`; a push
 * engine (AMQP, where the broker enforces the window) feeds it deliveries
 * as they arrive.
 *
 * Hot path: per message the core does one Map set and one Map delete, and
 * an ack adds the delivery to the open batch, whose one promise every ack
 * of the batch shares. No closure or promise is made per message.
 */
import type { ConsumeOptions, Delivery } from '../../core/broker.ts';
import type { WireMessage } from '../../protocol/types.ts';

/** What the core knows of a delivery: its tag, its queue, and whether it was settled. */
export interface Held {
  readonly tag: string;
  readonly queue: string;
  /** Set once by the core when the delivery is settled (ack, reject, dead-letter or shutdown). */
  settled: boolean;
}

/** A call that either completes at once (returns nothing) or returns a promise. */
type MaybeAsync = Promise<unknown> | void;

/** What an engine does at its broker; the core has already made sure each runs at most once per delivery. */
export interface EnginePrimitives<H extends Held> {
  /** Remove an acknowledged message for good (engines that do not batch acks). */
  ack?(held: H): MaybeAsync;
  /** Remove acknowledged messages for good, up to `AckBatching.max` at once (engines that batch acks). */
  ackMany?(batch: readonly H[]): MaybeAsync;
  /** Put a message back on its queue: at the head (served next) or the tail. */
  requeue(held: H, where: 'head' | 'tail'): MaybeAsync;
  /** Move a message, with the reason, to its queue's dead-letter queue in one step (the delivery is settled first). */
  deadLetter?(held: H, reason: string): MaybeAsync;
  /**
   * For brokers where dead-lettering is a copy then an ack (AMQP): copy the
   * message to its dead-letter queue. The delivery stays held, and can still
   * be settled otherwise, until the copy is confirmed; then the core acks it.
   */
  copyToDeadLetter?(held: H, reason: string): Promise<unknown>;
  /** Drop a message without delivering it again (`reject(false)`); without it, an ack. */
  drop?(held: H): MaybeAsync;
  /** True when the broker may have taken the message back (see `Delivery.stale`). */
  isStale?(held: H): boolean;
  /** Give back, at shutdown, every delivery still held (already marked settled by the core); see `ConsumerCore.returnAll`. */
  returnAll?(held: H[]): MaybeAsync;
  /** Extend the leases of the held deliveries (engines whose leases expire); called every `renewEvery` ms. */
  renew?(held: ReadonlyMap<string, H>): MaybeAsync;
  /** Called after a settle took a delivery out of the window (pull loops wake here). */
  settled?(): void;
}

/** How acks are grouped. */
export interface AckBatching {
  /** Most deliveries per `ack` primitive call. */
  max: number;
  /** When the open batch goes out: `tick` (process.nextTick) or `immediate` (setImmediate, after I/O callbacks). */
  flush: 'tick' | 'immediate';
}

export interface ConsumerCoreOptions<H extends Held> {
  consume: ConsumeOptions;
  primitives: EnginePrimitives<H>;
  /** Group acks (one call per turn of the event loop); without it, each ack is its own call. */
  ackBatch?: AckBatching;
}

/** The part of the core a delivery talks to. */
export interface Settler {
  ack(held: Held): Promise<void>;
  reject(held: Held, requeue: boolean): Promise<void>;
  deadLetter(held: Held, reason: string): Promise<void>;
  isStale(held: Held): boolean | undefined;
}

interface AckGroup<H> {
  items: H[];
  promise: Promise<void>;
  resolve: () => void;
  reject: (e: unknown) => void;
}

const RESOLVED: Promise<void> = Promise.resolve();
const noop = (): void => undefined;

/** Held deliveries, prefetch window, settle-once, ack batching, malformed handling and shutdown give-back. */
export class ConsumerCore<H extends Held> implements Settler {
  /** Unsettled deliveries by tag. Engines read it (lease renewal, recovery) and may `forget` entries their broker voided. */
  readonly held = new Map<string, H>();
  /** Most unsettled deliveries at once; 0 = unlimited. */
  prefetch: number;
  /** Set by `cancel`: no new deliveries are taken; those held stay valid. */
  cancelled = false;
  private readonly p: EnginePrimitives<H>;
  private readonly consume: ConsumeOptions;
  private readonly batching: AckBatching | undefined;
  /** Acks of this turn; full groups wait in `groups` for the flush. */
  private open: AckGroup<H> | undefined;
  private groups: AckGroup<H>[] = [];
  private readonly flushNow = (): void => void this.flushAcks();
  private renewTimer: NodeJS.Timeout | undefined;

  constructor(options: ConsumerCoreOptions<H>) {
    this.consume = options.consume;
    this.prefetch = options.consume.prefetch;
    this.p = options.primitives;
    this.batching = options.ackBatch;
  }

  /** Deliveries taken and not yet settled. */
  get unsettled(): number {
    return this.held.size;
  }

  /** Room in the prefetch window for a fetch of at most `batch` messages (may be ≤ 0). */
  room(batch: number): number {
    return this.prefetch === 0 ? batch : Math.min(batch, this.prefetch - this.held.size);
  }

  /** True while the window has room (always with an unlimited window). */
  hasRoom(): boolean {
    return this.prefetch === 0 || this.held.size < this.prefetch;
  }

  /** Count a delivery as held (call before handing it to the application). */
  hold(held: H): void {
    this.held.set(held.tag, held);
  }

  /** Stop counting a delivery the broker has taken back by itself (it stays unsettled: settling it later still reaches the engine). */
  forget(held: H): void {
    this.held.delete(held.tag);
  }

  /** Settle-once: true the first time a delivery is settled, false on every later call. */
  private claim(held: H): boolean {
    if (held.settled) return false;
    held.settled = true;
    this.held.delete(held.tag);
    return true;
  }

  /** Remove the message for good (batched when the engine batches acks). */
  ack(held: H): Promise<void> {
    if (!this.claim(held)) return RESOLVED;
    const b = this.batching;
    if (b === undefined) return this.run(this.p.ack!, held, undefined);
    let group = this.open;
    if (group === undefined || group.items.length >= b.max) {
      if (group !== undefined) this.groups.push(group);
      else if (this.groups.length === 0) this.schedule(b);
      group = this.open = newGroup<H>();
    }
    group.items.push(held);
    this.p.settled?.();
    return group.promise;
  }

  /** Give the message back at the tail (`requeue`) or drop it. */
  reject(held: H, requeue: boolean): Promise<void> {
    if (requeue) return this.requeue(held, 'tail');
    if (this.p.drop === undefined) return this.ack(held);
    if (!this.claim(held)) return RESOLVED;
    return this.run(this.p.drop, held, undefined);
  }

  /** Put the message back on its queue. */
  requeue(held: H, where: 'head' | 'tail'): Promise<void> {
    if (!this.claim(held)) return RESOLVED;
    return this.run(this.p.requeue, held, where);
  }

  /** Move the message to its queue's dead-letter queue with the reason. */
  deadLetter(held: H, reason: string): Promise<void> {
    const copy = this.p.copyToDeadLetter;
    if (copy !== undefined) {
      if (held.settled) return RESOLVED;
      return copy.call(this.p, held, reason).then(() => this.ack(held));
    }
    if (!this.claim(held)) return RESOLVED;
    return this.run(this.p.deadLetter!, held, reason);
  }

  isStale(held: H): boolean | undefined {
    return this.p.isStale?.(held);
  }

  /**
   * A message the engine could not turn into a `WireMessage`: hold it, move
   * it to the dead-letter queue with `deadLetterReason`, then tell the
   * application (`onMalformed`, with the short `reason` and the id when one
   * was found); a failure to dead-letter goes to `onError`.
   */
  malformed(held: H, deadLetterReason: string, reason: string, id: string | undefined): void {
    this.hold(held);
    const queue = held.queue;
    void this.deadLetter(held, deadLetterReason).then(
      () => this.consume.onMalformed?.({ queue, reason, id }),
      (e: unknown) => this.consume.onError?.(e as Error),
    );
  }

  /** Report an error the consumer recovers from. */
  error(err: unknown): void {
    this.consume.onError?.(err as Error);
  }

  /** Send every pending ack now; resolves when all have been answered (failures go to the acks' own promises). */
  flushAcks(): Promise<void> {
    const groups = this.groups;
    const open = this.open;
    if (open !== undefined) groups.push(open);
    this.open = undefined;
    this.groups = [];
    if (groups.length === 0) return RESOLVED;
    // Every group is sent before any answer is awaited (one write, one round trip on a pipelined connection).
    let waits: Promise<void>[] | undefined;
    for (const g of groups) {
      let r: MaybeAsync;
      try {
        r = this.p.ackMany!(g.items);
      } catch (err) {
        g.reject(err);
        continue;
      }
      if (r === undefined) {
        g.resolve();
      } else {
        (waits ??= []).push(r.then(g.resolve, g.reject));
      }
    }
    if (waits === undefined) return RESOLVED;
    return waits.length === 1 ? waits[0]! : Promise.all(waits).then(noop);
  }

  /** Renew the leases of what is held every `ms` through the engine's `renew` (the timer keeps no process alive); failures go to `onError`. */
  renewEvery(ms: number): void {
    if (this.renewTimer) clearInterval(this.renewTimer);
    this.renewTimer = setInterval(() => {
      try {
        const r = this.p.renew?.(this.held);
        if (r) r.catch((err: unknown) => this.error(err));
      } catch (err) {
        this.error(err);
      }
    }, ms);
    this.renewTimer.unref();
  }

  /**
   * The broker is closing (after the engine stopped taking messages): send
   * the pending acks, give back every delivery still held (`returnAll`), and
   * stop renewing leases.
   */
  async close(): Promise<void> {
    await this.flushAcks();
    await this.returnAll();
    if (this.renewTimer) clearInterval(this.renewTimer);
    this.renewTimer = undefined;
  }

  /** Shutdown: every held delivery is marked settled and handed to the engine's `returnAll`. */
  returnAll(): MaybeAsync {
    const held = [...this.held.values()];
    this.held.clear();
    for (const h of held) h.settled = true;
    return this.p.returnAll?.(held);
  }

  /**
   * Run a settling primitive of a claimed delivery: its outcome becomes the
   * settle call's promise (a synchronous throw a rejection, as from an async
   * function); then the engine hears that the window has room.
   */
  private run<A>(primitive: (held: H, arg: A) => MaybeAsync, held: H, arg: A): Promise<void> {
    let r: Promise<void>;
    try {
      r = settle(primitive.call(this.p, held, arg));
    } catch (err) {
      r = Promise.reject(err);
    }
    this.p.settled?.();
    return r;
  }

  private schedule(b: AckBatching): void {
    if (b.flush === 'tick') process.nextTick(this.flushNow);
    else setImmediate(this.flushNow);
  }
}

/** A primitive's outcome as the settle call's promise (resolving to nothing, as from an async function). */
function settle(r: MaybeAsync): Promise<void> {
  return r === undefined ? RESOLVED : r.then(noop);
}

function newGroup<H>(): AckGroup<H> {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { items: [], promise, resolve, reject };
}

/**
 * A delivery handed to the application; engines extend it with what their
 * primitives need (a class: no closures per message).
 */
export class VirtualDelivery implements Delivery, Held {
  settled = false;
  constructor(
    protected readonly core: Settler,
    readonly tag: string,
    readonly queue: string,
    readonly message: WireMessage,
    readonly redelivered: boolean,
  ) {}

  get deliveryTag(): string {
    return this.tag;
  }

  get stale(): boolean | undefined {
    return this.core.isStale(this);
  }

  ack(): Promise<void> {
    return this.core.ack(this);
  }

  reject(requeue: boolean): Promise<void> {
    return this.core.reject(this, requeue);
  }

  deadLetter(reason: string): Promise<void> {
    return this.core.deadLetter(this, reason);
  }
}
