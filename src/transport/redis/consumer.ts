/**
 * The Redis consumer: the engine's side of the shared consumer core
 * (../virtual/consumer-core.ts). It reserves with one Lua script that pops
 * and records messages as unacknowledged atomically (in batches), wakes on
 * client-side-tracking invalidations of the queue keys (queue-watch.ts),
 * renews the lease of everything it holds, recovers what a reserve whose
 * reply was lost in a reconnect took, and settles through the ack, requeue
 * and dead-letter scripts. Held deliveries, settle-once, ack batching,
 * malformed messages and the give-back at shutdown are the core's.
 */
import { randomBytes } from 'node:crypto';
import type { DecodeLimits } from '../../codec/limits.ts';
import { decodeRedisEnvelope } from './envelope.ts';
import { PRIORITY_STEPS, priorityStep } from '../virtual/priority.ts';
import type { WireMessage } from '../../protocol/types.ts';
import { updateClientCredentials } from './connection.ts';
import { QueueWatch } from './queue-watch.ts';
import { deadLetterQueueName, type ConsumeOptions, type Consumer, type Delivery } from '../../core/broker.ts';
import type { RedisBroker } from './broker.ts';
import * as scripts from './scripts.ts';
import type { ScriptClient } from './scripts.ts';
import { deadLetterRecord, markRedelivered, parseUnackedEntry } from './unacked.ts';
import { ConsumerCore, VirtualDelivery, type EnginePrimitives, type Held as CoreHeld } from '../virtual/consumer-core.ts';
import { PullLoop, type PullSource } from '../virtual/pull-loop.ts';

/** Most messages taken by one reserve call. */
const RESERVE_BATCH = 200;
/** Most tags per ack script call (stays far below Lua's unpack limit). */
const ACK_BATCH = 2000;

/** Largest envelope a consumer reads: the body limit in base64 plus the room decodeRedisEnvelope allows for headers. */
function maxEnvelopeBytes(limits: DecodeLimits): number {
  return Math.ceil((limits.maxBytes * 4) / 3) + 256 * 1024;
}

/** What settling needs: the list a message came from and its envelope as stored. */
interface Held extends CoreHeld {
  readonly listKey: string;
  readonly envelope: string;
  /** Epoch ms of the reserve that took it (its lease started then); absent for a malformed message. */
  readonly reservedAt?: number;
}

/** A delivery of the Redis consumer. */
class RedisDelivery extends VirtualDelivery implements Held {
  constructor(
    core: ConsumerCore<Held>,
    tag: string,
    queue: string,
    readonly listKey: string,
    readonly envelope: string,
    message: WireMessage,
    redelivered: boolean,
    readonly reservedAt: number,
  ) {
    super(core, tag, queue, message, redelivered);
  }
}

/** One consumer: the core, a reserve loop, a wake-up notifier and lease renewal. */
export class RedisConsumer implements Consumer, EnginePrimitives<Held>, PullSource {
  readonly batch = RESERVE_BATCH;
  readonly unrefTimers = false;
  readonly wakeOnAnySettle = false;
  private readonly core: ConsumerCore<Held>;
  private readonly loop: PullLoop;
  private watch: QueueWatch | undefined;
  private restoreTimer: NodeJS.Timeout | undefined;
  private readonly listKeys: string[];
  /** The dead-letter list of each list's queue (oversized messages go there from the reserve script). */
  private readonly dlqKeys: string[];
  /** Envelopes larger than this are dead-lettered by the reserve script, never read here. */
  private readonly maxEnvelopeBytes: number;
  private readonly routingJson: string[];
  private readonly tagPrefix = `${randomBytes(8).toString('hex')}.`;
  private tagSeq = 0;
  /** Empty reserves in a row without tracking (the poll interval grows with them). */
  private idlePolls = 0;
  /**
   * Reserve calls whose reply never came (the connection dropped after Redis
   * ran the script): [first tag number, most taken]. What they took sits in
   * unacked under our tags; it is delivered from there, not left waiting
   * for the visibility timeout.
   */
  private lost: Array<[number, number]> = [];
  /** Epoch ms of the last lease renewal that reached Redis. */
  private renewedAt = Date.now();
  /** A lease older than this (ms) may have been restored by someone else: visibility timeout less a margin. */
  private readonly leaseMs: number;

