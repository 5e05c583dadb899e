/**
 * Submission limits (CEL-019): how fast a client may send tasks, and how
 * long a queue may grow, so a runaway or hostile producer cannot fill the
 * broker's memory.
 *
 * Rate limits are token buckets in Celery's rate format (`'100/s'`,
 * `'6000/m'`, `'10/h'`, or a number per second):
 *
 * - per client: the `sendRateLimit` setting, all tasks of this app together;
 * - per task: the `sendRateLimit` task option.
 *
 * Each is local to the process by default; `{ rate, shared: 'name' }`
 * makes it one bucket shared by every process that uses the same name,
 * kept in Redis (`<prefix>celeriac:ratelimit:<name>`, a Lua token bucket on
 * the server clock, so the processes' clocks do not matter) or, without
 * Redis, in PostgreSQL (a row of `<schema>.rate_buckets` under that name,
 * taken in one transaction on the server clock). Shared buckets need a
 * Redis or PostgreSQL broker or result backend. The burst (bucket capacity)
 * defaults to one second's worth of the rate (at least 1).
 *
 * Over the limit, `send` fails at once with `RateLimitedError`
 * (`retryAfterMs` says when a token will be there) — unless
 * `sendRateLimitWait` is set: `true` waits as long as needed, a number
 * waits at most that many milliseconds, then fails. A batch (`sendMany`)
 * takes all its tokens at once or none.
 *
 * Queue caps: `maxQueueLength` (a number for every queue, or a map
 * `{ queue: n, '*': default }`; `brokerTransportOptions.maxQueueLength` is
 * the fallback) is passed to the broker as `PublishOptions.maxLength`, which
 * the Redis, SQLite and memory brokers check atomically with the publish:
 * `send` fails with `QueueFullError`.
 */
import { ConfigError, RateLimitedError } from '../errors.ts';
import type { Logger } from '../observability/logging.ts';
import { parseRateLimit } from './task.ts';
import { recordSecurityEvent } from '../observability/security-events.ts';
import type { SharedTokenBuckets } from '../core/token-buckets.ts';

import type { SendRateLimit } from '../config/schema.ts';

/** A send rate limit (defined with the settings schema). */
export type { SendRateLimit } from '../config/schema.ts';

interface BucketSpec {
  /** Tokens per second. */
  rate: number;
  capacity: number;
  shared: string | undefined;
  /** Shown in errors and events. */
  what: string;
}

/** Parse a limit; undefined for none (unset, 0, `'0'`). Throws `ConfigError` for a malformed one. */
export function parseSendRateLimit(limit: SendRateLimit | undefined | null, what: string): BucketSpec | undefined {
  if (limit === undefined || limit === null) return undefined;
  const long = typeof limit === 'object' ? limit : { rate: limit };
  let rate: number;
  try {
    rate = parseRateLimit(long.rate);
  } catch (err) {
    throw new ConfigError(`${what}: ${(err as Error).message}`, { hint: "use Celery's format, e.g. '100/s', '6000/m' or '10/h'" });
  }
  if (!Number.isFinite(rate) || rate < 0) throw new ConfigError(`${what}: the rate must be a positive number`);
  if (rate === 0) return undefined;
  const burst = long.burst ?? Math.max(1, Math.floor(rate));
  if (!Number.isFinite(burst) || burst < 1) throw new ConfigError(`${what}: burst must be at least 1`);
  const shared = long.shared;
  if (shared !== undefined && (typeof shared !== 'string' || !/^[A-Za-z0-9._:-]{1,128}$/.test(shared))) {
    throw new ConfigError(`${what}: shared must be a bucket name of 1-128 characters A-Z a-z 0-9 . _ : -`);
  }
  return { rate, capacity: burst, shared, what };
}

/** A process-local token bucket. */
class LocalBucket {
  private tokens: number;
  private last: number;
  constructor(readonly spec: BucketSpec) {
    this.tokens = spec.capacity;
    this.last = performance.now();
  }

  private refill(now: number): void {
    if (now > this.last) {
      this.tokens = Math.min(this.spec.capacity, this.tokens + ((now - this.last) / 1000) * this.spec.rate);
      this.last = now;
    }
  }

  /** Ms until `n` tokens are there (0 = now). */
  wait(n: number, now: number): number {
    this.refill(now);
    return this.tokens >= n ? 0 : Math.ceil(((n - this.tokens) / this.spec.rate) * 1000);
  }

  take(n: number): void {
    this.tokens -= n;
  }

  refund(n: number): void {
    this.tokens = Math.min(this.spec.capacity, this.tokens + n);
  }
}


