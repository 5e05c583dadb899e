/**
 * Redis broker in kombu's layout: LPUSH onto `<queue>` (and its priority
 * buckets `<queue>\x06\x16<step>`), ack emulation in the `unacked` hash and
 * `unacked_index` sorted set, visibility-timeout restore under
 * `unacked_mutex`. Python Celery workers and clients share the same keys.
 *
 * Differences from kombu, each closing a known loss or duplicate window:
 * - Messages are reserved by one Lua script that pops and records them as
 *   unacknowledged atomically (kombu's BRPOP-then-HSET can lose a message
 *   when the consumer dies in between), in batches for throughput.
 * - Idle consumers wake on Redis client-side-tracking invalidations of the
 *   queue keys (redis-queue-watch.ts) instead of blocking in BRPOP, so no
 *   message is ever in flight outside Redis.
 * - Every held delivery (ETA tasks, long late-ack tasks) has its lease
 *   renewed while the consumer lives, so the visibility timeout only
 *   restores messages of consumers that died.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { AdapterContext } from '../../core/adapter-context.ts';
import { CeleriacError, ClosedError, ConnectionError, QueueFullError } from '../../errors.ts';
import type { Logger } from '../../observability/logging.ts';
import { decodeRedisEnvelope, encodeRedisEnvelope, PRIORITY_SEP, priorityQueueKey } from './envelope.ts';
import { PRIORITY_STEPS, priorityStep } from '../virtual/priority.ts';
import type { WireMessage } from '../../protocol/types.ts';
import { asRedisConnectionError, connectClient, createRedisClient, describeTarget, parseRedisUrl, updateClientCredentials } from './connection.ts';
import { awaitReplicas, type ReplicaWait } from './replicas.ts';
import { redisTargetId, type RedisOutboxPublish } from './outbox.ts';
import { redisHaOptions } from '../../config/ha-settings.ts';
import type { DecodeLimits } from '../../codec/limits.ts';
import { PushCoalescer } from './push-coalescer.ts';
import { RedisConsumer } from './consumer.ts';
import { deadLetterRecord, parseUnackedEntry } from './unacked.ts';
import { RedisFanout } from './fanout.ts';
import type { BroadcastDelivery, BroadcastItem, Exchange, ReplyQueue, ReplyQueueOptions, SubscribeOptions, Subscription } from '../../core/broker.ts';
import * as scripts from './scripts.ts';
import type { ScriptClient } from './scripts.ts';
import {
  deadLetterId,
  deadLetterQueueName,
  selectDeadLetters,
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
  type RecoverOptions,
} from '../../core/broker.ts';

/** How far from a list's head a re-sent value is looked for (LPOS MAXLEN). */
const VERIFY_DEPTH = 100_000;
/** Attempts to confirm a send whose answer was lost before giving up with an error. */
const VERIFY_ATTEMPTS = 5;

export interface RedisBrokerOptions extends AdapterContext {
  url: string;
}

/** Create the Redis broker adapter. */
export function createRedisBroker(options: RedisBrokerOptions): RedisBroker {
  return new RedisBroker(options);
}

