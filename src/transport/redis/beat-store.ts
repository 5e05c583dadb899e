/**
 * The Redis engine's beat store (`core/beat-store.ts`): the lease, the
 * fencing counter and the per-entry state under
 * `<prefix>celeriac:beat:{<namespace>}:…` (one hash slot), changed only by
 * the `beat-*.lua` scripts so every check-and-write is atomic on the server.
 */
import type { Redis } from 'ioredis';
import type { BeatEntryState, BeatStore } from '../../core/beat-store.ts';
import { isRedisOutbox } from './outbox.ts';
import { awaitReplicas, type ReplicaWait } from './replicas.ts';
import { beatAcquire, beatClaim, beatConfirm, beatRelease, type BeatKeys } from './scripts.ts';

/** The keys of `namespace` under `keyPrefix`. */
export function beatKeys(keyPrefix: string, namespace: string): BeatKeys {
  const base = `${keyPrefix}celeriac:beat:{${namespace}}`;
  return { lock: `${base}:lock`, fence: `${base}:fence`, entries: `${base}:entries` };
}

/** Options of {@link createRedisBeatStore}. */
export interface RedisBeatStoreOptions {
  keyPrefix: string;
  namespace: string;
  /** The server and database `client` writes to (`redisTargetId`): a broker's outbox publish is carried only when it names the same. */
  target: string;
  /** Safe mode: a carried publish waits for this many replicas, as the broker's own sends do. */
  replicaWait?: ReplicaWait;
}

/** A store on `client` (which it owns: `close()` quits it). */
export function createRedisBeatStore(client: Redis, options: RedisBeatStoreOptions): BeatStore {
  const keys = beatKeys(options.keyPrefix, options.namespace);
  const { target, replicaWait } = options;
  return {
    kind: 'redis',
    canCarry: (p) => p.engine === 'redis' && p.target === target,
    async acquire(holder, leaseMs) {
      const [ok, who, expires] = await beatAcquire(client, keys, { holder, leaseMs: Math.ceil(leaseMs) });
      return Number(ok) === 1
        ? { leader: true, token: Number(who), expiresAt: Number(expires) }
        : { leader: false, holder: String(who), expiresAt: Number(expires) };
    },
    async release(holder, token) {
      await beatRelease(client, keys, { holder, token });
    },
    async claim(input) {
      const push = input.publish && isRedisOutbox(input.publish, target) ? { key: input.publish.key, envelope: input.publish.envelope } : undefined;
      const [state, last] = await beatClaim(client, keys, { ...input, push });
      if (state === 'claimed') {
        const published = last === '1';
        // A tick whose message was pushed here is as durable as any send: on Sentinel's safe mode it waits for the replicas too.
        if (published && replicaWait && replicaWait.replicas > 0) await awaitReplicas(client, replicaWait, `beat's send of task ${input.taskId}`);
        return { state: 'claimed', published };
      }
      if (state === 'done') return { state: 'done', lastTick: Number(last) };
      return { state: 'fenced' };
    },
    async confirm(entry, tick) {
      await beatConfirm(client, keys, { entry, tick });
    },
    async read() {
      const [[, lock], [, ttl], [, raw]] = (await client.multi().hgetall(keys.lock).pttl(keys.lock).hgetall(keys.entries).exec()) as [
        [unknown, Record<string, string>],
        [unknown, number],
        [unknown, Record<string, string>],
      ];
      const lease = lock.holder && ttl > 0 ? { holder: lock.holder, token: Number(lock.token), expiresAt: Date.now() + ttl } : undefined;
      const entries: BeatEntryState[] = Object.entries(raw).map(([name, json]) => {
        const p = JSON.parse(json) as Record<string, string>;
        return {
          name,
          lastTick: Number(p.lastTick),
          taskId: String(p.taskId),
          sentAt: Number(p.sentAt),
          token: Number(p.token),
          total: Number(p.total),
          skipped: Number(p.skipped),
          confirmed: p.confirmed === '1',
          ...(typeof p.pending === 'string' && p.pending !== '' ? { pending: p.pending } : {}),
        };
      });
      return { lease, entries };
    },
    async close() {
      await client.quit().catch(() => undefined);
    },
  };
}