/** Options of {@link SubmissionLimits}. */
export interface SubmissionLimitsOptions {
  /** The client-wide limit (`sendRateLimit` setting). */
  clientLimit?: SendRateLimit | undefined;
  /** `sendRateLimitWait`: false (fail fast, default), true (wait), or the most ms to wait. */
  wait?: boolean | number | undefined;
  /** `maxQueueLength`: one cap for every queue, or per queue (`'*'` for the rest). */
  maxQueueLength?: number | Readonly<Record<string, number>> | undefined;
  /** Fallback cap (`brokerTransportOptions.maxQueueLength`; 0 = none). */
  transportMaxQueueLength?: number | undefined;
  /** Opens the shared buckets (a Redis or PostgreSQL broker or backend) on first use; undefined when there is no such engine. */
  sharedBuckets?: (() => Promise<SharedTokenBuckets>) | undefined;
  /** Key prefix (kombu's `global_keyprefix`). */
  keyPrefix?: string;
  logger?: Logger;
}

/** One send's demand: the task's own limit, and how many messages. */
export interface SubmissionDemand {
  task: string;
  limit: SendRateLimit | undefined;
  count: number;
}

/** Applies the submission limits of one app. */
export class SubmissionLimits {
  private readonly client: BucketSpec | undefined;
  private readonly local = new Map<string, LocalBucket>();
  private readonly taskSpecs = new Map<string, BucketSpec | undefined>();
  private readonly maxWaitMs: number;
  private readonly caps: { all: number | undefined; byQueue: Readonly<Record<string, number>> | undefined };
  private readonly opts: SubmissionLimitsOptions;
  private bucketsPromise: Promise<SharedTokenBuckets> | undefined;
  private lastLogged = 0;