export class RedisBroker implements Broker {
  readonly kind = 'redis';
  readonly client: ScriptClient;
  readonly logger: Logger;
  readonly prefix: string;
  readonly visibilityTimeoutS: number;
  /** How often a consumer renews the leases of what it holds. */
  readonly renewIntervalMs: number;
  /**
   * The lease of a Celeriac delivery, seconds: four renewal intervals (60 s
   * with the defaults). Celeriac consumers renew what they hold, so an older
   * lease means its consumer died (a supervisor SIGKILLed with its children):
   * those messages come back after this, not after the visibility timeout.
   * Entries of other consumers (kombu's, which renew nothing) keep the
   * visibility timeout.
   */
  readonly leaseS: number;
  readonly limits: DecodeLimits;
  readonly deadLetterMax: number;
  readonly keys: { unacked: string; index: string; mutex: string };
  private readonly options: { url: string } & Omit<RedisBrokerOptions, 'url'>;
  private readonly declared = new Set<string>();
  private readonly consumers = new Set<RedisConsumer>();
  private connecting: Promise<void> | undefined;
  /** The first connect succeeded (ioredis reconnects by itself afterwards and queues commands meanwhile). */
  private connected = false;
  private closed = false;
  /**
   * Sends go out on their own connection, which never re-sends an
   * unanswered command after a reconnect (ioredis would, and a re-sent LPUSH
   * that had landed stores the task twice); such a send is verified and
   * completed by `push-verified-n.lua` instead (exactly once unless a worker
   * took the message during the outage).
   */
  readonly sendClient: ScriptClient;
  /** Uncapped sends of one event-loop turn go out as few LPUSH commands per list (push-coalescer.ts). */
  private readonly pushes = new PushCoalescer((key, values) => this.lpush(key, values));
  private readonly target: { host: string; port: number };
  /** Sentinel: the primary's name (`master_name`), for messages. */
  private readonly masterName: string | undefined;
  /** Safe mode: replicas each send waits for (`brokerTransportOptions.waitForReplicas`). */
  private readonly replicaWait: ReplicaWait;
  /** Sends written on the send connection and not answered yet (see watchSend). */
  private readonly unanswered = new Set<{ reject: (e: unknown) => void }>();

  constructor(options: RedisBrokerOptions) {
    this.options = { ...options };
    this.logger = options.logger;
    const t = options.settings.brokerTransportOptions;
    this.prefix = typeof t.globalKeyprefix === 'string' ? t.globalKeyprefix : '';
    this.visibilityTimeoutS = typeof t.visibilityTimeout === 'number' && t.visibilityTimeout > 0 ? t.visibilityTimeout : 3600;
    this.renewIntervalMs = Math.min(15_000, Math.max(250, (this.visibilityTimeoutS * 1000) / 4));
    this.leaseS = Math.min(this.visibilityTimeoutS, (4 * this.renewIntervalMs) / 1000);
    this.deadLetterMax = typeof t.deadLetterMaxLength === 'number' ? t.deadLetterMaxLength : 100_000;
    this.limits = options.settings.decodeLimits;
    this.keys = {
      unacked: this.prefix + (typeof t.unackedKey === 'string' ? t.unackedKey : 'unacked'),
      index: this.prefix + (typeof t.unackedIndexKey === 'string' ? t.unackedIndexKey : 'unacked_index'),
      mutex: this.prefix + (typeof t.unackedMutexKey === 'string' ? t.unackedMutexKey : 'unacked_mutex'),
    };
    this.client = createRedisClient({ url: options.url, settings: options.settings, logger: options.logger, role: 'broker', side: 'broker' }) as ScriptClient;
    this.sendClient = createRedisClient({ url: options.url, settings: options.settings, logger: options.logger, role: 'producer', side: 'broker', autoResend: false }) as ScriptClient;
    this.sendClient.on('close', () => {
      for (const u of this.unanswered) u.reject(new UnansweredSendError());
      this.unanswered.clear();
    });
    const target = parseRedisUrl(options.url);
    this.target = { host: target.host, port: target.port };
    const ha = redisHaOptions(options.settings, 'broker');
    this.masterName = ha.masterName;
    this.replicaWait = { replicas: ha.waitForReplicas, timeoutMs: ha.waitTimeoutMs };
  }

  /** LPUSH on the send connection; a send whose answer was lost is verified, not blindly repeated. */
  private async lpush(key: string, values: string[]): Promise<unknown> {
    let r: unknown;
    try {
      r = await this.watchSend(this.sendClient.lpush(key, ...values));
    } catch (err) {
      r = await this.afterSendError(err, key, [key], 1, 0, values);
    }
    await this.replicated(values.length);
    return r;
  }

  /** Safe mode (`waitForReplicas`): the writes of this connection so far are on enough replicas, or the send fails. */
  private async replicated(n: number): Promise<void> {
    if (this.replicaWait.replicas <= 0) return;
    try {
      await awaitReplicas(this.sendClient, this.replicaWait, `send of ${n} task message(s) to ${describeTarget(parseRedisUrl(this.options.url), this.masterName)}`);
    } catch (err) {
      throw asRedisConnectionError(err, 'broker', this.options.url);
    }
  }