  constructor(
    private readonly broker: RedisBroker,
    private readonly queues: string[],
    private readonly options: ConsumeOptions,
    private readonly onMessage: (d: Delivery) => void,
  ) {
    this.core = new ConsumerCore<Held>({ consume: options, primitives: this, ackBatch: { max: ACK_BATCH, flush: 'tick' } });
    this.loop = new PullLoop(this.core, this);
    const leaseMs = broker.leaseS * 1000;
    this.leaseMs = leaseMs - Math.min(5000, leaseMs / 10);
    // kombu's order: priority steps outer, queues inner.
    this.listKeys = [];
    this.dlqKeys = [];
    this.routingJson = [];
    for (const step of PRIORITY_STEPS) {
      for (const q of queues) {
        this.listKeys.push(broker.bucketKey(q, step));
        this.dlqKeys.push(broker.prefix + deadLetterQueueName(q));
        this.routingJson.push(JSON.stringify(q));
      }
    }
    this.maxEnvelopeBytes = maxEnvelopeBytes(broker.limits);
  }

  get unsettled(): number {
    return this.core.unsettled;
  }

  /** Every delivery tag of this consumer starts with this (see `RedisBroker.recoverOwner`). */
  get owner(): string {
    return this.tagPrefix;
  }

  setPrefetch(prefetch: number): void {
    this.core.prefetch = prefetch;
    this.loop.wake();
  }

  async start(): Promise<void> {
    await this.startNotifier();
    const leaseMs = this.broker.renewIntervalMs;
    this.core.renewEvery(leaseMs);
    const restore = (): void => {
      void this.broker.restoreExpired().catch((err: unknown) => this.options.onError?.(err as Error));
    };
    restore();
    this.restoreTimer = setInterval(restore, leaseMs);
    this.restoreTimer.unref();
    this.loop.start();
  }

  /** Watch the queue lists for pushes (client-side tracking; see queue-watch.ts). */
  private async startNotifier(): Promise<void> {
    const watch = new QueueWatch({
      connect: (role) => this.broker.newConnection(role),
      keys: this.listKeys,
      onChange: () => this.loop.wake(),
      logger: this.broker.logger,
    });
    this.watch = watch;
    try {
      await watch.start();
    } catch (err) {
      this.broker.logger.warn({ err }, 'notifier connection failed; polling until it recovers');
    }
  }

  /** The reserving connection: the tracked one when it is up, else the broker's. */
  private reserveClient(): ScriptClient {
    const w = this.watch;
    return (w && w.reserver.status === 'ready' ? w.reserver : this.broker.client) as ScriptClient;
  }

  // ── the pull loop's side (../virtual/pull-loop.ts) ──────────────────

  prepare(): Promise<void> | undefined {
    return this.lost.length > 0 ? this.recoverLost() : undefined;
  }

  /** While plenty is in hand, wait until a quarter of the window is free: fewer, larger reserve calls (one round trip and one write each). */
  enough(room: number, unsettled: number): boolean {
    return unsettled === 0 || room >= Math.min(RESERVE_BATCH, Math.ceil(this.core.prefetch / 4));
  }

  async fetch(room: number): Promise<number> {
    let reply: Array<number | string>;
    const seq = this.tagSeq;
    try {
      // Tags are this consumer's random prefix plus a counter: unique, and cheap to make.
      this.tagSeq += room;
      reply = await scripts.reserve(
        this.reserveClient(),
        { ...this.broker.keys, lists: this.listKeys, deadLetters: this.dlqKeys },
        {
          now: (Date.now() / 1000).toFixed(6),
          max: room,
          exchange: '""',
          routingKeys: this.routingJson,
          tagPrefix: this.tagPrefix,
          firstSeq: seq,
          maxEnvelopeBytes: this.maxEnvelopeBytes,
          deadLetterMax: this.broker.deadLetterMax,
        },
      );
    } catch (err) {
      // The script may have run before the connection dropped.
      this.loseReply(seq, room);
      throw err;
    }
    if (reply[0] === -1) {
      // A replay of a call that had run already (ioredis resends unanswered commands after a reconnect).
      this.loseReply(seq, room);
      return -1;
    }
    // The reply: how many came from each list, then the envelopes; tags are the prefix plus consecutive numbers.
    const nk = this.listKeys.length;
    const now = Date.now();
    let taken = 0;
    for (let k = 0, at = nk; k < nk; k++) {
      const count = Number(reply[k]);
      const listKey = this.listKeys[k]!;
      for (let j = 0; j < count; j++, at++, taken++) {
        const envelope = String(reply[at]);
        const tag = this.tagPrefix + (seq + taken);
        if (this.core.cancelled) {
          // Taken after cancel: give them straight back.
          void scripts.requeue(this.broker.client, { ...this.broker.keys, list: listKey }, { tag, envelope, where: 'head' });
        } else {
          this.deliver(listKey, this.queues[k % this.queues.length]!, envelope, tag, now);
        }
      }
    }
    // Oversized envelopes the script dead-lettered: (list index, size, id) each, after the envelopes.
    for (let at = nk + taken; at + 2 < reply.length; at += 3) this.reportOversized(Number(reply[at]) - 1, Number(reply[at + 1]), String(reply[at + 2]));
    return taken;
  }