  constructor(options: SubmissionLimitsOptions = {}) {
    this.opts = options;
    this.client = parseSendRateLimit(options.clientLimit, 'sendRateLimit');
    const w = options.wait;
    if (w !== undefined && w !== null && typeof w !== 'boolean' && !(typeof w === 'number' && Number.isFinite(w) && w >= 0)) {
      throw new ConfigError('sendRateLimitWait must be true, false or a number of milliseconds');
    }
    this.maxWaitMs = w === true ? Number.POSITIVE_INFINITY : typeof w === 'number' ? w : 0;
    const m = options.maxQueueLength;
    const check = (n: unknown, name: string): number => {
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) throw new ConfigError(`${name} must be a whole number ≥ 0 (0 = no limit)`);
      return n;
    };
    if (m === undefined || m === null) this.caps = { all: options.transportMaxQueueLength ? check(options.transportMaxQueueLength, 'brokerTransportOptions.maxQueueLength') : undefined, byQueue: undefined };
    else if (typeof m === 'number') this.caps = { all: check(m, 'maxQueueLength'), byQueue: undefined };
    else if (typeof m === 'object') {
      for (const [q, n] of Object.entries(m)) check(n, `maxQueueLength[${JSON.stringify(q)}]`);
      this.caps = { all: undefined, byQueue: m };
    } else throw new ConfigError('maxQueueLength must be a number or a map of queue name to number');
    if (this.client?.shared && !options.sharedBuckets) throw sharedNeedsServer('sendRateLimit');
  }

  /** True when any rate limit may apply (lets the send path skip the async step). */
  get rateLimited(): boolean {
    return this.client !== undefined;
  }

  /** The cap for a queue, for `PublishOptions.maxLength` (undefined = none). */
  maxLengthFor(queue: string): number | undefined {
    const n = this.caps.byQueue ? (Object.hasOwn(this.caps.byQueue, queue) ? this.caps.byQueue[queue] : this.caps.byQueue['*']) : this.caps.all;
    return n === undefined || n === 0 ? undefined : n;
  }

  private taskSpec(task: string, limit: SendRateLimit | undefined): BucketSpec | undefined {
    if (limit === undefined) return undefined;
    let spec = this.taskSpecs.get(task);
    if (spec === undefined && !this.taskSpecs.has(task)) {
      spec = parseSendRateLimit(limit, `sendRateLimit of task ${task}`);
      if (spec?.shared && !this.opts.sharedBuckets) throw sharedNeedsServer(`sendRateLimit of task ${task}`);
      this.taskSpecs.set(task, spec);
    }
    return spec;
  }

  /**
   * Take tokens for sends, from every bucket that applies, all or nothing.
   * Resolves when sent may proceed; throws `RateLimitedError` when over the
   * limit and waiting is not allowed (or would take longer than allowed).
   */
  async acquire(demands: readonly SubmissionDemand[]): Promise<void> {
    // Group the demand per bucket: the client bucket takes every message, task buckets their own.
    const need = new Map<string, { spec: BucketSpec; n: number }>();
    let total = 0;
    for (const d of demands) {
      total += d.count;
      const spec = this.taskSpec(d.task, d.limit);
      if (spec) {
        const id = spec.shared ? `s:${spec.shared}` : `t:${d.task}`;
        const e = need.get(id);
        if (e) e.n += d.count;
        else need.set(id, { spec, n: d.count });
      }
    }
    if (this.client && total > 0) {
      const id = this.client.shared ? `s:${this.client.shared}` : 'c';
      const e = need.get(id);
      if (e) e.n += total;
      else need.set(id, { spec: this.client, n: total });
    }
    if (need.size === 0) return;
    const started = performance.now();
    for (;;) {
      const wait = await this.tryTake(need);
      if (wait === 0) return;
      const worst = [...need.values()].find((e) => e.n > e.spec.capacity);
      if (worst) {
        // A batch larger than a bucket's burst can never pass.
        this.refused(worst.spec.what, Number.POSITIVE_INFINITY);
        throw new RateLimitedError(`${worst.spec.what} (a batch of ${worst.n} exceeds its burst of ${worst.spec.capacity})`, Number.MAX_SAFE_INTEGER);
      }
      const waited = performance.now() - started;
      if (waited + wait > this.maxWaitMs) {
        const what = [...need.values()].map((e) => e.spec.what).join(' and ');
        this.refused(what, wait);
        throw new RateLimitedError(what, wait);
      }
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  /** One attempt: 0 when every bucket gave its tokens, else the ms to wait. */
  private async tryTake(need: Map<string, { spec: BucketSpec; n: number }>): Promise<number> {
    const now = performance.now();
    const locals: Array<[LocalBucket, number]> = [];
    const shared: Array<{ spec: BucketSpec; n: number }> = [];
    let wait = 0;
    for (const [id, e] of need) {
      if (e.spec.shared) {
        shared.push(e);
        continue;
      }
      let b = this.local.get(id);
      if (!b) this.local.set(id, (b = new LocalBucket(e.spec)));
      wait = Math.max(wait, b.wait(e.n, now));
      locals.push([b, e.n]);
    }
    if (wait > 0) return wait;
    for (const [b, n] of locals) b.take(n);
    if (shared.length === 0) return 0;
    // Local tokens are taken first and refunded if the shared buckets say no.
    let w: number;
    try {
      w = await this.takeShared(shared);
    } catch (err) {
      for (const [b, n] of locals) b.refund(n);
      throw err;
    }
    if (w > 0) for (const [b, n] of locals) b.refund(n);
    return w;
  }

  private async takeShared(shared: Array<{ spec: BucketSpec; n: number }>): Promise<number> {
    const store = await this.buckets();
    // Every message of one send counts once per bucket; buckets with different demands go in separate calls.
    let wait = 0;
    const byN = new Map<number, BucketSpec[]>();
    for (const e of shared) byN.set(e.n, [...(byN.get(e.n) ?? []), e.spec]);
    for (const [n, specs] of byN) {
      const buckets = specs.map((s) => `${this.opts.keyPrefix ?? ''}celeriac:ratelimit:${s.shared!}`);
      wait = Math.max(wait, await store.take(buckets, n, specs));
    }
    return wait;
  }

  private buckets(): Promise<SharedTokenBuckets> {
    this.bucketsPromise ??= this.opts.sharedBuckets!();
    this.bucketsPromise.catch(() => {
      this.bucketsPromise = undefined;
    });
    return this.bucketsPromise;
  }

  private refused(what: string, retryAfterMs: number): void {
    // Count every refusal; log at most one line a second, since a burst refuses thousands.
    const now = Date.now();
    const log = now - this.lastLogged >= 1000;
    if (log) this.lastLogged = now;
    recordSecurityEvent('rate_limited', { reason: `${what} is over its submission rate limit`, retryAfterMs: Number.isFinite(retryAfterMs) ? Math.ceil(retryAfterMs) : -1 }, log ? this.opts.logger : undefined);
  }

  async close(): Promise<void> {
    const p = this.bucketsPromise;
    this.bucketsPromise = undefined;
    if (p) await p.then((b) => b.close()).catch(() => undefined);
  }
}

function sharedNeedsServer(what: string): ConfigError {
  return new ConfigError(`${what} is shared, which needs a Redis or PostgreSQL broker or result backend`, {
    hint: 'drop `shared` for a per-process limit, or use Redis or PostgreSQL for the broker or the result backend',
  });
}