  /**
   * A command written on the ready send connection: if the connection
   * closes before its answer, ioredis (not re-sending) never settles it, so
   * it is failed here with `UnansweredSendError` and verified by the caller.
   * A command queued while the connection is down is written once, after
   * the reconnect, and needs no watching.
   */
  private watchSend<T>(sent: Promise<T>): Promise<T> {
    if (this.sendClient.status !== 'ready') return sent;
    return new Promise<T>((resolve, reject) => {
      const entry = { reject };
      this.unanswered.add(entry);
      sent.then(
        (v) => {
          this.unanswered.delete(entry);
          resolve(v);
        },
        (e: unknown) => {
          this.unanswered.delete(entry);
          reject(e);
        },
      );
    });
  }

  /**
   * A send failed. If it may have reached Redis (the connection dropped
   * with it unanswered), look for its values and push only the missing
   * ones; otherwise (or after several attempts) fail with an error naming
   * the broker.
   */
  private async afterSendError(err: unknown, queueOrKey: string, keys: string[], index: number, cap: number, values: string[]): Promise<number> {
    let last = err;
    for (let attempt = 0; attempt < VERIFY_ATTEMPTS && isUnansweredSend(last) && !this.closed; attempt++) {
      try {
        const r = await scripts.pushVerified(this.sendClient, { buckets: keys }, { cap, bucket: index, depth: VERIFY_DEPTH, values });
        if (r > 0) this.logger.warn({ pushed: r, of: values.length }, `re-sent ${r} of ${values.length} task message(s) whose first send got no answer (the others had been stored)`);
        return r;
      } catch (e) {
        last = e;
        await new Promise((res) => setTimeout(res, 200 * 2 ** attempt));
      }
    }
    if (last instanceof CeleriacError) throw last;
    if (!isUnansweredSend(last)) throw asRedisConnectionError(last, 'broker', this.options.url);
    const why = last instanceof Error ? last.message : String(last);
    throw new ConnectionError(`could not send to the redis broker at ${this.target.host}:${this.target.port} (${queueOrKey}): ${why}`, {
      hint: 'the connection dropped while sending; the message may or may not have been stored — check before sending it again',
      code: 'ERR_SEND',
    });
  }

  /** Rotate credentials: every live connection re-authenticates, new ones use them. */
  async updateCredentials(url: string): Promise<void> {
    await updateClientCredentials(this.client, url);
    await updateClientCredentials(this.sendClient, url);
    this.options.url = url;
    await this.fanoutPart?.updateCredentials(url);
    for (const c of this.consumers) await c.updateCredentials(url);
  }

  /** A new connection to the same server (used by consumers for wake-up notifications). */
  newConnection(role: string): Redis {
    // No automatic re-subscribe: the notifier sets up CLIENT TRACKING and its subscription itself on every
    // (re)connect, and a connection ioredis had already re-subscribed could no longer run CLIENT commands.
    return createRedisClient({ url: this.options.url, settings: this.options.settings, logger: this.logger, role, side: 'broker', autoResubscribe: false });
  }

  connect(): Promise<void> {
    if (this.closed) return Promise.reject(new ClosedError('redis broker'));
    // One after the other: a refused login or certificate is one failure (one security event), not one per connection.
    this.connecting ??= connectClient(this.client, this.options.url, 'broker').then(() => connectClient(this.sendClient, this.options.url, 'broker producer')).then(
      () => {
        this.connected = true;
      },
      (err: unknown) => {
        this.connecting = undefined;
        throw err;
      },
    );
    return this.connecting;
  }

  /** Full key of a queue's priority bucket. */
  bucketKey(queue: string, step: number): string {
    return this.prefix + priorityQueueKey(queue, step);
  }

  private declare(queue: string): void {
    if (this.declared.has(queue)) return;
    this.declared.add(queue);
    // kombu's binding of the queue to its direct exchange; lets Python tools route by exchange.
    void this.client.sadd(`${this.prefix}_kombu.binding.${queue}`, `${queue}${PRIORITY_SEP}${PRIORITY_SEP}${queue}`).catch(() => this.declared.delete(queue));
  }

