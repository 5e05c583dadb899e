/**
 * Rows from the other broker benchmarks (`--with sqlite,amqp`). A producer
 * that prints `{"rows": [{system, workload, median, min, max, unit}]}` as its
 * last JSON line is taken as it is; the shapes that bench/sqlite-throughput.ts
 * and bench/amqp-throughput.ts print today are mapped here.
 */
import { median, type Row } from './common.ts';

export interface ExtraProducer {
  file: string;
  args(smoke: boolean, rounds: number): string[];
  toRows(json: Record<string, unknown>): Row[];
}

const r = (system: string, workload: string, values: number[], unit: string): Row => ({
  system,
  workload,
  median: Math.round(median(values) * 10) / 10,
  min: Math.round(Math.min(...values) * 10) / 10,
  max: Math.round(Math.max(...values) * 10) / 10,
  unit,
});

const num = (v: unknown): number[] => (Array.isArray(v) ? v.filter((x): x is number => typeof x === 'number') : typeof v === 'number' ? [v] : []);

export const EXTRA_PRODUCERS: Record<string, ExtraProducer> = {
  sqlite: {
    file: 'sqlite-throughput.ts',
    args: (smoke) => ['--json', ...(smoke ? ['--tasks', '300', '--workers', '1'] : [])],
    toRows(j) {
      const rows: Row[] = [];
      const add = (w: string, v: unknown): void => {
        const xs = num(v);
        if (xs.length) rows.push(r('celeriac-sqlite', w, xs, 'tasks/s'));
      };
      add('enqueue-serial', j.enqueueSingle);
      add('enqueue-bulk (100 per transaction)', j.enqueueBatched);
      add('drain (in-process consumer)', j.drainRaw);
      for (const [w, v] of Object.entries((j.drainWorkers as Record<string, unknown>) ?? {})) add(`drain (${w} worker process${w === '1' ? '' : 'es'})`, v);
      return rows;
    },
  },
  amqp: {
    file: 'amqp-throughput.ts',
    args: (smoke, rounds) => ['--json', '--runs', String(smoke ? 1 : rounds), ...(smoke ? ['--messages', '300'] : [])],
    toRows(j) {
      const raw = (j.raw ?? {}) as Record<string, Record<string, unknown>>;
      const rows: Row[] = [];
      const add = (system: string, w: string, v: unknown): void => {
        const xs = num(v);
        if (xs.length) rows.push(r(system, w, xs, 'msgs/s'));
      };
      add('amqp-floor', 'send (confirms)', raw.floor?.send);
      add('amqp-floor', 'drain (prefetch 100, acks)', raw.floor?.drain);
      add('celeriac-amqp', 'send (confirms)', raw.celeriac?.send);
      add('celeriac-amqp', 'drain (prefetch 100, acks)', raw.celeriac?.drain);
      add('celeriac-amqp', 'enqueue-bulk (sendMany)', raw.app?.send);
      return rows;
    },
  },
};

/** Rows from a producer's last JSON line. */
export function extraRows(name: string, json: Record<string, unknown>): Row[] {
  if (Array.isArray(json.rows)) return json.rows as Row[];
  const p = EXTRA_PRODUCERS[name];
  if (!p) throw new Error(`no row mapping for ${name}; print {"rows": [...]} as the last JSON line`);
  const rows = p.toRows(json);
  if (rows.length === 0) throw new Error(`${name}: no rows found in its JSON output`);
  return rows;
}
