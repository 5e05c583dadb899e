/**
 * The reserve loop of a pull engine (Redis, SQLite): wait for room in the
 * prefetch window, fetch up to a batch, hand what came to the core, then
 * wait the engine's way (for a push notification, the next due message, or
 * not at all). Errors are reported and retried after a pause. Settling a
 * delivery wakes a loop that waits for room.
 */
import type { ConsumerCore, Held } from './consumer-core.ts';
import { Doorbell } from './doorbell.ts';

/** A pull engine's side of the loop. */
export interface PullSource {
  /** Most messages taken by one fetch. */
  readonly batch: number;
  /** Bell timers do not keep the process alive. */
  readonly unrefTimers: boolean;
  /** Also wake the loop on a settle that leaves room while it is not waiting for room (a waiting-for-work loop re-checks). */
  readonly wakeOnAnySettle: boolean;
  /** Work to do before the window check (Redis: recover replies lost in a reconnect); a promise is awaited. */
  prepare?(): Promise<void> | undefined;
  /** Whether `room` is worth a fetch now (Redis waits for a quarter of the window); default: any room. */
  enough?(room: number, unsettled: number): boolean;
  /**
   * Take up to `room` messages atomically and hand each to the core (via
   * `ConsumerCore.hold` / `malformed`). Returns how many were taken, or -1
   * to go round again at once. May throw: the error is reported and the
   * loop pauses.
   */
  fetch(room: number): Promise<number> | number;
  /** After a fetch: wait as the engine needs (nothing, a turn of the loop, or until woken). */
  afterFetch(taken: number, room: number): Promise<void> | undefined;
}

export class PullLoop {
  /** Rung by pushes, settles, `setPrefetch` and `stop`; the loop clears it before each fetch. */
  readonly bell = new Doorbell();
  /** The loop waits because the window is full (a settle must wake it). */
  private waitingForRoom = false;
  private done: Promise<void> | undefined;

  constructor(
    private readonly core: ConsumerCore<Held>,
    private readonly source: PullSource,
  ) {}

  /** Start the loop (once). */
  start(): void {
    this.done ??= this.run();
  }

  /** A delivery was settled: wake the loop if it waits for room (or, with `wakeOnAnySettle`, whenever there is room). */
  settled(): void {
    if (this.waitingForRoom || (this.source.wakeOnAnySettle && this.core.hasRoom())) this.bell.ring();
  }

  /** Wake the loop (new work, a wider window). */
  wake(): void {
    this.bell.ring();
  }

  /** Wait for the loop to end (after `core.cancelled` was set). */
  stop(): Promise<void> {
    this.bell.ring();
    return this.done ?? Promise.resolve();
  }

  private async run(): Promise<void> {
    const { core, source, bell } = this;
    const unref = source.unrefTimers;
    while (!core.cancelled) {
      try {
        const pending = source.prepare?.();
        if (pending) await pending;
      } catch (err) {
        if (core.cancelled) break;
        core.error(err);
        await bell.wait(500, unref);
        continue;
      }
      const room = core.room(source.batch);
      if (room <= 0 || (source.enough !== undefined && !source.enough(room, core.unsettled))) {
        bell.rung = false;
        this.waitingForRoom = true;
        await bell.wait(1000, unref);
        this.waitingForRoom = false;
        continue;
      }
      bell.rung = false;
      let taken: number;
      try {
        const r = source.fetch(room);
        taken = typeof r === 'number' ? r : await r;
      } catch (err) {
        if (core.cancelled) break;
        core.error(err);
        await bell.wait(500, unref);
        continue;
      }
      if (taken < 0) continue;
      if (core.cancelled) break;
      const after = source.afterFetch(taken, room);
      if (after) await after;
    }
  }
}
