/**
 * The Redis consumer: a reserve loop, a wake-up notifier, lease renewal and
 * ack batching (moved out of broker.ts).
 */
import { randomBytes } from 'node:crypto';
import type { DecodeLimits } from '../../codec/limits.ts';
import { decodeRedisEnvelope, priorityStep } from './envelope.ts';
import { PRIORITY_STEPS, type WireMessage } from '../../protocol/types.ts';
import { updateClientCredentials } from './connection.ts';
import { Doorbell } from '../sqlite/doorbell.ts';
import { QueueWatch } from './queue-watch.ts';
import { deadLetterQueueName, type ConsumeOptions, type Consumer, type Delivery } from '../../core/broker.ts';
import { deadLetterRecord, markRedelivered, parseUnackedEntry, SCRIPTS, type RedisBroker, type ScriptClient } from './broker.ts';

/** Most messages taken by one reserve call. */
const RESERVE_BATCH = 200;
/** Most tags per ack script call (stays far below Lua's unpack limit). */
const ACK_BATCH = 2000;

/** Largest envelope a consumer reads: the body limit in base64 plus the room decodeRedisEnvelope allows for headers. */
function maxEnvelopeBytes(limits: DecodeLimits): number {
  return Math.ceil((limits.maxBytes * 4) / 3) + 256 * 1024;
}

interface Held {
  tag: string;
  queue: string;
  listKey: string;
  envelope: string;
}

/** A delivery of the Redis consumer (a class: no closures per message). */
class RedisDelivery implements Delivery, Held {
  constructor(
    private readonly consumer: RedisConsumer,
    readonly tag: string,
    readonly queue: string,
    readonly listKey: string,
    readonly envelope: string,
    readonly message: WireMessage,
    readonly redelivered: boolean,
    /** Epoch ms of the reserve that took it (its lease started then). */
    private readonly reservedAt: number,
  ) {}

  /** Its lease may have run out (no renewal reached Redis for a visibility timeout): another worker may have restored it. */
  get stale(): boolean {
    return this.consumer.leaseExpired(this.reservedAt);
  }

  get deliveryTag(): string {
    return this.tag;
  }

  ack(): Promise<void> {
    return this.consumer.ack(this);
  }

  reject(requeue: boolean): Promise<void> {
    return requeue ? this.consumer.requeue(this, 'tail') : this.consumer.ack(this);
  }

  deadLetter(reason: string): Promise<void> {
    return this.consumer.deadLetter(this, reason);
  }
}

