/**
 * Chart data and rates, kept in memory as events are applied.
 *
 * - `createSeries`: counts per 10-second base bucket (succeeded, failed,
 *   retried, received) for all tasks and per task name, and latency samples
 *   (received → finished, sender's clock) for the p50/p95; a chart's bucket
 *   is the sum of its base buckets. Kept for `retentionSeconds` (24 h);
 *   at most `maxSamples` latencies per base bucket (reservoir sampling, so
 *   quantiles stay fair under load) and `maxNames` names.
 * - `createRateWindow`: events per second over the last minute, by key.
 */
import type { SeriesPoint } from './types.ts';

export const BASE_BUCKET_SECONDS = 10;

interface Bucket {
  succeeded: number;
  failed: number;
  retried: number;
  received: number;
  samples: number[];
  /** Latencies seen, for reservoir sampling. */
  seen: number;
}

export type SeriesKind = 'succeeded' | 'failed' | 'retried' | 'received';

export interface Series {
  record(kind: SeriesKind, name: string | undefined, at: number, latencySeconds?: number): void;
  points(options: { from: number; to: number; bucketSeconds?: number; taskName?: string }): SeriesPoint[];
}

const empty = (): Bucket => ({ succeeded: 0, failed: 0, retried: 0, received: 0, samples: [], seen: 0 });

function quantile(sorted: readonly number[], q: number): number | undefined {
  if (sorted.length === 0) return undefined;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export function createSeries(options: { retentionSeconds?: number; maxSamples?: number; maxNames?: number } = {}): Series {
  const retention = options.retentionSeconds ?? 24 * 3600;
  const maxSamples = options.maxSamples ?? 128;
  const maxNames = options.maxNames ?? 500;
  const all = new Map<number, Bucket>();
  const byName = new Map<string, Map<number, Bucket>>();
  let lastPrune = 0;

  const add = (map: Map<number, Bucket>, index: number, kind: SeriesKind, latency: number | undefined): void => {
    let b = map.get(index);
    if (!b) map.set(index, (b = empty()));
    b[kind]++;
    if (latency !== undefined && Number.isFinite(latency) && latency >= 0) {
      b.seen++;
      if (b.samples.length < maxSamples) b.samples.push(latency);
      else {
        const j = Math.floor(Math.random() * b.seen);
        if (j < maxSamples) b.samples[j] = latency;
      }
    }
  };

  const prune = (nowIndex: number): void => {
    const oldest = nowIndex - Math.ceil(retention / BASE_BUCKET_SECONDS);
    for (const map of [all, ...byName.values()]) for (const k of map.keys()) if (k < oldest) map.delete(k);
    for (const [name, map] of byName) if (map.size === 0) byName.delete(name);
  };

  return {
    record(kind, name, at, latency) {
      const index = Math.floor(at / BASE_BUCKET_SECONDS);
      add(all, index, kind, latency);
      const key = name ?? '';
      let named = byName.get(key);
      if (!named && byName.size < maxNames) byName.set(key, (named = new Map()));
      if (named) add(named, index, kind, latency);
      if (index - lastPrune > 60) {
        lastPrune = index;
        prune(index);
      }
    },
    points({ from, to, bucketSeconds = 60, taskName }) {
      const size = Math.max(BASE_BUCKET_SECONDS, Math.round(bucketSeconds / BASE_BUCKET_SECONDS) * BASE_BUCKET_SECONDS);
      const map = taskName === undefined ? all : byName.get(taskName);
      const start = Math.floor(from / size) * size;
      const out: SeriesPoint[] = [];
      // At most 10,000 points: a chart asking for more is asking for something else.
      for (let t = start; t <= to && out.length < 10_000; t += size) {
        const p: SeriesPoint = { t, succeeded: 0, failed: 0, retried: 0, received: 0 };
        const samples: number[] = [];
        for (let i = t / BASE_BUCKET_SECONDS; i < (t + size) / BASE_BUCKET_SECONDS; i++) {
          const b = map?.get(i);
          if (!b) continue;
          p.succeeded += b.succeeded;
          p.failed += b.failed;
          p.retried += b.retried;
          p.received += b.received;
          samples.push(...b.samples);
        }
        samples.sort((a, b) => a - b);
        const p50 = quantile(samples, 0.5);
        const p95 = quantile(samples, 0.95);
        if (p50 !== undefined) p.latencyP50 = p50;
        if (p95 !== undefined) p.latencyP95 = p95;
        out.push(p);
      }
      return out;
    },
  };
}

/** Events per second over the last `windowSeconds` (default 60), by key, in one-second slots. */
export interface RateWindow {
  add(key: string, at: number, n?: number): void;
  rate(key: string, now: number): number;
  keys(): string[];
}

export function createRateWindow(windowSeconds = 60, maxKeys = 10_000): RateWindow {
  const slots = new Map<string, { counts: Float64Array; seconds: Float64Array }>();
  return {
    add(key, at, n = 1) {
      let s = slots.get(key);
      if (!s) {
        if (slots.size >= maxKeys) return;
        slots.set(key, (s = { counts: new Float64Array(windowSeconds), seconds: new Float64Array(windowSeconds).fill(-1) }));
      }
      const sec = Math.floor(at);
      const i = sec % windowSeconds;
      if (s.seconds[i] !== sec) {
        s.seconds[i] = sec;
        s.counts[i] = 0;
      }
      s.counts[i]! += n;
    },
    rate(key, now) {
      const s = slots.get(key);
      if (!s) return 0;
      const sec = Math.floor(now);
      let total = 0;
      for (let i = 0; i < windowSeconds; i++) if (s.seconds[i]! > sec - windowSeconds && s.seconds[i]! <= sec) total += s.counts[i]!;
      return total / windowSeconds;
    },
    keys: () => [...slots.keys()],
  };
}
