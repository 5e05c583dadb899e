/**
 * Queues: depth and dead letters from the broker, rates from events, the
 * oldest waiting message from `task-sent` events, and pause state.
 *
 * - Rate in counts `task-sent` (or, for a task whose sending was not seen,
 *   its `task-received`); rate out counts `task-started` (or, without
 *   `task_track_started`, the task's finish). A task's queue is the one
 *   its `task-sent` named; for a task seen only at a worker, the worker's
 *   queue when it consumes exactly one.
 * - Oldest message age: the broker interface has no peek, so it is the age
 *   of the oldest task sent to the queue and not yet received by a worker,
 *   as events tell it (known only when clients send `task-sent` events).
 * - Depth and dead letters are read from the broker at most every
 *   `cacheMs` (the queues view and `/metrics` share the reading).
 */
import { deadLetterId, type Broker } from '../../core/broker.ts';
import { createRateWindow } from './series.ts';
import type { QueueView } from './types.ts';

/** Dead letters counted per queue at most (the view says "1000+" past it). */
export const DEAD_LETTER_COUNT_CAP = 1000;
/** Pending tasks tracked per queue for the oldest age. */
const PENDING_CAP = 100_000;

export interface QueueTracker {
  sent(queue: string, id: string, at: number): void;
  /** A worker took the task (received/started/finished): it no longer waits in the queue. */
  taken(queue: string | undefined, id: string): void;
  rateIn(queue: string, at: number): void;
  rateOut(queue: string, at: number): void;
  /** Queues seen in events. */
  seen(): string[];
  views(queues: readonly string[], consumers: (queue: string) => string[], now: number): Promise<QueueView[]>;
  readonly paused: Map<string, string[]>;
  /** Local time of the last successful broker read (health). */
  readonly lastBrokerOkAt: number;
  readonly lastBrokerError: string | undefined;
  /** Drop cached broker readings (after an action changed them). */
  invalidate(): void;
}

export function createQueueTracker(options: { broker: () => Promise<Broker>; cacheMs?: number; maxQueues?: number }): QueueTracker {
  const cacheMs = options.cacheMs ?? 2000;
  const maxQueues = options.maxQueues ?? 1000;
  const inRate = createRateWindow(60, maxQueues);
  const outRate = createRateWindow(60, maxQueues);
  const pending = new Map<string, Map<string, number>>();
  const where = new Map<string, string>();
  const seenQueues = new Set<string>();
  const paused = new Map<string, string[]>();
  const cache = new Map<string, { at: number; depth: number; deadLetters: number; capped: boolean }>();
  let lastBrokerOkAt = 0;
  let lastBrokerError: string | undefined;

  const see = (q: string): boolean => {
    if (seenQueues.has(q)) return true;
    if (seenQueues.size >= maxQueues) return false;
    seenQueues.add(q);
    return true;
  };

  const read = async (queue: string): Promise<{ depth: number; deadLetters: number; capped: boolean }> => {
    const hit = cache.get(queue);
    if (hit && Date.now() - hit.at < cacheMs) return hit;
    try {
      const broker = await options.broker();
      const [depth, letters] = await Promise.all([broker.queueLength(queue), broker.deadLetters(queue, DEAD_LETTER_COUNT_CAP)]);
      const r = { at: Date.now(), depth, deadLetters: letters.length, capped: letters.length >= DEAD_LETTER_COUNT_CAP };
      cache.set(queue, r);
      lastBrokerOkAt = Date.now() / 1000;
      lastBrokerError = undefined;
      return r;
    } catch (err) {
      lastBrokerError = (err as Error).message;
      throw err;
    }
  };

  return {
    sent(queue, id, at) {
      if (!see(queue)) return;
      let p = pending.get(queue);
      if (!p) pending.set(queue, (p = new Map()));
      if (p.size >= PENDING_CAP) p.delete(p.keys().next().value as string);
      p.set(id, at);
      where.set(id, queue);
      if (where.size > PENDING_CAP * 4) where.delete(where.keys().next().value as string);
    },
    taken(queue, id) {
      const q = queue ?? where.get(id);
      where.delete(id);
      if (q) pending.get(q)?.delete(id);
    },
    rateIn: (queue, at) => {
      if (see(queue)) inRate.add(queue, at);
    },
    rateOut: (queue, at) => {
      if (see(queue)) outRate.add(queue, at);
    },
    seen: () => [...seenQueues],
    async views(queues, consumers, now) {
      return Promise.all(
        queues.map(async (name): Promise<QueueView> => {
          const r = await read(name);
          const v: QueueView = {
            name,
            depth: r.depth,
            rateIn: inRate.rate(name, now),
            rateOut: outRate.rate(name, now),
            deadLetters: r.deadLetters,
            paused: paused.has(name),
            consumers: consumers(name),
          };
          if (r.capped) v.deadLettersCapped = true;
          const p = pending.get(name);
          if (r.depth > 0 && p && p.size > 0) v.oldestAgeSeconds = Math.max(0, now - (p.values().next().value as number));
          return v;
        }),
      );
    },
    paused,
    get lastBrokerOkAt() {
      return lastBrokerOkAt;
    },
    get lastBrokerError() {
      return lastBrokerError;
    },
    invalidate: () => cache.clear(),
  };
}

export { deadLetterId };
