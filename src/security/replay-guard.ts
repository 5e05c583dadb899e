/**
 * Replay protection for signed messages.
 *
 * Every Celeriac header signature carries a random 128-bit nonce and an
 * expiry (`exp`). A worker refuses a message whose signature has expired
 * (checked when the signature is verified), and this module refuses one
 * whose nonce was already used — without refusing the broker's own
 * redeliveries of a message nobody finished.
 *
 * ## The nonce state machine
 *
 * Per nonce, in a store shared by the workers (Redis `SET … PX` under
 * `celeriac:replay:<nonce>`, a table in the SQLite broker file, or process
 * memory):
 *
 * ```
 *            claim (a delivery passed verification)
 *   ABSENT ───────────────────────────────────────▶ HELD(holder, lease)
 *     ▲                                              │   │   │
 *     │ lease runs out (holder died: no refresh)     │   │   │ refresh every lease/3
 *     ├──────────────────────────────────────────────┘   │   └──────▶ HELD (same holder)
 *     │ release (holder requeued it: shutdown,            │
 *     │ lost child, failed settle) / holder closed        │ settle (acked or dead-lettered for good)
 *     └──────────────────────────────────────────────     ▼
 *                                                     SETTLED  ── expires at exp + clock skew ──▶ ABSENT
 * ```
 *
 * A delivery is admitted only when its claim finds the nonce ABSENT (then
 * this consumer holds it). SETTLED → refused as a replay: the message was
 * already acked. HELD by a live holder → refused as a replay: a copy is in
 * flight right now (two copies of one signed message never run at once).
 *
 * Legitimate redeliveries are accepted because they find ABSENT, or a
 * holder that is provably dead:
 * - visibility-timeout restore after a crash: the dead holder stopped
 *   refreshing, its lease (≤ 30 s, and at most half the visibility timeout)
 *   ran out long before the broker restores the message;
 * - a prefork child that died (the supervisor hands its late-ack messages
 *   back at once): the holder id names host and pid, so a consumer on the
 *   same host sees that the pid is gone and takes the hold over
 *   (compare-and-set on the old holder); a consumer on another host waits,
 *   for a redelivered message, until the dead holder's lease runs out;
 * - requeue on shutdown, after a lost child process, or after a failed
 *   settle: the worker calls `released` before the requeue, and the app
 *   releases every remaining hold when it closes (before the broker hands
 *   back unsettled deliveries);
 * - AMQP redelivery after a lost connection: the holder's old delivery is
 *   dead but the holder itself may still be alive and finish the task; its
 *   redelivered copy is then refused while the first copy runs, so the task
 *   still runs once (the refusal is logged as a replay).
 * A redelivered copy that finds the nonce held is claimed again until the
 * holder's lease would have run out (it may be racing the release, or the
 * holder may have died) before it is refused; a copy that is not flagged
 * redelivered is refused at once. A copy an attacker flags as redelivered
 * therefore costs one prefetch slot for at most one lease, and is then
 * refused.
 *
 * After `exp` the signature itself is refused, so nonces never need to be
 * remembered longer than the signature lifetime (bounded by the replay
 * window).
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import type { Logger } from '../observability/logging.ts';
import type { WireMessage } from '../protocol/types.ts';
import { replayRefresh, replaySync, unlock } from '../transport/redis/scripts.ts';

/** What a claim found: the nonce was free (now held by the caller), already settled, or held by another consumer (named). */
export type ClaimResult = { state: 'claimed' } | { state: 'settled' } | { state: 'held'; holder: string };

/**
 * Shared nonce state. Implementations must make `claim` atomic: of two
 * concurrent claims of one nonce, at most one returns `claimed`.
 */
export interface ReplayStore {
  /** `redis`, `sqlite`, `memory`, … */
  readonly kind: string;
  /** True when every worker sharing the broker sees the same state. */
  readonly shared: boolean;
  /**
   * ABSENT → HELD(holder) for `leaseMs`; also HELD(`staleHolder`) →
   * HELD(holder) when `staleHolder` is given (a holder known to be dead).
   * Otherwise report the state.
   */
  claim(nonce: string, holder: string, leaseMs: number, staleHolder?: string): Promise<ClaimResult>;
  /** → SETTLED for `ttlMs` (whatever the state was). */
  settle(nonce: string, ttlMs: number): Promise<void>;
  /** HELD(holder) → ABSENT; no effect when someone else holds it or it is settled. */
  release(nonce: string, holder: string): Promise<void>;
  /** Extend the lease of every nonce still HELD by `holder`. */
  refresh(nonces: readonly string[], holder: string, leaseMs: number): Promise<void>;
  close(): Promise<void>;
}