  publish(queue: string, message: WireMessage, options?: PublishOptions): Promise<void> {
    if (this.closed) return Promise.reject(new ClosedError('redis broker'));
    // The common case (connected, no queue cap) without the grouping of publishMany.
    if (!this.connected || options?.maxLength !== undefined) return this.publishMany([{ queue, message, options }]);
    this.declare(queue);
    const key = this.bucketKey(queue, priorityStep(options?.priority ?? message.properties.priority));
    return this.pushes.push(key, [encodeRedisEnvelope(message, { exchange: options?.exchange ?? '', routingKey: queue, deliveryTag: randomUUID() })]);
  }

  async publishMany(items: readonly PublishItem[]): Promise<void> {
    if (this.closed) throw new ClosedError('redis broker');
    await this.connect();
    // Group by destination list (one LPUSH each); capped queues go through the atomic script.
    const byKey = new Map<string, { queue: string; step: number; max: number | undefined; values: string[] }>();
    for (const { queue, message, options } of items) {
      this.declare(queue);
      const step = priorityStep(options?.priority ?? message.properties.priority);
      const key = this.bucketKey(queue, step);
      const envelope = encodeRedisEnvelope(message, { exchange: options?.exchange ?? '', routingKey: queue, deliveryTag: randomUUID() });
      let group = byKey.get(key);
      if (!group) byKey.set(key, (group = { queue, step, max: options?.maxLength, values: [] }));
      group.values.push(envelope);
    }
    await Promise.all(
      [...byKey].map(async ([key, g]) => {
        if (g.max === undefined) return this.pushes.push(key, g.values);
        const keys = PRIORITY_STEPS.map((s) => this.bucketKey(g.queue, s));
        const index = PRIORITY_STEPS.indexOf(g.step as 0) + 1;
        let r: number;
        try {
          r = await this.watchSend(scripts.publishCapped(this.sendClient, { buckets: keys }, { max: g.max, bucket: index, values: g.values }));
        } catch (err) {
          r = await this.afterSendError(err, g.queue, keys, index, g.max, g.values);
        }
        if (r < 0) throw new QueueFullError(g.queue, -r - 1, g.max);
        await this.replicated(g.values.length);
        return r;
      }),
    );
  }

  /**
   * An uncapped publish as the list key and envelope a beat store on this
   * server pushes in its own script. A capped queue needs the cap check of
   * `publish-capped-n.lua`, so it is not handed over.
   */
  async prepareOutbox(item: PublishItem): Promise<RedisOutboxPublish | undefined> {
    if (this.closed) throw new ClosedError('redis broker');
    if (item.options?.maxLength !== undefined) return undefined;
    await this.connect();
    this.declare(item.queue);
    return {
      engine: 'redis',
      target: redisTargetId(this.options.url, this.options.settings, 'broker'),
      key: this.bucketKey(item.queue, priorityStep(item.options?.priority ?? item.message.properties.priority)),
      envelope: encodeRedisEnvelope(item.message, { exchange: item.options?.exchange ?? '', routingKey: item.queue, deliveryTag: randomUUID() }),
      afterCommit: async () => undefined,
    };
  }

  async consume(queues: readonly string[], options: ConsumeOptions, onMessage: (d: Delivery) => void): Promise<Consumer> {
    if (this.closed) throw new ClosedError('redis broker');
    await this.connect();
    for (const q of queues) this.declare(q);
    const c = new RedisConsumer(this, [...queues], options, onMessage);
    this.consumers.add(c);
    await c.start();
    return c;
  }

  forgetConsumer(c: RedisConsumer): void {
    this.consumers.delete(c);
  }

  async queueLength(queue: string): Promise<number> {
    await this.connect();
    const lens = await Promise.all(PRIORITY_STEPS.map((s) => this.client.llen(this.bucketKey(queue, s))));
    return lens.reduce((a, b) => a + b, 0);
  }