/** One consumer: a reserve loop, a wake-up notifier, lease renewal and ack batching. */
export class RedisConsumer implements Consumer {
  private prefetch: number;
  private readonly unsettledMap = new Map<string, Held>();
  private cancelled = false;
  private loopDone: Promise<void> | undefined;
  private readonly bell = new Doorbell();
  private watch: QueueWatch | undefined;
  /** The loop waits because the prefetch window is full (settling a delivery must wake it). */
  private waitingForRoom = false;
  private renewTimer: NodeJS.Timeout | undefined;
  private restoreTimer: NodeJS.Timeout | undefined;
  private ackTags: string[] = [];
  private ackBatch: { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void } | undefined;
  private readonly listKeys: string[];
  /** The dead-letter list of each list's queue (oversized messages go there from the reserve script). */
  private readonly dlqKeys: string[];
  /** Envelopes larger than this are dead-lettered by the reserve script, never read here. */
  private readonly maxEnvelopeBytes: number;
  private readonly routingJson: string[];
  private readonly tagPrefix = `${randomBytes(8).toString('hex')}.`;
  private tagSeq = 0;
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
    this.prefetch = options.prefetch;
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
    return this.unsettledMap.size;
  }

  /** True when a delivery reserved at `reservedAt` has had no lease renewal for longer than the visibility timeout allows. */
  leaseExpired(reservedAt: number): boolean {
    return Date.now() - (reservedAt > this.renewedAt ? reservedAt : this.renewedAt) > this.leaseMs;
  }

  /** Every delivery tag of this consumer starts with this (see `RedisBroker.recoverOwner`). */
  get owner(): string {
    return this.tagPrefix;
  }

  setPrefetch(prefetch: number): void {
    this.prefetch = prefetch;
    this.bell.ring();
  }

  async start(): Promise<void> {
    await this.startNotifier();
    const leaseMs = this.broker.renewIntervalMs;
    this.renewTimer = setInterval(() => void this.renew(), leaseMs);
    this.renewTimer.unref();
    const restore = (): void => {
      void this.broker.restoreExpired().catch((err: unknown) => this.options.onError?.(err as Error));
    };
    restore();
    this.restoreTimer = setInterval(restore, leaseMs);
    this.restoreTimer.unref();
    this.loopDone = this.loop();
  }

  /** Watch the queue lists for pushes (client-side tracking; see redis-queue-watch.ts). */
  private async startNotifier(): Promise<void> {
    const watch = new QueueWatch({
      connect: (role) => this.broker.newConnection(role),
      keys: this.listKeys,
      onChange: () => this.bell.ring(),
      logger: this.broker.logger,
    });
    watch.reserver.defineCommand('celeriacReserve', { lua: SCRIPTS.reserve });
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

  private async loop(): Promise<void> {
    let idlePolls = 0;
    while (!this.cancelled) {
      if (this.lost.length > 0) {
        try {
          await this.recoverLost();
        } catch (err) {
          if (this.cancelled) break;
          this.options.onError?.(err as Error);
          await this.bell.wait(500);
          continue;
        }
      }
      const room = this.prefetch === 0 ? RESERVE_BATCH : Math.min(RESERVE_BATCH, this.prefetch - this.unsettledMap.size);
      // While plenty is in hand, wait until a quarter of the window is free:
      // fewer, larger reserve calls (one round trip and one write each).
      const enough = this.unsettledMap.size === 0 || room >= Math.min(RESERVE_BATCH, Math.ceil(this.prefetch / 4));
      if (room <= 0 || !enough) {
        this.bell.rung = false;
        this.waitingForRoom = true;
        await this.bell.wait(1000);
        this.waitingForRoom = false;
        continue;
      }
      this.bell.rung = false;
      let reply: Array<number | string>;
      const seq = this.tagSeq;
      try {
        // Tags are this consumer's random prefix plus a counter: unique, and cheap to make.
        this.tagSeq += room;
        reply = await this.reserveClient().celeriacReserve(
          2 + 2 * this.listKeys.length,
          this.broker.keys.unacked,
          this.broker.keys.index,
          ...this.listKeys,
          ...this.dlqKeys,
          (Date.now() / 1000).toFixed(6),
          room,
          '""',
          ...this.routingJson,
          this.tagPrefix,
          seq,
          this.maxEnvelopeBytes,
          this.broker.deadLetterMax,
        );
      } catch (err) {
        // The script may have run before the connection dropped.
        this.loseReply(seq, room);
        if (this.cancelled) break;
        this.options.onError?.(err as Error);
        await this.bell.wait(500);
        continue;
      }
      if (reply[0] === -1) {
        // A replay of a call that had run already (ioredis resends unanswered commands after a reconnect).
        this.loseReply(seq, room);
        continue;
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
          if (this.cancelled) {
            // Taken after cancel: give them straight back.
            void this.broker.client.celeriacRequeue(3, this.broker.keys.unacked, this.broker.keys.index, listKey, tag, envelope, 'head');
          } else {
            this.deliver(listKey, this.queues[k % this.queues.length]!, envelope, tag, now);
          }
        }
      }
      // Oversized envelopes the script dead-lettered: (list index, size, id) each, after the envelopes.
      for (let at = nk + taken; at + 2 < reply.length; at += 3) this.reportOversized(Number(reply[at]) - 1, Number(reply[at + 1]), String(reply[at + 2]));
      if (this.cancelled) break;
      if (taken >= room) {
        idlePolls = 0;
        continue; // a full batch: more may wait
      }
      // The lists were drained. Sleep until a push is reported (or, without tracking, poll).
      if (this.bell.rung) continue;
      const tracking = this.watch?.tracking === true;
      if (tracking) {
        // What was just delivered runs first: its result store goes out before the re-arm (the latency path).
        if (taken > 0) await new Promise<void>((r) => setImmediate(r));
        if (this.cancelled) break;
        try {
          // Re-arm tracking; anything pushed since the reserve is counted here instead.
          if ((await this.watch!.arm()) > 0) continue;
        } catch (err) {
          if (this.cancelled) break;
          this.options.onError?.(err as Error);
        }
        if (this.bell.rung) continue;
      }
      idlePolls = taken === 0 ? idlePolls + 1 : 0;
      // With tracking the timeout is only a safety net.
      await this.bell.wait(tracking ? 1000 : Math.min(100, 2 ** Math.min(idlePolls, 7)));
    }
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
      if (entry == null || this.unsettledMap.has(tag)) continue;
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
      const held: Held = { tag, queue, listKey, envelope };
      this.unsettledMap.set(tag, held);
      const reason = (err as Error).message;
      let id: string | undefined;
      // kombu writes the (large) body first and the headers after it: look at both ends.
      const m = /"id":\s*"([^"]{1,64})"/.exec(envelope.length > 16_384 ? envelope.slice(0, 8192) + envelope.slice(-8192) : envelope);
      if (m) id = m[1];
      void this.deadLetter(held, `malformed envelope: ${reason}`).then(
        () => this.options.onMalformed?.({ queue, reason, id }),
        (e: unknown) => this.options.onError?.(e as Error),
      );
      return;
    }
    const delivery = new RedisDelivery(this, tag, queue, listKey, envelope, decoded.message, decoded.redelivered, now);
    this.unsettledMap.set(tag, delivery);
    this.onMessage(delivery);
  }

  private settle(held: Held): boolean {
    if (!this.unsettledMap.delete(held.tag)) return false;
    // Only a loop waiting for room needs waking; one waiting for pushes is woken by the watch.
    if (this.waitingForRoom) this.bell.ring();
    return true;
  }

  /** Acks of one turn go out together; every ack of the batch gets the batch's one promise. */
  ack(held: Held): Promise<void> {
    if (!this.settle(held)) return Promise.resolve();
    this.ackTags.push(held.tag);
    if (!this.ackBatch) {
      let resolve!: () => void;
      let reject!: (e: unknown) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.ackBatch = { promise, resolve, reject };
      process.nextTick(() => void this.flushAcks());
    }
    return this.ackBatch.promise;
  }

  private async flushAcks(): Promise<void> {
    const batch = this.ackBatch;
    const tags = this.ackTags;
    this.ackBatch = undefined;
    this.ackTags = [];
    if (!batch) return;
    try {
      // All chunks are issued before awaiting any (one write, one round trip).
      const calls: Promise<number>[] = [];
      for (let i = 0; i < tags.length; i += ACK_BATCH) {
        const chunk = tags.length <= ACK_BATCH ? tags : tags.slice(i, i + ACK_BATCH);
        calls.push(this.broker.client.celeriacAck(2, this.broker.keys.unacked, this.broker.keys.index, ...chunk));
      }
      await (calls.length === 1 ? calls[0] : Promise.all(calls));
      batch.resolve();
    } catch (err) {
      batch.reject(err);
    }
  }

  async requeue(held: Held, where: 'head' | 'tail'): Promise<void> {
    if (!this.settle(held)) return;
    await this.broker.client.celeriacRequeue(3, this.broker.keys.unacked, this.broker.keys.index, held.listKey, held.tag, markRedelivered(held.envelope), where);
  }

  async deadLetter(held: Held, reason: string): Promise<void> {
    if (!this.settle(held)) return;
    await this.broker.client.celeriacDeadLetter(
      3,
      this.broker.keys.unacked,
      this.broker.keys.index,
      this.broker.prefix + deadLetterQueueName(held.queue),
      held.tag,
      deadLetterRecord(held.queue, reason, held.envelope),
      this.broker.deadLetterMax,
    );
  }

  /** Renew the lease of every held delivery so the visibility timeout never restores it while we live. */
  private async renew(): Promise<void> {
    const started = Date.now();
    if (this.unsettledMap.size === 0) {
      this.renewedAt = started;
      return;
    }
    const now = (started / 1000).toFixed(6);
    const args: string[] = [];
    for (const tag of this.unsettledMap.keys()) args.push(now, tag);
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
    if (this.cancelled) return;
    this.cancelled = true;
    if (this.restoreTimer) clearInterval(this.restoreTimer);
    this.bell.ring();
    await this.loopDone;
    this.watch?.close();
    this.watch = undefined;
  }

  /** Broker closing: stop, then put every unsettled delivery back at the head of its queue. */
  async shutdown(): Promise<void> {
    await this.cancel();
    await this.flushAcks();
    // What lost replies took goes straight back to its queues.
    if (this.lost.length > 0) await this.broker.restoreTags(this.lostTags(), Number.MAX_SAFE_INTEGER, new Set()).catch(() => 0);
    this.lost = [];
    const held = [...this.unsettledMap.values()];
    await Promise.all(held.map((h) => this.requeue(h, 'head').catch(() => undefined)));
    if (this.renewTimer) clearInterval(this.renewTimer);
    this.broker.forgetConsumer(this);
  }
}