  afterFetch(taken: number, room: number): Promise<void> | undefined {
    if (taken >= room) {
      this.idlePolls = 0;
      return undefined; // a full batch: more may wait
    }
    return this.idle(taken);
  }

  /** The lists were drained. Sleep until a push is reported (or, without tracking, poll). */
  private async idle(taken: number): Promise<void> {
    const bell = this.loop.bell;
    if (bell.rung) return;
    const tracking = this.watch?.tracking === true;
    if (tracking) {
      // What was just delivered runs first: its result store goes out before the re-arm (the latency path).
      if (taken > 0) await new Promise<void>((r) => setImmediate(r));
      if (this.core.cancelled) return;
      try {
        // Re-arm tracking; anything pushed since the reserve is counted here instead.
        if ((await this.watch!.arm()) > 0) return;
      } catch (err) {
        if (this.core.cancelled) return;
        this.options.onError?.(err as Error);
      }
      if (bell.rung) return;
    }
    this.idlePolls = taken === 0 ? this.idlePolls + 1 : 0;
    // With tracking the timeout is only a safety net.
    await bell.wait(tracking ? 1000 : Math.min(100, 2 ** Math.min(this.idlePolls, 7)));
  }

  private loseReply(seq: number, room: number): void {
    this.lost.push([seq, room]);
    // Bounded: beyond this the visibility-timeout restore brings them back.
    if (this.lost.length > 64) this.lost.shift();
  }

  /** The tags a lost reply may have used. */
  private lostTags(): string[] {
    const tags: string[] = [];
    for (const [seq, n] of this.lost) for (let i = 0; i < n; i++) tags.push(this.tagPrefix + (seq + i));
    return tags;
  }

  /** Deliver what reserve calls with lost replies took (their entries are still in unacked under our tags). */
  private async recoverLost(): Promise<void> {
    const tags = this.lostTags();
    const entries = await this.broker.client.hmget(this.broker.keys.unacked, ...tags);
    this.lost = [];
    let recovered = 0;
    for (let i = 0; i < tags.length; i++) {
      const entry = entries[i];
      const tag = tags[i]!;
      if (entry == null || this.core.held.has(tag)) continue;
      const found = this.fromEntry(entry);
      // An entry this consumer did not write (cannot be): left to the visibility-timeout restore.
      if (!found) continue;
      recovered++;
      this.deliver(found.listKey, found.queue, found.envelope, tag, Date.now());
    }
    if (recovered > 0) {
      this.broker.logger.warn({ recovered }, `recovered ${recovered} message(s) reserved by a call whose reply was lost in a reconnect`);
      void this.renew();
    }
  }

  /** Split an unacked entry written by this consumer's reserve back into its envelope and list. */
  private fromEntry(entry: string): { envelope: string; queue: string; listKey: string } | undefined {
    const parsed = parseUnackedEntry(entry);
    if (!parsed || parsed.exchange !== '') return undefined;
    const k = this.queues.indexOf(parsed.routingKey);
    if (k < 0) return undefined;
    // The reserve script wrote `[` envelope `, "", ` routing key `]`: the envelope comes back byte for byte.
    const suffix = `, "", ${this.routingJson[k]!}]`;
    if (!entry.startsWith('[') || !entry.endsWith(suffix)) return undefined;
    const queue = this.queues[k]!;
    return { envelope: entry.slice(1, entry.length - suffix.length), queue, listKey: this.broker.bucketKey(queue, priorityStep(parsed.priority)) };
  }