  async purge(queue: string): Promise<number> {
    await this.connect();
    const n = await this.queueLength(queue);
    await this.client.del(...PRIORITY_STEPS.map((s) => this.bucketKey(queue, s)));
    return n;
  }

  async deadLetters(queue: string, limit = 100): Promise<DeadLetter[]> {
    await this.connect();
    const raw = await this.client.lrange(this.prefix + deadLetterQueueName(queue), 0, limit - 1);
    return raw.map((r) => parseDeadLetter(r, queue, this.limits));
  }

  /** Every record of a dead-letter list, oldest first, with its parsed form. */
  private async deadRecords(queue: string): Promise<Array<{ record: string; letter: DeadLetter }>> {
    await this.connect();
    const raw = await this.client.lrange(this.prefix + deadLetterQueueName(queue), 0, -1);
    return raw.reverse().map((record) => ({ record, letter: parseDeadLetter(record, queue, this.limits) }));
  }

  async redriveDeadLetters(queue: string, options: RedriveOptions = {}): Promise<RedriveResult> {
    const result: RedriveResult = { moved: [], refused: [] };
    for (const { record, letter } of selectDeadLetters(await this.deadRecords(queue), (x) => x.letter, options)) {
      const id = deadLetterId(letter);
      if (letter.truncated || !letter.message) {
        result.refused.push({ id, reason: letter.truncated ? TRUNCATED_REFUSAL : 'the stored message could not be decoded' });
        continue;
      }
      const to = options.to ?? letter.queue;
      this.declare(to);
      const target = this.bucketKey(to, priorityStep(letter.message.properties.priority));
      // A fresh delivery tag and the target's routing key: the message itself is unchanged (its signature still verifies).
      const envelope = encodeRedisEnvelope(letter.message, { exchange: '', routingKey: to, deliveryTag: randomUUID() });
      const moved = await scripts.redrive(this.client, { deadLetters: this.prefix + deadLetterQueueName(queue), target }, { record, envelope });
      if (moved === 1) result.moved.push(id ?? '');
    }
    return result;
  }

  async dropDeadLetters(queue: string, options: DeadLetterSelection = {}): Promise<number> {
    let n = 0;
    for (const { record } of selectDeadLetters(await this.deadRecords(queue), (x) => x.letter, options)) {
      n += await this.client.lrem(this.prefix + deadLetterQueueName(queue), -1, record);
    }
    return n;
  }

  /**
   * Restore deliveries whose lease ran out (their consumer died), under
   * kombu's `unacked_mutex` so that Python and Celeriac restorers take turns.
   * Returns how many were restored.
   */
  async restoreExpired(now: number = Date.now()): Promise<number> {
    await this.connect();
    return this.withMutex(async () => {
      let restored = 0;
      if (this.leaseS < this.visibilityTimeoutS) {
        const leaseCutoff = now / 1000 - this.leaseS;
        const ours = (await this.client.zrangebyscore(this.keys.index, '-inf', leaseCutoff, 'LIMIT', 0, 1000)).filter((t) => OUR_DELIVERY_TAG.test(t));
        const n = await this.restoreTags(ours, leaseCutoff, new Set());
        if (n > 0) this.logger.warn({ restored: n }, `restored ${n} message(s) of a Celeriac consumer that stopped renewing its leases ${this.leaseS} s ago (its process died)`);
        restored += n;
      }
      const cutoff = now / 1000 - this.visibilityTimeoutS;
      const tags = await this.client.zrangebyscore(this.keys.index, '-inf', cutoff, 'LIMIT', 0, 1000);
      const n = await this.restoreTags(tags, cutoff, new Set());
      if (n > 0) this.logger.warn({ restored: n }, `restored ${n} unacknowledged message(s) after the visibility timeout`);
      return restored + n;
    });
  }

  /**
   * Renew the leases of deliveries held by another process (a supervisor
   * for its children's running tasks: a child whose event loop a task
   * blocks cannot renew them itself).
   */
  async renewLeases(tags: readonly string[]): Promise<void> {
    if (tags.length === 0) return;
    await this.connect();
    const now = (Date.now() / 1000).toFixed(6);
    const args: string[] = [];
    for (const tag of tags) args.push(now, tag);
    await this.client.zadd(this.keys.index, 'XX', ...args);
  }