// ── memory ──────────────────────────────────────────────────────────────

/**
 * Process-local store: correct for one worker process (the memory broker,
 * tests), blind to replays delivered to another process.
 */
export class MemoryReplayStore implements ReplayStore {
  readonly kind = 'memory';
  readonly shared = false;
  private readonly entries = new Map<string, { state: string; until: number }>();
  private ops = 0;

  private live(nonce: string, now: number): string | undefined {
    const e = this.entries.get(nonce);
    if (!e) return undefined;
    if (e.until <= now) {
      this.entries.delete(nonce);
      return undefined;
    }
    return e.state;
  }

  private sweep(now: number): void {
    // Amortised: a pass over the map every 4096 operations keeps it bounded by the live nonces.
    if (++this.ops % 4096 !== 0) return;
    for (const [k, e] of this.entries) if (e.until <= now) this.entries.delete(k);
  }

  async claim(nonce: string, holder: string, leaseMs: number, staleHolder?: string): Promise<ClaimResult> {
    const now = Date.now();
    this.sweep(now);
    const state = this.live(nonce, now);
    if (state === undefined || (staleHolder !== undefined && state === `H${staleHolder}`)) {
      this.entries.set(nonce, { state: `H${holder}`, until: now + leaseMs });
      return { state: 'claimed' };
    }
    return state === 'S' ? { state: 'settled' } : { state: 'held', holder: state.slice(1) };
  }

  async settle(nonce: string, ttlMs: number): Promise<void> {
    this.entries.set(nonce, { state: 'S', until: Date.now() + ttlMs });
  }

  async release(nonce: string, holder: string): Promise<void> {
    if (this.live(nonce, Date.now()) === `H${holder}`) this.entries.delete(nonce);
  }

  async refresh(nonces: readonly string[], holder: string, leaseMs: number): Promise<void> {
    const now = Date.now();
    for (const n of nonces) {
      const e = this.entries.get(n);
      if (e && e.state === `H${holder}` && e.until > now) e.until = now + leaseMs;
    }
  }

  async close(): Promise<void> {
    this.entries.clear();
  }
}

// ── redis ───────────────────────────────────────────────────────────────

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
    const { updateClientCredentials } = await import('../transport/redis/connection.ts');
    await updateClientCredentials(this.client, url);
  }

  async close(): Promise<void> {
    if (this.ownsClient) await this.client.quit().catch(() => this.client.disconnect());
  }
}

// ── sqlite ──────────────────────────────────────────────────────────────

/** The subset of better-sqlite3 the SQLite store uses. */
export interface ReplaySqliteDatabase {
  exec(sql: string): unknown;
  prepare(sql: string): { run(...params: unknown[]): unknown; get(...params: unknown[]): unknown };
  transaction<A extends unknown[], R>(fn: (...args: A) => R): { immediate(...args: A): R };
  close(): unknown;
}

/**
 * SQLite store: a `celeriac_replay` table in the broker's database file,
 * shared by every process on the machine that uses that file. Claims run
 * in `BEGIN IMMEDIATE` transactions, so they are atomic across processes.
 */
export class SqliteReplayStore implements ReplayStore {
  readonly kind = 'sqlite';
  readonly shared = true;
  private readonly db: ReplaySqliteDatabase;
  private readonly claimTx: (nonce: string, holder: string, leaseMs: number, now: number, stale: string) => ClaimResult;
  private readonly stmts: {
    settle: { run(...p: unknown[]): unknown };
    release: { run(...p: unknown[]): unknown };
    refresh: { run(...p: unknown[]): unknown };
    sweep: { run(...p: unknown[]): unknown };
  };
  private ops = 0;

  constructor(db: ReplaySqliteDatabase) {
    this.db = db;
    db.exec('CREATE TABLE IF NOT EXISTS celeriac_replay (nonce TEXT PRIMARY KEY, state TEXT NOT NULL, until INTEGER NOT NULL) WITHOUT ROWID');
    const get = db.prepare('SELECT state, until FROM celeriac_replay WHERE nonce = ?');
    const put = db.prepare('INSERT OR REPLACE INTO celeriac_replay (nonce, state, until) VALUES (?, ?, ?)');
    this.stmts = {
      settle: put,
      release: db.prepare('DELETE FROM celeriac_replay WHERE nonce = ? AND state = ?'),
      refresh: db.prepare('UPDATE celeriac_replay SET until = ? WHERE nonce = ? AND state = ? AND until > ?'),
      sweep: db.prepare('DELETE FROM celeriac_replay WHERE until <= ?'),
    };
    const tx = db.transaction((nonce: string, holder: string, leaseMs: number, now: number, stale: string): ClaimResult => {
      const row = get.get(nonce) as { state: string; until: number } | undefined;
      if (!row || row.until <= now || (stale !== '' && row.state === stale)) {
        put.run(nonce, `H${holder}`, now + leaseMs);
        return { state: 'claimed' };
      }
      return row.state === 'S' ? { state: 'settled' } : { state: 'held', holder: row.state.slice(1) };
    });
    this.claimTx = (...args) => tx.immediate(...args);
  }

