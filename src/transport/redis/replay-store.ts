/**
 * The Redis engine's replay store (the `ReplayStore` of
 * `core/replay-store.ts`; the state machine is in `security/replay-guard.ts`).
 */
import type { Redis } from 'ioredis';
import type { ClaimResult, ReplayStore } from '../../core/replay-store.ts';
import type { Logger } from '../../observability/logging.ts';
import { recordSecurityEvent } from '../../observability/security-events.ts';
import { updateClientCredentials } from './connection.ts';
import { replayRefresh, replaySync, unlock } from './scripts.ts';

/** Most keys in one script call (Redis runs a script atomically, blocking others while it runs). */
const BATCH_MAX = 500;

interface PendingClaim {
  key: string;
  holder: string;
  leaseMs: number;
  stale: string | undefined;
  resolve: (r: ClaimResult) => void;
  reject: (e: unknown) => void;
}

/**
 * Redis store: one key per nonce, `<prefix>celeriac:replay:<nonce>`, value
 * `S` or `H<holder>`, with a TTL (`PX`) — the lease while held, the rest of
 * the signature lifetime once settled. Claims run in Lua, so they are atomic
 * across every worker on the server. Claims and settles made in one turn of
 * the event loop go to Redis as one script call: a worker admits and acks
 * whole reserve batches at a time, so one call replaces hundreds of round
 * trips. Settle TTLs are rounded up (to 0.1 s, 10 s or 1 min by size) so
 * one call covers many (keeping a settled nonce a little longer costs only
 * memory).
 */
export class RedisReplayStore implements ReplayStore {
  readonly kind = 'redis';
  readonly shared = true;
  private readonly client: Redis;
  private readonly prefix: string;
  private readonly ownsClient: boolean;
  private claims: PendingClaim[] = [];
  /** Settled keys by TTL bucket (ms, rounded up): few calls per turn, never a long TTL for short-lived nonces. */
  private settles = new Map<number, string[]>();
  private settleWaiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
  private scheduled = false;

  /** `client` must be connected (or lazily connecting); closed by `close()` when `ownsClient`. */
  constructor(client: Redis, options: { keyPrefix?: string; ownsClient?: boolean } = {}) {
    this.client = client;
    this.prefix = `${options.keyPrefix ?? ''}celeriac:replay:`;
    this.ownsClient = options.ownsClient ?? true;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.scheduled = false;
    const claims = this.claims;
    const settles = this.settles;
    const waiters = this.settleWaiters;
    this.claims = [];
    this.settles = new Map();
    this.settleWaiters = [];
    // Settles in chunks per TTL bucket; claims fill the room left in each call, then continue alone.
    let c = 0;
    const calls: Promise<unknown>[] = [];
    for (const [ttl, keys] of settles) {
      for (let s = 0; s < keys.length; s += BATCH_MAX) {
        const sKeys = keys.slice(s, s + BATCH_MAX);
        const cn = Math.min(BATCH_MAX - sKeys.length, claims.length - c);
        calls.push(this.call(sKeys, ttl, claims.slice(c, c + cn)));
        c += cn;
      }
    }
    for (; c < claims.length; c += BATCH_MAX) calls.push(this.call([], 1, claims.slice(c, c + BATCH_MAX)));
    if (waiters.length > 0) {
      Promise.all(calls).then(
        () => waiters.forEach((w) => w.resolve()),
        (err: unknown) => waiters.forEach((w) => w.reject(err)),
      );
    }
  }