  /**
   * Recover the deliveries of a consumer that is known to be dead (a worker
   * child killed by its supervisor) at once, without waiting for the
   * visibility timeout: every unacknowledged message whose tag starts with
   * `owner` goes back to its queue, except those in `drop`, which are
   * removed (the message that caused the kill must not run again).
   */
  async recoverOwner(owner: string, options: RecoverOptions = {}): Promise<number> {
    await this.connect();
    const drop = new Set(options.drop ?? []);
    if (drop.size > 0) await scripts.ack(this.client, this.keys, [...drop]);
    for (const [tag, reason] of options.deadLetter ?? []) {
      if (!tag.startsWith(owner)) continue;
      drop.add(tag);
      const entry = await this.client.hget(this.keys.unacked, tag);
      if (entry == null) continue;
      const parsed = parseUnackedEntry(entry);
      const queue = parsed?.routingKey || 'unacked';
      // The envelope (the unacked entry is [envelope, exchange, routing key]); the entry itself when unparsable.
      const envelope = parsed ? JSON.stringify((JSON.parse(entry) as unknown[])[0]) : entry;
      await scripts.deadLetter(this.client, { ...this.keys, deadLetter: this.prefix + deadLetterQueueName(queue) }, { tag, record: deadLetterRecord(queue, reason, envelope), max: this.deadLetterMax });
      this.logger.warn({ tag, queue, reason }, `dead-lettered a message of a lost worker process: ${reason}`);
    }
    const tags = (await this.client.zrange(this.keys.index, '0', '-1')).filter((t) => t.startsWith(owner) && !drop.has(t));
    const restored = await this.restoreTags(tags, Number.MAX_SAFE_INTEGER, drop);
    if (restored > 0) this.logger.warn({ restored, owner }, `restored ${restored} message(s) of a lost worker process`);
    return restored;
  }

  private async withMutex(work: () => Promise<number>): Promise<number> {
    const token = randomUUID();
    // Held for one scan (milliseconds); a short expiry limits how long a crashed restorer blocks others.
    // (A restorer killed mid-scan blocks the others until this runs out: at most half the visibility timeout.)
    const got = await this.client.set(this.keys.mutex, token, 'PX', Math.max(1000, Math.min(30_000, (this.visibilityTimeoutS * 1000) / 2)), 'NX');
    if (got !== 'OK') return 0;
    try {
      return await work();
    } finally {
      await scripts.unlock(this.client, { lock: this.keys.mutex }, { token }).catch(() => undefined);
    }
  }

  /** @internal Put unacknowledged entries back on their queues (only those still at or below `cutoff`). */
  async restoreTags(tags: readonly string[], cutoff: number, skip: ReadonlySet<string>): Promise<number> {
    if (tags.length === 0) return 0;
    let restored = 0;
    const entries = await this.client.hmget(this.keys.unacked, ...tags);
    for (let i = 0; i < tags.length; i++) {
      const tag = tags[i]!;
      const entry = entries[i];
      if (skip.has(tag)) continue;
      // One bad entry must not stop the pass: the others still go back to their queues.
      try {
        restored += await this.restoreEntry(tag, entry ?? null, cutoff);
      } catch (err) {
        this.logger.error({ err, tag }, 'could not restore an unacknowledged message; it will be retried on the next pass');
      }
    }
    return restored;
  }

