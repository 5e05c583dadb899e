/**
 * Can the dashboard keep up with the event stream? Synthetic Celery events
 * at rising rates through the whole ingestion path — broker fanout, the event
 * receiver (decode under limits, zod checks), the model's batching, the
 * SQLite store — and the sustained rate and lag of each step.
 *
 *     node --import tsx bench/dashboard-events.ts [--rates 1000,2500,5000,10000,20000] [--seconds 5] [--workers 50] [--broker redis://127.0.0.1:6379/9] [--store sqlite|memory] [--json]
 *
 * Each simulated worker publishes its task events the way Celery's does:
 * buffered into `task.multi` groups (a list per message) every 10 ms, plus
 * a heartbeat every 2 s; a client sends `task-sent`. A task is 4 events
 * (sent, received, started, succeeded). The default broker is the in-memory
 * engine (the publisher and the dashboard share this process and its CPU);
 * `--broker` runs it through a real Redis (kombu's pub/sub layout).
 *
 * Per step: events offered and applied per second, the lag of the ingestion
 * (receive → written to the store; the model's own gauge, sampled every
 * 50 ms: p50, p99 and max), the end-to-end time from publishing a task's
 * last event to seeing it in a list query (probed every 200 ms), events
 * dropped, and whether every task of the
 * step reached the store within 5 s of the step's end. A step is kept up with
 * when nothing was dropped and the p99 lag stayed under 1 s.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createApp } from '../src/client/app.ts';
import { eventExchange, type Broker } from '../src/core/broker.ts';
import { createDashboardModel } from '../src/dashboard/model/index.ts';
import { createLogger } from '../src/observability/logging.ts';
import { createMemoryBroker } from '../src/transport/memory/broker.ts';

const { values } = parseArgs({
  options: {
    rates: { type: 'string', default: '1000,2500,5000,10000,20000' },
    seconds: { type: 'string', default: '5' },
    workers: { type: 'string', default: '50' },
    broker: { type: 'string' },
    store: { type: 'string', default: 'sqlite' },
    json: { type: 'boolean' },
  },
});
const rates = values.rates.split(',').map(Number);
const seconds = Number(values.seconds);
const nWorkers = Number(values.workers);
const dir = mkdtempSync(join(tmpdir(), 'dash-events-'));
const logger = createLogger({ level: 'silent' });
const app = createApp(values.broker ? { brokerUrl: values.broker, logger, env: { NODE_ENV: 'test' } } : { broker: createMemoryBroker(), logger, env: { NODE_ENV: 'test' } });
const model = await createDashboardModel({
  app,
  inspectIntervalMs: 60_000,
  store: values.store === 'memory' ? { kind: 'memory', maxTasks: 1_000_000 } : { kind: 'sqlite', path: join(dir, 'tasks.db'), retentionDays: 30 },
});
// A second connection for the publisher, as separate worker processes would have.
const pubApp = values.broker ? createApp({ brokerUrl: values.broker, logger, env: { NODE_ENV: 'test' } }) : app;
const broker: Broker = await pubApp.broker();

const hosts = Array.from({ length: nWorkers }, (_, i) => `celery@bench-${i}`);
let seq = 0;
const NAMES = ['app.add', 'app.mul', 'billing.charge', 'mail.send'];

function message(host: string, events: object[]) {
  return {
    headers: { hostname: host },
    properties: { delivery_mode: 1, priority: 0, body_encoding: 'base64', delivery_info: { exchange: 'celeryev', routing_key: 'task.multi' }, delivery_tag: '' },
    contentType: 'application/json',
    contentEncoding: 'utf-8',
    body: Buffer.from(JSON.stringify(events)),
  };
}

/** The 4 events of one task, as Celery 5.2.6 sends them (fields and types). */
function taskEvents(host: string, now: number): Array<Record<string, unknown>> {
  const uuid = `b0000000-0000-4000-8000-${String(++seq).padStart(12, '0')}`;
  const name = NAMES[seq % NAMES.length]!;
  const common = { hostname: host, utcoffset: 0, pid: 4242, clock: seq };
  return [
    { ...common, hostname: 'gen1@client', uuid, name, args: `(${seq}, 2)`, kwargs: '{}', retries: 0, eta: null, expires: null, root_id: uuid, parent_id: null, queue: 'celery', exchange: '', routing_key: 'celery', timestamp: now, type: 'task-sent' },
    { ...common, uuid, name, args: `(${seq}, 2)`, kwargs: '{}', root_id: uuid, parent_id: null, retries: 0, eta: null, expires: null, timestamp: now + 0.001, type: 'task-received' },
    { ...common, uuid, timestamp: now + 0.002, type: 'task-started' },
    { ...common, uuid, result: String(seq + 2), runtime: 0.0012, timestamp: now + 0.003, type: 'task-succeeded' },
  ];
}

const results: Array<Record<string, unknown>> = [];
const inflight = new Set<Promise<void>>();
const pct = (s: number[], q: number): number => (s.length ? [...s].sort((a, b) => a - b)[Math.min(s.length - 1, Math.floor(q * s.length))]! : 0);

