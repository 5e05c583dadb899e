/**
 * Cross-process wake-up for the embedded SQLite broker and backend.
 *
 * Several processes share one database file, so an in-process event is not
 * enough, and polling the database in a tight loop burns CPU. Instead, each
 * channel (`queue`: messages became available; `result`: a result was
 * stored) has a small side file next to the database (`<db>-wake-queue`,
 * `<db>-wake-result`):
 *
 * - a writer, right after its commit, notifies subscribers in its own
 *   process directly and writes one byte into the side file (one `pwrite`,
 *   no fsync; the file never grows);
 * - every process with subscribers watches the side file (`fs.watch`:
 *   inotify on Linux, kqueue on macOS) and wakes them when it changes.
 *   Because the byte is written after the commit, a woken reader always
 *   sees the new rows.
 *
 * An idle process therefore sleeps in the kernel: no timers fire except a
 * slow safety check (`safetyMs`, default 1 s) that covers a writer that died
 * between its commit and its write, or a lost notification. Where file
 * watching is unavailable (or `?wake=poll`), the safety check becomes the
 * mechanism and runs every `pollMs` (default 50 ms).
 *
 * Subscribers are called at most once per event-loop turn per channel.
 */
import { closeSync, constants, fchmodSync, openSync, watch, writeSync, type FSWatcher } from 'node:fs';
import type { Logger } from '../../observability/logging.ts';

/** What changed (`fanout`: a broadcast was stored, see fanout.ts). */
export type WakeChannel = 'queue' | 'result' | 'fanout';

/** Options of a hub (the first acquirer of a path decides). */
export interface WakeHubOptions {
  /** `watch` (default) or `poll`. */
  mode?: 'watch' | 'poll';
  /** Safety check interval while watching, ms (default 1000). */
  safetyMs?: number;
  /** Check interval in poll mode, ms (default 50). */
  pollMs?: number;
  logger?: Pick<Logger, 'warn' | 'debug'>;
}

const ONE_BYTE = Buffer.from([0x2a]);

class Channel {
  readonly subscribers = new Set<() => void>();
  private fd: number | undefined;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private dispatchScheduled = false;
  private watchFailed = false;
  private openWarned = false;

  constructor(
    readonly file: string,
    private readonly hub: WakeHub,
  ) {}

  /** Create the side file (0600, never through a symlink) and keep a descriptor for signalling. */
  private descriptor(): number | undefined {
    if (this.fd !== undefined) return this.fd;
    try {
      this.fd = openSync(this.file, constants.O_WRONLY | constants.O_CREAT | (constants.O_NOFOLLOW ?? 0), 0o600);
      try {
        fchmodSync(this.fd, 0o600);
      } catch {
        // Owned by another user in a shared-group setup: leave its mode alone.
      }
    } catch (err) {
      if (!this.openWarned) {
        this.openWarned = true;
        this.hub.logger?.warn({ err, file: this.file }, 'cannot open the wake-up file; other processes will notice new work at their next periodic check');
      }
      this.fd = undefined;
    }
    return this.fd;
  }

  /** Tell other processes (and this one) that something changed. */
  signal(): void {
    const fd = this.descriptor();
    if (fd !== undefined) {
      try {
        writeSync(fd, ONE_BYTE, 0, 1, 0);
      } catch {
        // A failed signal only delays others until their safety check.
      }
    }
    this.dispatch();
  }

  /** Call every subscriber once, on the next turn of the event loop. */
  dispatch(): void {
    if (this.dispatchScheduled || this.subscribers.size === 0) return;
    this.dispatchScheduled = true;
    setImmediate(() => {
      this.dispatchScheduled = false;
      for (const fn of [...this.subscribers]) fn();
    });
  }

  subscribe(fn: () => void): () => void {
    this.subscribers.add(fn);
    if (this.subscribers.size === 1) this.start();
    return () => {
      if (!this.subscribers.delete(fn)) return;
      if (this.subscribers.size === 0) this.stop();
    };
  }

