/**
 * Prometheus metrics of the dashboard (prom-client, on a registry the model
 * owns: nothing is added to the process-wide default registry, so two models
 * or an app's own metrics never collide).
 *
 * Label values come from events, which anyone able to publish on the event
 * exchange can write: task names are capped (`maxNames`, then `_other`) so a
 * flood of invented names cannot blow up the series count.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { securityCounters } from '../../observability/security-events.ts';

/** Everything `/metrics` reads when scraped. */
export interface MetricsSources {
  queueDepths(): Promise<Array<{ queue: string; depth: number; deadLetters: number }>>;
  storedCounts(): ReadonlyMap<string, ReadonlyMap<string, number>>;
  workersUp(): Array<{ worker: string; up: boolean }>;
  workerSecurity(): Map<string, Record<string, number>>;
  eventLagSeconds(): number;
  receiver(): { received: number; malformed: number; dropped: number };
}

export interface DashboardMetrics {
  /** A task reached `state` (counted on each transition). */
  transition(name: string | undefined, state: string): void;
  /** A task's runtime (task-succeeded `runtime`), seconds. */
  runtime(name: string | undefined, seconds: number): void;
  /** Event lag of one ingestion tick, seconds. */
  lag(seconds: number): void;
  text(): Promise<{ contentType: string; body: string }>;
}

export function createDashboardMetrics(sources: MetricsSources, options: { maxNames?: number; prefix?: string } = {}): DashboardMetrics {
  const prefix = options.prefix ?? 'celeriac_';
  const maxNames = options.maxNames ?? 500;
  const registry = new Registry();
  const names = new Set<string>();
  const label = (name: string | undefined): string => {
    const n = name ?? '';
    if (names.has(n)) return n;
    if (names.size < maxNames) {
      names.add(n);
      return n;
    }
    return '_other';
  };

  new Gauge({
    name: `${prefix}queue_depth`,
    help: 'Messages waiting in a queue (broker count).',
    labelNames: ['queue'],
    registers: [registry],
    async collect() {
      this.reset();
      const q = await sources.queueDepths().catch(() => []);
      for (const x of q) this.set({ queue: x.queue }, x.depth);
    },
  });
  new Gauge({
    name: `${prefix}queue_dead_letters`,
    help: 'Messages in a queue\'s dead-letter queue (counted up to 1,000).',
    labelNames: ['queue'],
    registers: [registry],
    async collect() {
      this.reset();
      const q = await sources.queueDepths().catch(() => []);
      for (const x of q) this.set({ queue: x.queue }, x.deadLetters);
    },
  });
  new Gauge({
    name: `${prefix}tasks`,
    help: 'Tasks in the dashboard store, by task name and state.',
    labelNames: ['name', 'state'],
    registers: [registry],
    collect() {
      this.reset();
      const merged = new Map<string, number>();
      for (const [name, byState] of sources.storedCounts()) {
        const n = label(name);
        for (const [state, count] of byState) {
          const key = `${n}\u0000${state}`;
          merged.set(key, (merged.get(key) ?? 0) + count);
        }
      }
      for (const [key, count] of merged) {
        const [name, state] = key.split('\u0000') as [string, string];
        this.set({ name, state }, count);
      }
    },
  });
  const transitions = new Counter({
    name: `${prefix}task_transitions_total`,
    help: 'Task state changes seen in events, by task name and new state.',
    labelNames: ['name', 'state'],
    registers: [registry],
  });
  const runtimes = new Histogram({
    name: `${prefix}task_runtime_seconds`,
    help: 'Task run time (task-succeeded runtime), by task name.',
    labelNames: ['name'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [registry],
  });
  new Gauge({
    name: `${prefix}worker_up`,
    help: '1 while a worker is online (heartbeats, or inspect replies), 0 once it is gone.',
    labelNames: ['worker'],
    registers: [registry],
    collect() {
      this.reset();
      for (const w of sources.workersUp()) this.set({ worker: w.worker }, w.up ? 1 : 0);
    },
  });
  new Gauge({
    name: `${prefix}dashboard_event_lag_seconds`,
    help: 'Seconds between receiving the oldest event of the last ingestion tick and writing it.',
    registers: [registry],
    collect() {
      this.set(sources.eventLagSeconds());
    },
  });
  const lagHistogram = new Histogram({
    name: `${prefix}dashboard_event_lag_histogram_seconds`,
    help: 'Event lag per ingestion tick.',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
    registers: [registry],
  });
  new Gauge({
    name: `${prefix}dashboard_events`,
    help: 'Events read by the dashboard since start, by outcome (received, malformed, dropped because ingestion fell behind).',
    labelNames: ['outcome'],
    registers: [registry],
    collect() {
      const s = sources.receiver();
      this.set({ outcome: 'received' }, s.received);
      this.set({ outcome: 'malformed' }, s.malformed);
      this.set({ outcome: 'dropped' }, s.dropped);
    },
  });
  new Counter({
    name: `${prefix}security_events_total`,
    help: 'Security events recorded by this process (dashboard logins, CSRF refusals, refused messages…), by kind.',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [kind, n] of Object.entries(securityCounters())) this.inc({ kind }, n);
    },
  });
  new Gauge({
    name: `${prefix}worker_security_events`,
    help: 'Security events counted by each Celeriac worker since it started (inspect stats: celeriac.security), by kind.',
    labelNames: ['worker', 'kind'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [worker, counters] of sources.workerSecurity()) for (const [kind, n] of Object.entries(counters)) this.set({ worker, kind }, n);
    },
  });

  return {
    transition: (name, state) => transitions.inc({ name: label(name), state }),
    runtime: (name, seconds) => {
      if (Number.isFinite(seconds) && seconds >= 0) runtimes.observe({ name: label(name) }, seconds);
    },
    lag: (seconds) => lagHistogram.observe(seconds),
    async text() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