  /** The reserve script dead-lettered an envelope over the size limit: report it like any malformed message. */
  private reportOversized(listIndex: number, size: number, id: string): void {
    const queue = this.queues[listIndex % this.queues.length]!;
    const reason = `message of ${size} bytes exceeds the ${this.maxEnvelopeBytes}-byte limit; dead-lettered unread`;
    this.options.onMalformed?.({ queue, reason, id: id || undefined });
  }

  private deliver(listKey: string, queue: string, envelope: string, tag: string, now: number): void {
    let decoded;
    try {
      decoded = decodeRedisEnvelope(envelope, this.broker.limits);
    } catch (err) {
      const reason = (err as Error).message;
      let id: string | undefined;
      // kombu writes the (large) body first and the headers after it: look at both ends.
      const m = /"id":\s*"([^"]{1,64})"/.exec(envelope.length > 16_384 ? envelope.slice(0, 8192) + envelope.slice(-8192) : envelope);
      if (m) id = m[1];
      this.core.malformed({ tag, queue, listKey, envelope, settled: false }, `malformed envelope: ${reason}`, reason, id);
      return;
    }
    const delivery = new RedisDelivery(this.core, tag, queue, listKey, envelope, decoded.message, decoded.redelivered, now);
    this.core.hold(delivery);
    this.onMessage(delivery);
  }

  // ── the core's primitives (../virtual/consumer-core.ts) ─────────────

  /** Only a loop waiting for room needs waking; one waiting for pushes is woken by the watch. */
  settled(): void {
    this.loop.settled();
  }

  /** Its lease may have run out (no renewal reached Redis for a visibility timeout): another worker may have restored it. */
  isStale(held: Held): boolean {
    const reservedAt = held.reservedAt ?? 0;
    return Date.now() - (reservedAt > this.renewedAt ? reservedAt : this.renewedAt) > this.leaseMs;
  }

  ackMany(batch: readonly Held[]): Promise<number> {
    const tags = new Array<string>(batch.length);
    for (let i = 0; i < batch.length; i++) tags[i] = batch[i]!.tag;
    return scripts.ack(this.broker.client, this.broker.keys, tags);
  }

  requeue(held: Held, where: 'head' | 'tail'): Promise<number> {
    return scripts.requeue(this.broker.client, { ...this.broker.keys, list: held.listKey }, { tag: held.tag, envelope: markRedelivered(held.envelope), where });
  }

  deadLetter(held: Held, reason: string): Promise<number> {
    return scripts.deadLetter(
      this.broker.client,
      { ...this.broker.keys, deadLetter: this.broker.prefix + deadLetterQueueName(held.queue) },
      { tag: held.tag, record: deadLetterRecord(held.queue, reason, held.envelope), max: this.broker.deadLetterMax },
    );
  }

  /** Shutdown: every unsettled delivery goes back to the head of its queue. */
  async returnAll(held: Held[]): Promise<void> {
    await Promise.all(held.map((h) => this.requeue(h, 'head').catch(() => undefined)));
  }

  /** Renew the lease of every held delivery so the visibility timeout never restores it while we live (errors reported here). */
  async renew(): Promise<void> {
    const started = Date.now();
    if (this.core.held.size === 0) {
      this.renewedAt = started;
      return;
    }
    const now = (started / 1000).toFixed(6);
    const args: string[] = [];
    for (const tag of this.core.held.keys()) args.push(now, tag);
    try {
      await this.broker.client.zadd(this.broker.keys.index, 'XX', ...args);
      this.renewedAt = started;
    } catch (err) {
      this.options.onError?.(err as Error);
    }
  }

  async updateCredentials(url: string): Promise<void> {
    for (const c of this.watch?.connections() ?? []) await updateClientCredentials(c, url);
  }

  /** Stop reserving. Unsettled deliveries stay valid (their leases keep being renewed) until settled or the broker closes. */
  async cancel(): Promise<void> {
    if (this.core.cancelled) return;
    this.core.cancelled = true;
    if (this.restoreTimer) clearInterval(this.restoreTimer);
    await this.loop.stop();
    this.watch?.close();
    this.watch = undefined;
  }

  /** Broker closing: stop, then put every unsettled delivery back at the head of its queue. */
  async shutdown(): Promise<void> {
    await this.cancel();
    // What lost replies took goes straight back to its queues.
    if (this.lost.length > 0) await this.broker.restoreTags(this.lostTags(), Number.MAX_SAFE_INTEGER, new Set()).catch(() => 0);
    this.lost = [];
    await this.core.close();
    this.broker.forgetConsumer(this);
  }
}
