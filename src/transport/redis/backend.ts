/**
 * Redis result backend in Celery's layout: `celery-task-meta-<id>` strings
 * with an expiry, and a PUBLISH on the channel of the same name so that
 * waiting clients (Python's included) wake as soon as a result lands.
 *
 * A stored SUCCESS is never replaced: the store script reads the stored
 * record's `status` field, which plain and sealed records alike keep in
 * clear (see `lua/store-n.lua`).
 */
import type { ExpiringIdSet } from '../../core/backend.ts';
import { redisExpiringIdSet } from './expiring-set.ts';
import type { Redis } from 'ioredis';
import type { AdapterContext } from '../../core/adapter-context.ts';
import { ClosedError } from '../../errors.ts';
import { asRedisConnectionError, connectClient, createRedisClient, updateClientCredentials } from './connection.ts';
import type { ChordPart, ResultBackend, StoredRecord, StoreOptions } from '../../core/backend.ts';
import { chordPart, storeResults } from './scripts.ts';
import { awaitReplicas, type ReplicaWait } from './replicas.ts';
import { redisHaOptions } from '../../config/ha-settings.ts';

/** Celery's result key prefix. */
export const TASK_META_PREFIX = 'celery-task-meta-';
/** Celery's saved-group and chord-join key prefix (`<prefix><group id>`, `.j`, `.t`, `.s`). */
export const GROUP_META_PREFIX = 'celery-taskset-meta-';

/** Most records written by one store script call. */
const STORE_BATCH = 500;

export interface RedisBackendOptions extends AdapterContext {
  url: string;
}

interface PendingStore {
  records: readonly StoredRecord[];
  ttl: number;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** Create the Redis result backend adapter. */
export function createRedisBackend(options: RedisBackendOptions): RedisBackend {
  return new RedisBackend(options);
}

export class RedisBackend implements ResultBackend {
  readonly kind = 'redis';
  private readonly client: Redis;
  private readonly sub: Redis;
  private connecting: Promise<void> | undefined;
  private subConnecting: Promise<void> | undefined;
  private readonly watchers = new Map<string, Set<(p: Buffer) => void>>();
  private queue: PendingStore[] = [];
  private flushScheduled = false;
  private closed = false;
  private url: string;
  /** Safe mode: replicas each store waits for (`resultBackendTransportOptions.waitForReplicas`). */
  private readonly replicaWait: ReplicaWait;

  constructor(options: RedisBackendOptions) {
    this.url = options.url;
    const ha = redisHaOptions(options.settings, 'backend');
    this.replicaWait = { replicas: ha.waitForReplicas, timeoutMs: ha.waitTimeoutMs };
    this.client = createRedisClient({ url: options.url, settings: options.settings, logger: options.logger, role: 'backend', side: 'backend' });
    this.sub = createRedisClient({ url: options.url, settings: options.settings, logger: options.logger, role: 'backend-sub', side: 'backend' });
    this.sub.on('messageBuffer', (channel: Buffer, payload: Buffer) => {
      const set = this.watchers.get(channel.toString());
      if (set) for (const w of set) w(payload);
    });
  }

  connect(): Promise<void> {
    if (this.closed) return Promise.reject(new ClosedError('redis backend'));
    this.connecting ??= connectClient(this.client, this.url, 'backend').catch((err: unknown) => {
      this.connecting = undefined;
      throw err;
    });
    return this.connecting;
  }

  private connectSub(): Promise<void> {
    this.subConnecting ??= connectClient(this.sub, this.url, 'backend subscriber').catch((err: unknown) => {
      this.subConnecting = undefined;
      throw err;
    });
    return this.subConnecting;
  }