  /** One script call for some settles and claims with one holder and lease (others are split off). */
  private async call(settleKeys: string[], ttl: number, claims: PendingClaim[]): Promise<void> {
    const first = claims[0];
    const same = first === undefined ? [] : claims.filter((x) => x.holder === first.holder && x.leaseMs === first.leaseMs);
    const others = same.length === claims.length ? [] : claims.filter((x) => !(x.holder === first!.holder && x.leaseMs === first!.leaseMs));
    const stale: Array<[number, string]> = [];
    for (let i = 0; i < same.length; i++) if (same[i]!.stale !== undefined) stale.push([i + 1, `H${same[i]!.stale}`]);
    const args = { settleTtlMs: ttl, holder: first ? `H${first.holder}` : '', leaseMs: first ? Math.max(1, Math.round(first.leaseMs)) : 1, stale };
    try {
      const r = await replaySync(this.client, { settled: settleKeys, claimed: same.map((x) => x.key) }, args);
      for (let i = 0; i < same.length; i++) {
        const v = r[i];
        same[i]!.resolve(v === 0 ? { state: 'claimed' } : v === 1 ? { state: 'settled' } : { state: 'held', holder: typeof v === 'string' ? v.slice(1) : '' });
      }
    } catch (err) {
      for (const x of same) x.reject(err);
      if (settleKeys.length > 0) throw err;
    }
    if (others.length > 0) await this.call([], ttl, others);
  }

  claim(nonce: string, holder: string, leaseMs: number, staleHolder?: string): Promise<ClaimResult> {
    return new Promise<ClaimResult>((resolve, reject) => {
      this.claims.push({ key: this.prefix + nonce, holder, leaseMs, stale: staleHolder, resolve, reject });
      this.schedule();
    });
  }

  settle(nonce: string, ttlMs: number): Promise<void> {
    // Coarser buckets for longer TTLs: at most a few percent longer than asked, and few distinct buckets per turn.
    const step = ttlMs < 10_000 ? 100 : ttlMs < 600_000 ? 10_000 : 60_000;
    const bucket = Math.max(step, Math.ceil(ttlMs / step) * step);
    const list = this.settles.get(bucket);
    if (list) list.push(this.prefix + nonce);
    else this.settles.set(bucket, [this.prefix + nonce]);
    this.schedule();
    return new Promise<void>((resolve, reject) => this.settleWaiters.push({ resolve, reject }));
  }

  async release(nonce: string, holder: string): Promise<void> {
    await unlock(this.client, { lock: this.prefix + nonce }, { token: `H${holder}` });
  }

  async refresh(nonces: readonly string[], holder: string, leaseMs: number): Promise<void> {
    for (let i = 0; i < nonces.length; i += BATCH_MAX) {
      const keys = nonces.slice(i, i + BATCH_MAX).map((n) => this.prefix + n);
      await replayRefresh(this.client, { nonces: keys }, { holder: `H${holder}`, leaseMs: Math.max(1, Math.round(leaseMs)) });
    }
  }

  /** Switch the connection to the credentials of `url` (same server): SIGHUP rotation. */
  async updateCredentials(url: string): Promise<void> {
    await updateClientCredentials(this.client, url);
  }

  async close(): Promise<void> {
    if (this.ownsClient) await this.client.quit().catch(() => this.client.disconnect());
  }
}

/**
 * A Redis that evicts keys under memory pressure could drop a settled nonce
 * (a producer filling memory with tasks would then make a replay run):
 * warn when `maxmemory` is set with a policy other than `noeviction`. INFO
 * is allowed to the generated ACL users; if it is refused, nothing is said.
 */
export async function warnIfEvicting(client: Redis, logger: Logger): Promise<void> {
  let info: string;
  try {
    info = await client.info('memory');
  } catch {
    return;
  }
  const max = /^maxmemory:(\d+)/m.exec(info)?.[1];
  const policy = /^maxmemory_policy:(\S+)/m.exec(info)?.[1];
  if (max !== undefined && max !== '0' && policy !== undefined && policy !== 'noeviction') {
    recordSecurityEvent('policy_warning', {
      id: 'CEL-007', setting: 'securityReplayStore',
      reason: `the Redis of the replay store evicts keys when full (maxmemory-policy ${policy}): a settled nonce could be dropped and a replay of its message accepted`,
      fix: 'set maxmemory-policy noeviction on that Redis (or no maxmemory)',
    }, logger);
  }
}