  async claim(nonce: string, holder: string, leaseMs: number, staleHolder?: string): Promise<ClaimResult> {
    const now = Date.now();
    if (++this.ops % 1024 === 0) this.stmts.sweep.run(now);
    return this.claimTx(nonce, holder, leaseMs, now, staleHolder === undefined ? '' : `H${staleHolder}`);
  }

  async settle(nonce: string, ttlMs: number): Promise<void> {
    this.stmts.settle.run(nonce, 'S', Date.now() + ttlMs);
  }

  async release(nonce: string, holder: string): Promise<void> {
    this.stmts.release.run(nonce, `H${holder}`);
  }

  async refresh(nonces: readonly string[], holder: string, leaseMs: number): Promise<void> {
    const now = Date.now();
    for (const n of nonces) this.stmts.refresh.run(now + leaseMs, n, `H${holder}`, now);
  }

  async close(): Promise<void> {
    this.db.close();
  }
}

// ── the guard ───────────────────────────────────────────────────────────

/** Options of {@link ReplayGuard}. */
export interface ReplayGuardOptions {
  /** The store, opened on first use. */
  store: () => Promise<ReplayStore>;
  /** Lease of a hold, ms (default 30 s). */
  leaseMs?: number;
  /** Tolerated clock difference, ms: settled nonces are kept until `exp` plus this. */
  clockSkewMs: number;
  logger: Logger;
  /** Pause between claims of a redelivered copy that finds the nonce held, ms (default 250). */
  redeliveryRetryMs?: number;
  /** Whether a process is alive (default: `process.kill(pid, 0)`); used for holders on this host. */
  isAlive?: (pid: number) => boolean;
}

/** True when a process with this pid exists (EPERM: it exists but belongs to someone else). */
function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

interface Hold {
  message: WireMessage;
  /** Signature expiry, ms since epoch. */
  exp: number;
}

/** Why a message was refused by the replay guard. */
export const REPLAY_SETTLED_REASON = 'replayed message: a message with this signature nonce was already processed';
/** Why a concurrent copy was refused. */
export const REPLAY_HELD_REASON = 'replayed message: a copy with this signature nonce is being processed by a live consumer';

/**
 * The consumer side of the state machine described in this module: claims
 * nonces for admitted deliveries, keeps their leases alive, settles them
 * after the ack and releases them before a requeue.
 */
export class ReplayGuard {
  /** This consumer's identity in the store (host, pid, random). */
  readonly holder: string;
  private readonly opts: Required<Omit<ReplayGuardOptions, 'store'>> & Pick<ReplayGuardOptions, 'store'>;
  private readonly host = hostname();
  private storePromise: Promise<ReplayStore> | undefined;
  private readonly holds = new Map<string, Hold>();
  private readonly nonceOf = new WeakMap<WireMessage, string>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(options: ReplayGuardOptions) {
    this.opts = { leaseMs: 30_000, redeliveryRetryMs: 250, isAlive: pidAlive, ...options };
    this.holder = `${this.host}:${process.pid}:${randomBytes(6).toString('base64url')}`;
  }

  /** The store once open (saves a promise hop per message on the hot path). */
  private opened: ReplayStore | undefined;

  /** The store, opened once. */
  store(): Promise<ReplayStore> {
    if (this.storePromise) return this.storePromise;
    const p = this.opts.store();
    this.storePromise = p;
    p.then(
      (s) => {
        this.opened = s;
      },
      () => {
        this.storePromise = undefined;
      },
    );
    return p;
  }

  /** The store if it has been opened (without opening it). */
  async openedStore(): Promise<ReplayStore | undefined> {
    if (!this.storePromise) return undefined;
    return this.storePromise.catch(() => undefined);
  }

  /** Number of nonces held by this consumer. */
  get held(): number {
    return this.holds.size;
  }

