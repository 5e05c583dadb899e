/**
 * The PostgreSQL consumer: the engine's side of the shared consumer core
 * (../virtual/consumer-core.ts). Reserving is one statement on the broker
 * (`PgBroker.reserve`); idle consumers wait for a NOTIFY on the queue
 * channel naming one of their queues, the next delayed message, or a 5 s
 * safety poll; held deliveries have their leases renewed. Held deliveries,
 * settle-once, ack batching, malformed messages and the give-back at
 * shutdown are the core's.
 */
import { randomBytes } from 'node:crypto';
import { DecodeError } from '../../errors.ts';
import type { ConsumeOptions, Consumer, Delivery } from '../../core/broker.ts';
import type { WireMessage } from '../../protocol/types.ts';
import { ConsumerCore, VirtualDelivery, type EnginePrimitives, type Held } from '../virtual/consumer-core.ts';
import { PullLoop, type PullSource } from '../virtual/pull-loop.ts';
import type { MessageRow, PgBroker } from './broker.ts';

/** Most messages taken by one reserve statement. */
const RESERVE_BATCH = 200;
/** Most rows deleted by one ack statement. */
const ACK_BATCH = 2000;
/** Longest idle wait without a notification, ms (a notification lost with a dropped connection costs at most this). */
const SAFETY_POLL_MS = 5_000;

export class PgConsumer implements Consumer, EnginePrimitives<Held>, PullSource {
  readonly batch = RESERVE_BATCH;
  readonly unrefTimers = true;
  readonly wakeOnAnySettle = true;
  private readonly tagBase = randomBytes(6).toString('hex');
  private batchSeq = 0;
  private readonly core: ConsumerCore<Held>;
  private readonly loop: PullLoop;
  private readonly watched: Set<string>;
  private unlisten: (() => void) | undefined;
  /** Tag prefixes of reserves whose reply was lost (the connection dropped): their rows may be leased to nobody. */
  private readonly orphaned: string[] = [];

  constructor(
    private readonly broker: PgBroker,
    private readonly queues: string[],
    private readonly options: ConsumeOptions,
    private readonly onMessage: (d: Delivery) => void,
  ) {
    this.watched = new Set(queues);
    this.core = new ConsumerCore<Held>({ consume: options, primitives: this, ackBatch: { max: ACK_BATCH, flush: 'immediate' } });
    this.loop = new PullLoop(this.core, this);
  }

  get unsettled(): number {
    return this.core.unsettled;
  }

  /** Every delivery tag of this consumer starts with this (see `PgBroker.recoverOwner`). */
  get owner(): string {
    return `${this.tagBase}.`;
  }

  setPrefetch(prefetch: number): void {
    this.core.prefetch = prefetch;
    this.loop.wake();
  }

  reportError(err: Error): void {
    this.options.onError?.(err);
  }

  /** Listen for wake-ups (resolves once LISTEN is active, so no publish after it is missed), then start the loop. */
  async start(): Promise<void> {
    this.unlisten = await this.broker.listener.on(this.broker.queueChannel, (queue) => {
      if (queue === undefined || this.watched.has(queue)) this.loop.wake();
    });
    this.core.renewEvery(this.broker.leaseCheckMs);
    this.loop.start();
  }

  // ── the pull loop's side (../virtual/pull-loop.ts) ──────────────────

  /**
   * Reserve once a quarter of the window is free (or nothing is held): each
   * reserve is a commit, so taking one message per freed slot would cost a
   * WAL flush per task.
   */
  enough(room: number, unsettled: number): boolean {
    return unsettled === 0 || room >= Math.min(RESERVE_BATCH, Math.ceil(this.core.prefetch / 4));
  }

  /** Before the next reserve, give back the rows of reserves whose reply never came (committed or not, nobody holds them). */
  prepare(): Promise<void> | undefined {
    if (this.orphaned.length === 0) return undefined;
    return (async () => {
      while (this.orphaned.length > 0) {
        await this.broker.releaseTagPrefix(this.orphaned[0]!);
        this.orphaned.shift();
      }
    })();
  }

  async fetch(room: number): Promise<number> {
    const prefix = `${this.tagBase}.${++this.batchSeq}.`;
    let rows: MessageRow[];
    try {
      rows = await this.broker.reserve(this.queues, room, prefix);
    } catch (err) {
      this.orphaned.push(prefix);
      throw err;
    }
    if (this.core.cancelled) {
      // Cancelled while the statement ran: give the rows back (undelivered) rather than hold them unseen.
      if (rows.length > 0) await this.broker.releaseTagPrefix(prefix);
      return 0;
    }
    for (const row of rows) this.deliver(row);
    return rows.length;
  }

  afterFetch(taken: number): Promise<void> | undefined {
    if (taken > 0) return new Promise<void>((r) => setImmediate(r));
    const bell = this.loop.bell;
    if (bell.rung) return undefined;
    return this.broker.nextDueIn(this.queues).then(
      (due) => (bell.rung ? undefined : bell.wait(due === undefined ? SAFETY_POLL_MS : Math.min(SAFETY_POLL_MS, Math.max(1, due + 5)), true)),
      (err: Error) => {
        this.options.onError?.(err);
        return bell.wait(500, true);
      },
    );
  }

  private deliver(row: MessageRow): void {
    let message: WireMessage;
    try {
      message = this.broker.decode(row.headers, row.properties, row.content_type, row.content_encoding, row.body);
    } catch (err) {
      const reason = err instanceof DecodeError ? err.reason : (err as Error).message;
      const m = /"id":\s*"([^"]{1,64})"/.exec(String(row.headers).slice(0, 4096));
      this.core.malformed({ tag: row.tag, queue: row.queue, settled: false }, `malformed message: ${reason}`, reason, m?.[1]);
      return;
    }
    const delivery = new VirtualDelivery(this.core, row.tag, row.queue, message, row.redelivered);
    this.core.hold(delivery);
    this.onMessage(delivery);
  }

  // ── the core's primitives (../virtual/consumer-core.ts) ─────────────

  settled(): void {
    this.loop.settled();
  }

  renew(held: ReadonlyMap<string, Held>): Promise<void> | undefined {
    return held.size > 0 ? this.broker.renew([...held.keys()]) : undefined;
  }

  /** Acks of one event-loop turn go out in one statement. */
  ackMany(batch: readonly Held[]): Promise<void> {
    return this.broker.ackMany(batch.map((h) => h.tag));
  }

  requeue(held: Held, where: 'head' | 'tail'): Promise<void> {
    return this.broker.requeue(held.tag, where);
  }

  async deadLetter(held: Held, reason: string): Promise<void> {
    await this.broker.deadLetterTag(held.tag, reason);
  }

  /** Shutdown: every unsettled delivery goes back to the head of its queue. */
  async returnAll(held: Held[]): Promise<void> {
    for (const h of held) {
      try {
        await this.broker.requeue(h.tag, 'head');
      } catch (err) {
        this.options.onError?.(err as Error);
      }
    }
  }

  /** Stop taking messages. Unsettled deliveries stay valid (their leases keep being renewed) until settled or the broker closes. */
  async cancel(): Promise<void> {
    if (this.core.cancelled) return;
    this.core.cancelled = true;
    this.unlisten?.();
    this.unlisten = undefined;
    await this.loop.stop();
  }

  /** Broker closing: stop, write pending acks, and put every unsettled delivery back at the head of its queue. */
  async shutdown(): Promise<void> {
    await this.cancel();
    await this.core.close();
    this.broker.forgetConsumer(this);
  }
}
