/**
 * What OpenTelemetry tracing (`telemetryTracing`) costs, in one process
 * (in-memory broker, solo pool, results ignored, so the measured path is
 * the client's send and the worker's run, where the tracing hooks are):
 *
 *   node --import tsx bench/tracing-cost.ts [--tasks 20000] [--rounds 3] [--main /work/main] [--json]
 *
 * Variants, interleaved in every round, median of the rounds:
 *
 * | variant | what |
 * | --- | --- |
 * | main | the same workload on another checkout's src/ (`--main`, the code before tracing existed) |
 * | off | this checkout, `telemetryTracing` unset (the default) |
 * | on-noop | `telemetryTracing: true`, no SDK registered (the API's no-op tracer) |
 * | on | `telemetryTracing: true` with an SDK: every span recorded, W3C propagation, AsyncLocalStorage context, spans handed to a processor that drops them |
 *
 * Each drain: send `--tasks` tasks (100 at a time, awaited), then start a
 * worker and wait until the last one has run; tasks/s over both.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';

const { values } = parseArgs({
  options: { tasks: { type: 'string', default: '20000' }, rounds: { type: 'string', default: '3' }, main: { type: 'string', default: '/work/main' }, json: { type: 'boolean', default: false } },
});
const TASKS = Number(values.tasks);
const ROUNDS = Number(values.rounds);
const here = resolve(import.meta.dirname, '..');

interface Src {
  createApp: (o: Record<string, unknown>) => { task: (n: string, fn: () => unknown) => { delay: () => Promise<unknown> }; close: () => Promise<void> };
  createMemoryBroker: () => unknown;
  createWorker: (o: Record<string, unknown>) => { start: () => Promise<void>; stop: () => Promise<void> };
  createLogger: (o: Record<string, unknown>) => unknown;
}

async function load(root: string): Promise<Src> {
  const u = (p: string) => pathToFileURL(join(root, 'src', p)).href;
  const [app, broker, worker, logging] = await Promise.all([import(u('client/app.ts')), import(u('transport/memory/broker.ts')), import(u('worker/worker.ts')), import(u('observability/logging.ts'))]);
  return { createApp: app.createApp, createMemoryBroker: broker.createMemoryBroker, createWorker: worker.createWorker, createLogger: logging.createLogger };
}

/** Register an SDK globally (as an application would) for one drain; `disable` unregisters it so `on-noop` stays no-op. */
async function withSdk<T>(fn: () => Promise<T>): Promise<T> {
  const api = await import('@opentelemetry/api');
  const { AsyncLocalStorageContextManager } = await import('@opentelemetry/context-async-hooks');
  const { W3CTraceContextPropagator } = await import('@opentelemetry/core');
  const { BasicTracerProvider } = await import('@opentelemetry/sdk-trace-base');
  // A processor that drops finished spans: the cost measured is Celeriac's and the SDK's recording, not an exporter's.
  const drop = { onStart() {}, onEnd() {}, shutdown: async () => {}, forceFlush: async () => {} };
  api.trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [drop] }));
  api.propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  api.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  try {
    return await fn();
  } finally {
    api.trace.disable();
    api.propagation.disable();
    api.context.disable();
  }
}

async function drain(src: Src, tracing: boolean): Promise<number> {
  const logger = src.createLogger({ level: 'error' });
  // Development mode (no signing keys needed): a memory broker never leaves the process.
  const app = src.createApp({ env: { CELERIAC_ENV: 'development' }, broker: src.createMemoryBroker(), backend: null, taskIgnoreResult: true, logger, ...(tracing ? { telemetryTracing: true } : {}) });
  let done = 0;
  let finished!: () => void;
  const all = new Promise<void>((r) => (finished = r));
  const t = app.task('bench.noop', () => {
    if (++done === TASKS) finished();
  });
  const start = performance.now();
  for (let i = 0; i < TASKS; i += 100) {
    const batch: Promise<unknown>[] = [];
    for (let j = i; j < Math.min(TASKS, i + 100); j++) batch.push(t.delay());
    await Promise.all(batch);
  }
  const worker = src.createWorker({ app, pool: 'solo', concurrency: 100, shutdownTimeoutMs: 5000 });
  await worker.start();
  await all;
  const secs = (performance.now() - start) / 1000;
  await worker.stop();
  await app.close();
  return TASKS / secs;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const ours = await load(here);
const main = existsSync(join(values.main, 'src/client/app.ts')) ? await load(values.main) : undefined;
const variants: Array<[string, () => Promise<number>]> = [
  ...(main ? [['main', () => drain(main, false)] as [string, () => Promise<number>]] : []),
  ['off', () => drain(ours, false)],
  ['on-noop', () => drain(ours, true)],
  ['on', () => withSdk(() => drain(ours, true))],
];
const results: Record<string, number[]> = {};
// Warm-up (JIT, module loading), not counted.
for (const [, run] of variants) await run();
for (let r = 0; r < ROUNDS; r++) for (const [name, run] of variants) (results[name] ??= []).push(await run());
const table = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, Math.round(median(v))]));
if (values.json) console.log(JSON.stringify({ tasks: TASKS, rounds: ROUNDS, tasksPerSecond: table, all: results }));
else {
  console.log(`tracing cost: ${TASKS} tasks, median of ${ROUNDS} rounds (tasks/s, send + run)`);
  const base = table.off!;
  for (const [k, v] of Object.entries(table)) console.log(`  ${k.padEnd(8)} ${String(v).padStart(8)}  ${((v / base) * 100).toFixed(1)}% of off`);
}