  /**
   * Claim the nonce of a verified message. Resolves to undefined (admitted:
   * this consumer now holds it) or the refusal reason. Rejects when the
   * store fails (the caller requeues rather than guess).
   */
  async admit(message: WireMessage, nonce: string, exp: number, redelivered: boolean): Promise<string | undefined> {
    const store = this.opened ?? (await this.store());
    // A redelivery may race the release of the consumer that requeued it, or find a dead holder's
    // lease still running: it is claimed again until that lease must have run out.
    const deadline = Date.now() + this.opts.leaseMs + this.opts.redeliveryRetryMs;
    let stale: string | undefined;
    for (;;) {
      const r = await store.claim(nonce, this.holder, this.opts.leaseMs, stale);
      if (r.state === 'claimed') {
        this.holds.set(nonce, { message, exp });
        this.nonceOf.set(message, nonce);
        this.startRefresh();
        return undefined;
      }
      if (r.state === 'settled') return REPLAY_SETTLED_REASON;
      if (!redelivered) return REPLAY_HELD_REASON;
      stale = this.deadHolder(r.holder);
      if (stale !== undefined) continue; // take over from a dead process at once
      if (Date.now() >= deadline) return REPLAY_HELD_REASON;
      await new Promise((res) => setTimeout(res, this.opts.redeliveryRetryMs));
    }
  }

  /** `holder` when it names a process on this host that no longer exists (never this process). */
  private deadHolder(holder: string): string | undefined {
    const m = /^(.*):(\d+):[A-Za-z0-9_-]+$/.exec(holder);
    if (!m || m[1] !== this.host || holder === this.holder) return undefined;
    const pid = Number(m[2]);
    return pid !== process.pid && !this.opts.isAlive(pid) ? holder : undefined;
  }

  /** The message was acked (or dead-lettered) for good: HELD → SETTLED until its signature expires. */
  settled(message: WireMessage): void {
    const hold = this.take(message);
    if (!hold) return;
    const ttl = Math.max(1000, hold.hold.exp + this.opts.clockSkewMs - Date.now());
    const onError = (err: unknown): void => this.opts.logger.error({ err }, 'replay guard: could not mark a nonce settled; a replay after its lease could be accepted');
    if (this.opened) this.opened.settle(hold.nonce, ttl).catch(onError);
    else void this.store().then((s) => s.settle(hold.nonce, ttl)).catch(onError);
  }

  /** The message is being requeued: HELD → ABSENT, so its redelivery is accepted. */
  released(message: WireMessage): void {
    const hold = this.take(message);
    if (!hold) return;
    void this.store()
      .then((s) => s.release(hold.nonce, this.holder))
      .catch((err: unknown) => this.opts.logger.warn({ err }, 'replay guard: could not release a nonce; its redelivery waits for the lease to run out'));
  }

  private take(message: WireMessage): { nonce: string; hold: Hold } | undefined {
    const nonce = this.nonceOf.get(message);
    if (nonce === undefined) return undefined;
    this.nonceOf.delete(message);
    const hold = this.holds.get(nonce);
    // Only the delivery that claimed the nonce may settle or release it.
    if (!hold || hold.message !== message) return undefined;
    this.holds.delete(nonce);
    if (this.holds.size === 0) this.stopRefresh();
    return { nonce, hold };
  }

  private startRefresh(): void {
    if (this.timer || this.closed) return;
    this.timer = setInterval(() => void this.refresh(), Math.max(250, Math.floor(this.opts.leaseMs / 3)));
    this.timer.unref();
  }

  private stopRefresh(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Extend every live hold; forget holds whose signature has expired (a copy would be refused as expired anyway). */
  async refresh(): Promise<void> {
    const now = Date.now();
    const nonces: string[] = [];
    for (const [n, h] of this.holds) {
      if (h.exp + this.opts.clockSkewMs <= now) this.holds.delete(n);
      else nonces.push(n);
    }
    if (nonces.length === 0) {
      this.stopRefresh();
      return;
    }
    try {
      await (await this.store()).refresh(nonces, this.holder, this.opts.leaseMs);
    } catch (err) {
      this.opts.logger.warn({ err, held: nonces.length }, 'replay guard: lease refresh failed; retrying');
    }
  }

  /** Release every hold (the broker hands unsettled deliveries back after this) and close the store. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopRefresh();
    if (!this.storePromise) return;
    let store: ReplayStore;
    try {
      store = await this.storePromise;
    } catch {
      return;
    }
    const held = [...this.holds.keys()];
    this.holds.clear();
    await Promise.allSettled(held.map((n) => store.release(n, this.holder)));
    await store.close().catch(() => undefined);
  }
}
