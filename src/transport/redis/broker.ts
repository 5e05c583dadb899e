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
import { randomBytes, randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { AdapterContext } from '../../core/adapter-context.ts';
import { CeleriacError, ClosedError, ConnectionError, QueueFullError } from '../../errors.ts';
import type { Logger } from '../../observability/logging.ts';
import { decodeRedisEnvelope, encodeRedisEnvelope, PRIORITY_SEP, priorityQueueKey, priorityStep } from './envelope.ts';
import { PRIORITY_STEPS, type WireMessage } from '../../protocol/types.ts';
import { asRedisConnectionError, connectClient, createRedisClient, parseRedisUrl, updateClientCredentials } from './connection.ts';
import type { DecodeLimits } from '../../codec/limits.ts';
import { Doorbell } from '../sqlite/doorbell.ts';
import { QueueWatch } from './queue-watch.ts';
import { PushCoalescer } from './push-coalescer.ts';
import * as scripts from './scripts.ts';
import type { ScriptClient } from './scripts.ts';
import {
  deadLetterQueueName,
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

/** Most messages taken by one reserve call. */
const RESERVE_BATCH = 200;
/** Most tags per ack script call (stays far below Lua's unpack limit). */
const ACK_BATCH = 2000;

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
  }

  /** LPUSH on the send connection; a send whose answer was lost is verified, not blindly repeated. */
  private async lpush(key: string, values: string[]): Promise<unknown> {
    try {
      return await this.watchSend(this.sendClient.lpush(key, ...values));
    } catch (err) {
      return this.afterSendError(err, key, [key], 1, 0, values);
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
        return r;
      }),
    );
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

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
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

/** Largest envelope a consumer reads: the body limit in base64 plus the room decodeRedisEnvelope allows for headers. */
function maxEnvelopeBytes(limits: DecodeLimits): number {
  return Math.ceil((limits.maxBytes * 4) / 3) + 256 * 1024;
}

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

/** Flag an envelope as redelivered, the way kombu does when it puts a message back. */
function markRedelivered(envelope: string): string {
  try {
    const e = JSON.parse(envelope) as { headers?: Record<string, unknown>; properties?: { delivery_info?: Record<string, unknown> } };
    if (e.headers && typeof e.headers === 'object') e.headers.redelivered = true;
    if (e.properties?.delivery_info && typeof e.properties.delivery_info === 'object') e.properties.delivery_info.redelivered = true;
    return JSON.stringify(e);
  } catch {
    return envelope;
  }
}

function parseUnackedEntry(entry: string): { exchange: string; routingKey: string; priority: number; redelivered: string } | undefined {
  try {
    const v = JSON.parse(entry) as unknown;
    if (!Array.isArray(v) || v.length < 3 || typeof v[0] !== 'object' || v[0] === null) return undefined;
    const env = v[0] as { properties?: { priority?: unknown } };
    const envelope = JSON.stringify(env);
    return {
      exchange: typeof v[1] === 'string' ? v[1] : '',
      routingKey: typeof v[2] === 'string' ? v[2] : '',
      priority: typeof env.properties?.priority === 'number' ? env.properties.priority : 0,
      redelivered: markRedelivered(envelope),
    };
  } catch {
    return undefined;
  }
}

/** Dead-letter records keep a message whole up to this size; beyond it, its id, size and first KiB (the store stays bounded). */
const DEAD_LETTER_RECORD_MAX = 64 * 1024;

function deadLetterRecord(queue: string, reason: string, raw: string): string {
  const at = Date.now() / 1000;
  if (raw.length <= DEAD_LETTER_RECORD_MAX) return JSON.stringify({ reason, queue, at, payload: raw });
  // Keep the envelope's headers and properties (its id, task, signature) and cut the body to 1 KiB.
  try {
    const e = JSON.parse(raw) as { body?: unknown };
    if (typeof e.body === 'string' && e.body.length > 1368) {
      e.body = e.body.slice(0, 1368);
      const payload = JSON.stringify(e);
      if (payload.length <= DEAD_LETTER_RECORD_MAX) return JSON.stringify({ reason, queue, at, size: raw.length, truncated: true, payload });
    }
  } catch {
    // not JSON: cut below
  }
  const id = /"id":\s*"([^"]{1,64})"/.exec(raw.slice(-8192))?.[1];
  return JSON.stringify({ reason, queue, at, id, size: raw.length, truncated: true, payload: raw.slice(0, 1024) });
}

function parseDeadLetter(r: string, queue: string, limits: DecodeLimits): DeadLetter {
  try {
    const v = JSON.parse(r) as { reason?: unknown; queue?: unknown; at?: unknown; payload?: unknown };
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
    };
  } catch {
    return { queue, reason: 'unknown', at: 0, message: undefined, raw: r };
  }
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
class RedisConsumer implements Consumer {
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
            void scripts.requeue(this.broker.client, { ...this.broker.keys, list: listKey }, { tag, envelope, where: 'head' });
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
        calls.push(scripts.ack(this.broker.client, this.broker.keys, chunk));
      }
      await (calls.length === 1 ? calls[0] : Promise.all(calls));
      batch.resolve();
    } catch (err) {
      batch.reject(err);
    }
  }

  async requeue(held: Held, where: 'head' | 'tail'): Promise<void> {
    if (!this.settle(held)) return;
    await scripts.requeue(this.broker.client, { ...this.broker.keys, list: held.listKey }, { tag: held.tag, envelope: markRedelivered(held.envelope), where });
  }

  async deadLetter(held: Held, reason: string): Promise<void> {
    if (!this.settle(held)) return;
    await scripts.deadLetter(
      this.broker.client,
      { ...this.broker.keys, deadLetter: this.broker.prefix + deadLetterQueueName(held.queue) },
      { tag: held.tag, record: deadLetterRecord(held.queue, reason, held.envelope), max: this.broker.deadLetterMax },
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
