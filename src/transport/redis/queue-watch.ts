/**
 * Wake-ups for an idle Redis consumer without a blocking pop.
 *
 * Two connections per consumer:
 * - the *reserver* runs the consumer's reserve scripts and has client-side
 *   tracking on in default mode, redirected to the notifier;
 * - the *notifier* is subscribed to `__redis__:invalidate`.
 *
 * Tracking reports a key once, on its first change after this connection
 * last read it. It runs in OPTIN mode with NOLOOP: only reads right after
 * `CLIENT CACHING YES` count (in default mode every reserve script would
 * track all its keys, and its own pops and writes to the unacked keys would
 * send invalidations back, waking the consumer for a second, empty
 * reserve), and this connection's own writes never invalidate. So when a
 * reserve comes back short (the lists were drained), `arm()` reads the
 * lengths of the queue lists with opted-in LLENs: that re-arms tracking, and
 * the next push by anyone else sends one invalidation. An ACL that refuses
 * `CLIENT CACHING` (users made before Celeriac asked for it) gets default
 * mode with NOLOOP instead: still no wake-up from the consumer's own pops,
 * but every reserve tracks its keys again.
 * While the consumer is busy nothing is armed, so its own pops, other
 * consumers' pops and every result write (`celery-task-meta-*` shares the
 * `celery` prefix, which broadcast tracking could not tell apart) cost
 * neither Redis nor the worker a message.
 *
 * Without CLIENT TRACKING (Redis < 6, or an ACL that refuses it) `tracking`
 * stays false and the consumer polls instead.
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../../observability/logging.ts';

export interface QueueWatchOptions {
  /** Opens a new lazy RESP2 connection to the broker's server that does not re-subscribe by itself on reconnect (the watch does). */
  connect: (role: string) => Redis;
  /** The list keys to watch (every priority bucket of every consumed queue). */
  keys: readonly string[];
  /** Called when a watched key changed, or when tracking was (re)established and the lists must be looked at. */
  onChange: () => void;
  logger: Logger;
}

export class QueueWatch {
  readonly reserver: Redis;
  readonly notifier: Redis;
  /** Both connections are up and tracking is redirected to the notifier. */
  tracking = false;
  /** Opt-in mode (false: the ACL refuses CLIENT CACHING, default mode is used). */
  private optIn = true;
  private readonly keys: readonly string[];
  private readonly watched: ReadonlySet<string>;
  private notifierId: string | undefined;
  private closed = false;
  /** The running redirect: the notifier's and the reserver's setup both redirect, and two OFF/ON sequences must not interleave. */
  private redirecting: Promise<void> = Promise.resolve();

  constructor(private readonly options: QueueWatchOptions) {
    this.keys = [...options.keys];
    this.watched = new Set(options.keys);
    this.notifier = options.connect('notifier');
    this.reserver = options.connect('reserver');
    this.notifier.on('messageBuffer', (_channel: Buffer, keys: unknown) => {
      // null: the server flushed everything or tracking was reset; look at the lists.
      if (!Array.isArray(keys)) return options.onChange();
      for (const k of keys) if (this.watched.has(String(k))) return options.onChange();
    });
    this.notifier.on('ready', () => void this.setupNotifier());
    this.reserver.on('ready', () => void this.setupReserver());
    // A lost notifier takes its id with it: the reserver waits for the new one instead of redirecting to a dead id.
    this.notifier.on('close', () => {
      this.notifierId = undefined;
      this.tracking = false;
    });
    this.reserver.on('close', () => {
      this.tracking = false;
    });
  }

  /** Connect both connections (tracking is set up as each becomes ready, and again after every reconnect). */
  async start(): Promise<void> {
    await Promise.all([this.notifier.connect(), this.reserver.connect()]);
  }

  /**
   * Read the queue lengths on the reserver (re-arming tracking of every
   * list) and return how many messages wait in all of them together. A
   * push that lands after this read is reported; one that landed before is
   * counted here.
   */
  async arm(): Promise<number> {
    const p = this.reserver.pipeline();
    for (const k of this.keys) (this.optIn ? p.call('CLIENT', 'CACHING', 'YES') : p).llen(k);
    const replies = (await p.exec()) ?? [];
    let waiting = 0;
    for (let i = 0; i < replies.length; i++) {
      const [err, n] = replies[i]!;
      // Tracking is being re-established (a reconnect): the redirect asks the consumer to look once it is done.
      if (err && /only when the client is in tracking mode/i.test(String((err as Error).message))) return 0;
      if (err) throw err;
      if (!this.optIn || i % 2 === 1) waiting += Number(n);
    }
    return waiting;
  }

  private async setupNotifier(): Promise<void> {
    try {
      this.tracking = false;
      // The redirect target's id changes with every reconnect: fetch it before subscribing.
      this.notifierId = String(await this.notifier.client('ID'));
      await this.notifier.subscribe('__redis__:invalidate');
      await this.redirect();
    } catch (err) {
      this.unavailable(err);
    }
  }

  private async setupReserver(): Promise<void> {
    this.tracking = false;
    if (this.notifierId === undefined) return; // the notifier's setup redirects once it knows its id
    try {
      await this.redirect();
    } catch (err) {
      // The notifier went away meanwhile (its id is gone): its own setup redirects again when it is back.
      if (this.notifierId === undefined || /redirect/i.test(String((err as Error).message))) return;
      this.unavailable(err);
    }
  }

  private redirect(): Promise<void> {
    const next = this.redirecting.catch(() => undefined).then(() => this.redirectNow());
    this.redirecting = next;
    return next;
  }

  private async redirectNow(): Promise<void> {
    if (this.closed || this.notifierId === undefined || this.reserver.status !== 'ready') return;
    // OFF first: ON with a new REDIRECT on a connection already tracking is refused by some servers.
    await this.reserver.call('CLIENT', 'TRACKING', 'OFF');
    await this.reserver.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', this.notifierId, 'OPTIN', 'NOLOOP');
    this.optIn = true;
    try {
      // Applies to the next command only (a PING: nothing is tracked); refused when the ACL lacks client|caching.
      await this.reserver.call('CLIENT', 'CACHING', 'YES');
      await this.reserver.ping();
    } catch (err) {
      if (!/NOPERM/i.test(String((err as Error).message))) throw err;
      this.optIn = false;
      await this.reserver.call('CLIENT', 'TRACKING', 'OFF');
      await this.reserver.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', this.notifierId, 'NOLOOP');
      this.options.logger.info(
        'the Redis ACL refuses CLIENT CACHING: idle wake-ups use default-mode tracking (an extra, empty reserve now and then); grant +client|caching (celeriac secrets generate redis-acl does)',
      );
    }
    this.tracking = true;
    // Nothing is armed on a fresh connection: the consumer reserves and re-arms.
    this.options.onChange();
  }

  private unavailable(err: unknown): void {
    if (this.closed) return;
    this.tracking = false;
    this.options.logger.info({ err }, 'client tracking unavailable; idle consumers poll instead');
    this.options.onChange();
  }

  /** Re-authenticate both connections (credential rotation). */
  connections(): Redis[] {
    return [this.notifier, this.reserver];
  }

  close(): void {
    this.closed = true;
    this.tracking = false;
    this.notifier.disconnect();
    this.reserver.disconnect();
  }
}