  /** Restore one entry (or dead-letter it when it cannot be routed); returns 1 when restored. */
  private async restoreEntry(tag: string, entry: string | null, cutoff: number): Promise<number> {
    if (entry == null) {
      await this.client.zrem(this.keys.index, tag);
      return 0;
    }
    const parsed = parseUnackedEntry(entry);
    if (!parsed) {
      this.logger.error({ tag }, 'unrestorable unacked entry moved to the dead-letter list');
      await scripts.deadLetter(this.client, { ...this.keys, deadLetter: this.prefix + deadLetterQueueName('unacked') }, { tag, record: deadLetterRecord('unacked', 'unparsable unacked entry', entry), max: this.deadLetterMax });
      return 0;
    }
    const queues = await this.route(parsed.exchange, parsed.routingKey);
    if (queues.length === 0) {
      this.logger.error({ tag, exchange: parsed.exchange, routingKey: parsed.routingKey }, 'unacked message has no route; dead-lettered');
      await scripts.deadLetter(this.client, { ...this.keys, deadLetter: this.prefix + deadLetterQueueName(parsed.routingKey || 'unacked') }, { tag, record: deadLetterRecord(parsed.routingKey, 'no route on restore', entry), max: this.deadLetterMax });
      return 0;
    }
    const step = priorityStep(parsed.priority);
    const dest = queues.map((q) => this.bucketKey(q, step));
    return scripts.restore(this.client, { ...this.keys, lists: dest }, { tag, cutoff, envelope: parsed.redelivered });
  }

  /** Queues a message published to (exchange, routing key) reaches: kombu's direct routing via `_kombu.binding.*`. */
  private async route(exchange: string, routingKey: string): Promise<string[]> {
    if (exchange === '') return routingKey ? [routingKey] : [];
    const members = await this.client.smembers(`${this.prefix}_kombu.binding.${exchange}`);
    const out: string[] = [];
    for (const m of members) {
      const [rk, , queue] = m.split(PRIORITY_SEP);
      if (queue && (rk === routingKey || rk === '')) out.push(queue);
    }
    return out.length > 0 ? out : [routingKey];
  }

  // Fanout (events, remote control) in kombu's pub/sub layout: see fanout.ts.
  private fanoutPart: RedisFanout | undefined;
  private get fanout(): RedisFanout {
    return (this.fanoutPart ??= new RedisFanout({ broker: this, url: () => this.options.url, settings: this.options.settings }));
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
    await this.fanoutPart?.close();
    // Sends already made are written and answered before QUIT (ioredis sends QUIT at once).
    await this.pushes.idle();
    for (const c of [...this.consumers]) await c.shutdown();
    if (this.connecting) {
      await Promise.all([this.client.quit().catch(() => this.client.disconnect()), this.sendClient.quit().catch(() => this.sendClient.disconnect())]);
    } else {
      this.client.disconnect();
      this.sendClient.disconnect();
    }
  }
}

/** A delivery tag made by a Celeriac consumer: its random prefix and a counter (kombu's are UUIDs). */
const OUR_DELIVERY_TAG = /^[0-9a-f]{16}\.\d+$/;

/**
 * The send was written and its answer lost (the connection closed under it:
 * ioredis rejects such commands with "Connection is closed." when it does not
 * re-send them), so Redis may or may not have run it.
 */
function isUnansweredSend(err: unknown): boolean {
  if (err instanceof UnansweredSendError) return true;
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: string }).code;
  return err.message === 'Connection is closed.' || code === 'ECONNRESET' || code === 'EPIPE' || code === 'ETIMEDOUT';
}

/** The connection closed after a send was written and before its answer. */
class UnansweredSendError extends Error {
  constructor() {
    super('the connection closed before Redis answered the send');
  }
}

function parseDeadLetter(r: string, queue: string, limits: DecodeLimits): DeadLetter {
  try {
    const v = JSON.parse(r) as { reason?: unknown; queue?: unknown; at?: unknown; payload?: unknown; truncated?: unknown };
    const payload = typeof v.payload === 'string' ? v.payload : r;
    let message: WireMessage | undefined;
    try {
      message = decodeRedisEnvelope(payload, limits).message;
    } catch {
      message = undefined;
    }
    return {
      queue: typeof v.queue === 'string' ? v.queue : queue,
      reason: typeof v.reason === 'string' ? v.reason : 'unknown',
      at: typeof v.at === 'number' ? v.at * 1000 : 0,
      message,
      raw: payload,
      ...(v.truncated === true ? { truncated: true } : {}),
    };
  } catch {
    return { queue, reason: 'unknown', at: 0, message: undefined, raw: r };
  }
}
