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
 * memory; each engine's `replay-store.ts`, behind `core/replay-store.ts`):
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
import type { Logger } from '../observability/logging.ts';
import type { WireMessage } from '../protocol/types.ts';
import type { ReplayStore } from '../core/replay-store.ts';

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