  /** Stores are gathered per event-loop turn and written by one script call. */
  store(records: readonly StoredRecord[], options?: StoreOptions): Promise<void> {
    if (this.closed) return Promise.reject(new ClosedError('redis backend'));
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ records, ttl: options?.expiresSeconds ?? 0, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        process.nextTick(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    this.flushScheduled = false;
    const pending = this.queue;
    this.queue = [];
    await this.connect().catch(() => undefined);
    // Group by TTL (normally one group); keep record order within a group.
    const byTtl = new Map<number, PendingStore[]>();
    for (const p of pending) {
      const g = byTtl.get(p.ttl);
      if (g) g.push(p);
      else byTtl.set(p.ttl, [p]);
    }
    for (const [ttl, group] of byTtl) {
      const records = group.flatMap((p) => p.records);
      try {
        // All chunks are issued before awaiting any, so they reach Redis in order.
        const calls: Promise<number>[] = [];
        for (let i = 0; i < records.length; i += STORE_BATCH) {
          const chunk = records.slice(i, i + STORE_BATCH);
          const writes = chunk.map((r) => ({ key: TASK_META_PREFIX + r.taskId, payload: r.payload }));
          calls.push(storeResults(this.client, ttl, writes));
        }
        await Promise.all(calls);
        await awaitReplicas(this.client, this.replicaWait, `result store of ${records.length} record(s)`);
        for (const p of group) p.resolve();
      } catch (err) {
        const e = asRedisConnectionError(err, 'result backend', this.url);
        for (const p of group) p.reject(e);
      }
    }
  }

  async get(taskId: string): Promise<Buffer | undefined> {
    await this.connect();
    try {
      return (await this.client.getBuffer(TASK_META_PREFIX + taskId)) ?? undefined;
    } catch (err) {
      throw asRedisConnectionError(err, 'result backend', this.url);
    }
  }

  async getMany(taskIds: readonly string[]): Promise<Array<Buffer | undefined>> {
    if (taskIds.length === 0) return [];
    await this.connect();
    try {
      const r = await this.client.mgetBuffer(...taskIds.map((id) => TASK_META_PREFIX + id));
      return r.map((b) => b ?? undefined);
    } catch (err) {
      throw asRedisConnectionError(err, 'result backend', this.url);
    }
  }

  async watch(taskId: string, onRecord: (payload: Buffer) => void): Promise<() => void> {
    if (this.closed) throw new ClosedError('redis backend');
    await this.connectSub();
    const channel = TASK_META_PREFIX + taskId;
    let set = this.watchers.get(channel);
    if (!set) {
      set = new Set();
      this.watchers.set(channel, set);
      set.add(onRecord);
      await this.sub.subscribe(channel);
    } else {
      set.add(onRecord);
    }
    return () => {
      const s = this.watchers.get(channel);
      if (!s) return;
      s.delete(onRecord);
      if (s.size === 0) {
        this.watchers.delete(channel);
        if (!this.closed) void this.sub.unsubscribe(channel).catch(() => undefined);
      }
    };
  }

  /** Celery's `_set`: SETEX (or SET) and PUBLISH on the key's channel. */
  private async setAndPublish(key: string, value: Buffer | string, ttl: number): Promise<void> {
    await this.connect();
    try {
      const m = this.client.multi();
      if (ttl > 0) m.setex(key, ttl, value);
      else m.set(key, value);
      await m.publish(key, value).exec();
    } catch (err) {
      throw asRedisConnectionError(err, 'result backend', this.url);
    }
  }

  saveGroup(groupId: string, payload: Buffer, options?: StoreOptions): Promise<void> {
    return this.setAndPublish(GROUP_META_PREFIX + groupId, payload, options?.expiresSeconds ?? 0);
  }

  async getGroup(groupId: string): Promise<Buffer | undefined> {
    await this.connect();
    return (await this.client.getBuffer(GROUP_META_PREFIX + groupId)) ?? undefined;
  }

  async forgetGroup(groupId: string): Promise<void> {
    await this.connect();
    await this.client.del(GROUP_META_PREFIX + groupId);
  }

  /** Celery's `set_chord_size`: the `.s` key, written as Celery writes it (text, expiry, PUBLISH). */
  setChordSize(groupId: string, size: number, options?: StoreOptions): Promise<void> {
    return this.setAndPublish(`${GROUP_META_PREFIX}${groupId}.s`, String(size), options?.expiresSeconds ?? 0);
  }

  async chordPartReturn(part: ChordPart, options?: StoreOptions): Promise<Buffer[] | undefined> {
    await this.connect();
    const base = GROUP_META_PREFIX + part.groupId;
    try {
      const parts = await chordPart(this.client, { join: `${base}.j`, extra: `${base}.t`, size: `${base}.s` }, { entry: part.entry, score: part.groupIndex ?? '+inf', ttl: options?.expiresSeconds ?? 0 });
      return parts ?? undefined;
    } catch (err) {
      throw asRedisConnectionError(err, 'result backend', this.url);
    }
  }

  /**
   * Celery's `add_to_chord`: INCR of the `.t` key, which the join (ours and
   * Celery's `on_chord_part_return`) adds to `.s`. Celery sets no expiry
   * here; this one does, so a chord that never completes leaves nothing.
   */
  async addToChord(groupId: string, count: number, options?: StoreOptions): Promise<void> {
    await this.connect();
    const key = `${GROUP_META_PREFIX}${groupId}.t`;
    const ttl = options?.expiresSeconds ?? 0;
    try {
      const m = this.client.multi().incrby(key, count);
      if (ttl > 0) m.expire(key, ttl);
      await m.exec();
    } catch (err) {
      throw asRedisConnectionError(err, 'result backend', this.url);
    }
  }

  async updateCredentials(url: string): Promise<void> {
    await updateClientCredentials(this.client, url);
    await updateClientCredentials(this.sub, url);
    this.url = url;
  }

  expiringIdSet(name: string): ExpiringIdSet {
    return redisExpiringIdSet(this.client, name, () => this.connect());
  }

  async forget(taskId: string): Promise<void> {
    await this.connect();
    await this.client.del(TASK_META_PREFIX + taskId);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    if (this.queue.length > 0) await this.flush();
    this.closed = true;
    this.watchers.clear();
    await Promise.all([
      this.connecting ? this.client.quit().catch(() => this.client.disconnect()) : this.client.disconnect(),
      this.subConnecting ? this.sub.quit().catch(() => this.sub.disconnect()) : this.sub.disconnect(),
    ]);
  }
}
