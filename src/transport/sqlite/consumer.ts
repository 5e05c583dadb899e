/**
 * The SQLite consumer: the engine's side of the shared consumer core
 * (../virtual/consumer-core.ts). Reserving is one write transaction on the
 * broker (`SqliteBroker.reserve`); idle consumers sleep until the wake hub
 * signals new work or the next delayed message falls due; held deliveries
 * have their leases renewed. Held deliveries, settle-once, ack batching,
 * malformed messages and the give-back at shutdown are the core's.
 */
import { randomBytes } from 'node:crypto';
import { DecodeError } from '../../errors.ts';
import type { ConsumeOptions, Consumer, Delivery } from '../../core/broker.ts';
import type { WireMessage } from '../../protocol/types.ts';
import { ConsumerCore, VirtualDelivery, type EnginePrimitives, type Held as CoreHeld } from '../virtual/consumer-core.ts';
import { PullLoop, type PullSource } from '../virtual/pull-loop.ts';
import type { MessageRow, OversizedRow, SqliteBroker } from './broker.ts';

/** Most messages taken by one reserve transaction. */
const RESERVE_BATCH = 200;
/** Most rows settled by one ack transaction. */
const ACK_BATCH = 2000;

/** What settling needs: the row and the tag it is leased under. */
interface Held extends CoreHeld {
  readonly id: number;
}

class SqliteDelivery extends VirtualDelivery implements Held {
  constructor(core: ConsumerCore<Held>, readonly id: number, tag: string, queue: string, message: WireMessage, redelivered: boolean) {
    super(core, tag, queue, message, redelivered);
  }
}

/** One consumer: the core, a reserve loop woken by the wake hub, and lease renewal. */
export class SqliteConsumer implements Consumer, EnginePrimitives<Held>, PullSource {
  readonly batch = RESERVE_BATCH;
  readonly unrefTimers = true;
  readonly wakeOnAnySettle = true;
  private readonly tagBase = randomBytes(6).toString('hex');
  private batchSeq = 0;
  private readonly core: ConsumerCore<Held>;
  private readonly loop: PullLoop;
  private unsubscribe: (() => void) | undefined;
  /** The last fetch found nothing: check cheaply for work before taking the write lock again. */
  private idle = false;

  constructor(
    private readonly broker: SqliteBroker,
    private readonly queues: string[],
    private readonly options: ConsumeOptions,
    private readonly onMessage: (d: Delivery) => void,
  ) {
    this.core = new ConsumerCore<Held>({ consume: options, primitives: this, ackBatch: { max: ACK_BATCH, flush: 'immediate' } });
    this.loop = new PullLoop(this.core, this);
  }

  get unsettled(): number {
    return this.core.unsettled;
  }

  /** Every delivery tag of this consumer starts with this (see `SqliteBroker.recoverOwner`). */
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

  start(): void {
    this.unsubscribe = this.broker.hub!.subscribe('queue', () => this.loop.wake());
    this.core.renewEvery(this.broker.leaseCheckMs);
    this.loop.start();
  }

  // ── the pull loop's side (../virtual/pull-loop.ts) ──────────────────

  fetch(room: number): number {
    const now = Date.now();
    const oversized: OversizedRow[] = [];
    const rows = this.idle && !this.broker.hasWork(this.queues, now) ? [] : this.broker.reserve(this.queues, room, `${this.tagBase}.${++this.batchSeq}.`, now, oversized);
    // Dead-lettered unread by the reserve: reported like any malformed message (the worker logs and counts it).
    for (const o of oversized) this.options.onMalformed?.({ queue: o.queue, reason: o.reason, id: o.id });
    for (const row of rows) this.deliver(row);
    return rows.length;
  }

  afterFetch(taken: number): Promise<void> | undefined {
    if (taken > 0) {
      this.idle = false;
      // Let acks, results and timers run between batches.
      return new Promise<void>((r) => setImmediate(r));
    }
    this.idle = true;
    const bell = this.loop.bell;
    if (bell.rung) return undefined;
    let wait = 30_000;
    try {
      const due = this.broker.nextDue(this.queues);
      if (due !== undefined) wait = Math.min(wait, Math.max(1, due - Date.now()));
    } catch (err) {
      this.options.onError?.(err as Error);
    }
    return bell.wait(wait, true);
  }

  private deliver(row: MessageRow): void {
    let message: WireMessage;
    try {
      message = this.broker.decode(row.headers, row.properties, row.content_type, row.content_encoding, row.body);
    } catch (err) {
      const reason = err instanceof DecodeError ? err.reason : (err as Error).message;
      const m = /"id":\s*"([^"]{1,64})"/.exec(String(row.headers).slice(0, 4096));
      this.core.malformed({ id: row.id, tag: row.tag, queue: row.queue, settled: false }, `malformed message: ${reason}`, reason, m?.[1]);
      return;
    }
    const delivery = new SqliteDelivery(this.core, row.id, row.tag, row.queue, message, row.redelivered !== 0);
    this.core.hold(delivery);
    this.onMessage(delivery);
  }

  // ── the core's primitives (../virtual/consumer-core.ts) ─────────────

  settled(): void {
    this.loop.settled();
  }

  renew(held: ReadonlyMap<string, Held>): void {
    if (held.size > 0) this.broker.renew(held.values(), Date.now());
  }

  /** Acks of one event-loop turn go out in one transaction. */
  ackMany(batch: readonly Held[]): void {
    this.broker.ackMany(batch);
  }

  requeue(held: Held, where: 'head' | 'tail'): void {
    this.broker.requeue(held.id, held.tag, where);
  }

  deadLetter(held: Held, reason: string): void {
    this.broker.deadLetterRow(held.id, held.tag, held.queue, reason);
  }

  /** Shutdown: every unsettled delivery goes back to the head of its queue. */
  returnAll(held: Held[]): void {
    for (const h of held) {
      try {
        this.broker.requeue(h.id, h.tag, 'head');
      } catch (err) {
        this.options.onError?.(err as Error);
      }
    }
  }

  /** Stop taking messages. Unsettled deliveries stay valid (their leases keep being renewed) until settled or the broker closes. */
  async cancel(): Promise<void> {
    if (this.core.cancelled) return;
    this.core.cancelled = true;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    await this.loop.stop();
  }

  /** Broker closing: stop, write pending acks, and put every unsettled delivery back at the head of its queue. */
  async shutdown(): Promise<void> {
    await this.cancel();
    await this.core.close();
    this.broker.forgetConsumer(this);
  }
}