for (const rate of rates) {
  const before = model.ingestion!();
  const tick = 10;
  const tasksPerTick = (rate / 4) * (tick / 1000);
  let carry = 0;
  let offered = 0;
  const lags: number[] = [];
  let maxLag = 0;
  const sampler = setInterval(() => {
    const l = model.ingestion!().lastLagSeconds;
    lags.push(l);
    if (l > maxLag) maxLag = l;
  }, 50);
  // End to end: every 200 ms, the task just published is timed until it is SUCCESS in the store (a list query, as a page would).
  const e2e: number[] = [];
  let probing = true;
  const probe = (async () => {
    while (probing) {
      await new Promise((r) => setTimeout(r, 200));
      const id = `b0000000-0000-4000-8000-${String(seq).padStart(12, '0')}`;
      const t0 = performance.now();
      while (probing && performance.now() - t0 < 10_000) {
        if ((await model.tasks({ id, limit: 1 })).items[0]?.state === 'SUCCESS') {
          e2e.push((performance.now() - t0) / 1000);
          break;
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  })();
  const start = performance.now();
  let next = start;
  let lastBeat = 0;
  while (performance.now() - start < seconds * 1000) {
    carry += tasksPerTick;
    const n = Math.floor(carry);
    carry -= n;
    const now = Date.now() / 1000;
    // Spread this tick's tasks over the workers: one task.multi message per worker that has events.
    const byHost = new Map<string, object[]>();
    for (let i = 0; i < n; i++) {
      const host = hosts[(seq + i) % hosts.length]!;
      const list = byHost.get(host) ?? [];
      list.push(...taskEvents(host, now));
      byHost.set(host, list);
    }
    const sends: Promise<void>[] = [];
    for (const [host, events] of byHost) {
      offered += events.length;
      sends.push(broker.broadcast(eventExchange(), 'task.multi', message(host, events)));
    }
    if (now - lastBeat >= 2) {
      lastBeat = now;
      for (const host of hosts) {
        sends.push(broker.broadcast(eventExchange(), 'worker.heartbeat', { ...message(host, []), body: Buffer.from(JSON.stringify({ hostname: host, utcoffset: 0, pid: 4242, clock: seq, freq: 2.0, active: 1, processed: seq, loadavg: [0.5, 0.4, 0.3], sw_ident: 'py-celery', sw_ver: '5.2.6', sw_sys: 'Linux', timestamp: now, type: 'worker-heartbeat' })) }));
        offered++;
      }
    }
    // Not awaited tick by tick (a worker does not wait for the broker between buffers): the sends of
    // many ticks are in flight at once, bounded so a slow broker shows as a lower offered rate.
    for (const p of sends) {
      inflight.add(p);
      void p.finally(() => inflight.delete(p));
    }
    if (inflight.size > 2000) await Promise.all([...inflight]);
    next += tick;
    const wait = next - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  await Promise.all([...inflight]);
  const elapsed = (performance.now() - start) / 1000;
  // Every task of the step in the store (its last event applied): the backlog drains within 5 s or it fell behind.
  const expectTasks = seq;
  const drainStart = performance.now();
  let drained = false;
  while (performance.now() - drainStart < 5000) {
    if ((await model.tasks({ limit: 1 })).total >= expectTasks && model.ingestion!().pending === 0) {
      drained = true;
      break;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const drainMs = performance.now() - drainStart;
  clearInterval(sampler);
  probing = false;
  await probe;
  const after = model.ingestion!();
  const applied = after.received - before.received;
  const dropped = after.dropped - before.dropped;
  const r = {
    offeredPerSecond: Math.round(offered / elapsed),
    receivedPerSecond: Math.round(applied / elapsed),
    taskEventsApplied: after.taskEvents - before.taskEvents,
    dropped,
    lagP50: pct(lags, 0.5),
    lagP99: pct(lags, 0.99),
    lagMax: maxLag,
    endToEndP50: pct(e2e, 0.5),
    endToEndP99: pct(e2e, 0.99),
    drained,
    drainMs: Math.round(drainMs),
    keptUp: dropped === 0 && drained && pct(lags, 0.99) < 1,
  };
  results.push({ targetPerSecond: rate, ...r });
  console.log(
    `target ${String(rate).padStart(6)} ev/s: offered ${String(r.offeredPerSecond).padStart(6)}/s, received ${String(r.receivedPerSecond).padStart(6)}/s, dropped ${dropped}, lag p50 ${(r.lagP50 * 1000).toFixed(0)} ms p99 ${(r.lagP99 * 1000).toFixed(0)} ms max ${(r.lagMax * 1000).toFixed(0)} ms, publish→listed p50 ${(r.endToEndP50 * 1000).toFixed(0)} ms p99 ${(r.endToEndP99 * 1000).toFixed(0)} ms, all stored ${drained ? `${r.drainMs} ms after the step` : 'NOT within 5 s'} → ${r.keptUp ? 'kept up' : 'fell behind'}`,
  );
}

const sustained = results.filter((r) => r.keptUp).map((r) => r.offeredPerSecond as number);
console.log(`sustained: ${sustained.length ? Math.max(...sustained) : 0} events/s with ${nWorkers} workers (${model.ingestion!().taskEvents} task events, ${(await model.tasks({ limit: 1 })).total} tasks stored, store ${values.store})`);
if (values.json) console.log(JSON.stringify({ workers: nWorkers, store: values.store, broker: values.broker ? 'redis' : 'memory', steps: results }));
await model.close();
if (pubApp !== app) await pubApp.close();
await app.close();
rmSync(dir, { recursive: true, force: true });