  private start(): void {
    const watching = this.hub.mode === 'watch' && !this.watchFailed && this.startWatcher();
    const every = watching ? this.hub.safetyMs : this.hub.pollMs;
    this.timer = setInterval(() => this.dispatch(), every);
    // While watching, the watcher keeps the process alive; the safety timer must not.
    if (watching) this.timer.unref();
  }

  private startWatcher(): boolean {
    if (this.descriptor() === undefined) return false;
    try {
      const w = watch(this.file, { persistent: true });
      w.on('change', (event) => {
        // The file was removed or replaced (e.g. someone cleaned the directory): watch the new one.
        if (event === 'rename') this.rewatch();
        this.dispatch();
      });
      w.on('error', (err) => {
        this.hub.logger?.warn({ err, file: this.file }, 'watching the wake-up file failed; falling back to polling');
        this.watchFailed = true;
        this.restart();
      });
      this.watcher = w;
      return true;
    } catch (err) {
      // ENOSPC (inotify watch limit), unsupported file system, …
      this.hub.logger?.warn({ err, file: this.file }, 'cannot watch the wake-up file; polling instead');
      this.watchFailed = true;
      return false;
    }
  }

  private rewatch(): void {
    if (this.fd !== undefined) {
      try {
        closeSync(this.fd);
      } catch {
        // already gone
      }
      this.fd = undefined;
    }
    this.restart();
  }

  private restart(): void {
    if (this.subscribers.size === 0) return;
    this.stop();
    this.start();
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.watcher?.close();
    this.watcher = undefined;
  }

  close(): void {
    this.subscribers.clear();
    this.stop();
    if (this.fd !== undefined) {
      try {
        closeSync(this.fd);
      } catch {
        // already closed
      }
      this.fd = undefined;
    }
  }
}

/**
 * One hub per database file per process, shared by every broker and backend
 * instance on that file (reference-counted through `acquire`/`release`).
 */
export class WakeHub {
  private static readonly hubs = new Map<string, WakeHub>();
  readonly mode: 'watch' | 'poll';
  readonly safetyMs: number;
  readonly pollMs: number;
  readonly logger: Pick<Logger, 'warn' | 'debug'> | undefined;
  private readonly channels: Record<WakeChannel, Channel>;
  private refs = 0;

  private constructor(
    readonly dbPath: string,
    options: WakeHubOptions,
  ) {
    this.mode = options.mode ?? 'watch';
    this.safetyMs = options.safetyMs ?? 1000;
    this.pollMs = options.pollMs ?? 50;
    this.logger = options.logger;
    this.channels = { queue: new Channel(`${dbPath}-wake-queue`, this), result: new Channel(`${dbPath}-wake-result`, this), fanout: new Channel(`${dbPath}-wake-fanout`, this) };
  }

  /** The hub of a database file (created on first use). */
  static acquire(dbPath: string, options: WakeHubOptions = {}): WakeHub {
    let hub = WakeHub.hubs.get(dbPath);
    if (!hub) {
      hub = new WakeHub(dbPath, options);
      WakeHub.hubs.set(dbPath, hub);
    }
    hub.refs++;
    return hub;
  }

  /** Drop one reference; the last one closes the watchers and descriptors. */
  release(): void {
    if (--this.refs > 0) return;
    WakeHub.hubs.delete(this.dbPath);
    this.channels.queue.close();
    this.channels.result.close();
    this.channels.fanout.close();
  }

  /** Call after a commit that others may wait for. */
  signal(channel: WakeChannel): void {
    this.channels[channel].signal();
  }

  /**
   * Run `fn` whenever the channel may have news (another process's or this
   * process's signal, or the safety check). While anything is subscribed,
   * the hub keeps the process alive, as an open broker connection would.
   */
  subscribe(channel: WakeChannel, fn: () => void): () => void {
    return this.channels[channel].subscribe(fn);
  }
}
