/**
 * The dashboard's model: what the dashboard knows and can do, with no idea
 * who is asking (permissions and the audit log are the server's).
 *
 * It reads the event stream (Celeriac and Python Celery workers alike),
 * folds task events into a bounded store in batches (ingest.ts), keeps
 * workers from heartbeats and periodic `inspect` rounds (workers.ts), queue
 * rates and chart buckets in memory (queues.ts, series.ts), and acts through
 * `app.control` and the broker (actions.ts). Task arguments, results and
 * errors leave it masked unless the caller passes `clear: true` (redact.ts).
 */
import { createEventReceiver, type EventReceiver } from '../../client/events/receiver.ts';
import { isTaskEvent, isWorkerEvent, type CeleryEvent } from '../../client/events/types.ts';
import { ConfigError, ValidationError } from '../../errors.ts';
import { createActions } from './actions.ts';
import { createBeatReader } from './beat.ts';
import { createIngestor, type AppliedEvent } from './ingest.ts';
import { createDashboardMetrics } from './metrics.ts';
import { createQueueTracker } from './queues.ts';
import { createSeries } from './series.ts';
import type { StoredTask } from './store.ts';
import type { DashboardModel, DashboardModelOptions, DeadLetterView, LiveUpdate } from './types.ts';
import { shown } from './redact.ts';
import { detailOf, openStore, row } from './views.ts';
import { createWorkerTracker } from './workers.ts';

export type * from './types.ts';
export { createMemoryStore } from './store-memory.ts';
export { createSqliteStore } from './store-sqlite.ts';
export type { TaskStore, StoredTask } from './store.ts';
export { openStore } from './views.ts';

const DAY = 86_400;
/** A name filter matching more names than this is run as a substring scan. */
const MAX_NAMES_RESOLVED = 24;
/** Most task updates pushed to live listeners per second (beyond it, the UI refetches on `stats`). */
const LIVE_TASKS_PER_SECOND = 200;

/**
 * Build the dashboard's model: consumes events, refreshes `inspect`, keeps
 * task history in a bounded store, and performs actions through `app.control`.
 * Resolves once the event subscription is bound.
 */
export async function createDashboardModel(options: DashboardModelOptions): Promise<DashboardModel> {
  const { app } = options;
  if (!app) throw new ConfigError('createDashboardModel needs an app', { hint: 'pass { app: createApp({ brokerUrl }) }' });
  const inspectIntervalMs = Math.max(500, options.inspectIntervalMs ?? 10_000);
  const retentionSeconds = options.store?.kind === 'sqlite' && options.store.retentionDays !== undefined ? options.store.retentionDays * DAY : undefined;
  const now = (): number => Date.now() / 1000;
  const store = openStore(options.store);
  const listeners = new Set<(u: LiveUpdate) => void>();
  const emit = (u: LiveUpdate): void => {
    for (const l of listeners) {
      try {
        l(u);
      } catch {
        // A broken listener must not stop ingestion.
      }
    }
  };
  const series = createSeries();
  const queues = createQueueTracker({ broker: () => app.broker() });
  // Paused queues and the workers to resume, kept with the store so a restarted dashboard still knows.
  const PAUSED_KEY = 'paused-queues';
  try {
    const saved = JSON.parse(store.getMeta(PAUSED_KEY) ?? '{}') as Record<string, unknown>;
    for (const [queue, list] of Object.entries(saved)) {
      if (Array.isArray(list)) queues.paused.set(queue, list.filter((w): w is string => typeof w === 'string'));
    }
  } catch {
    // An unreadable record is ignored: the queues show as not paused.
  }
  const savePaused = (): void => {
    try {
      store.setMeta(PAUSED_KEY, queues.paused.size ? JSON.stringify(Object.fromEntries(queues.paused)) : undefined);
    } catch (err) {
      app.logger.warn({ err }, 'dashboard: could not save the paused queues');
    }
  };
  const workers = createWorkerTracker({ control: () => app.control, intervalSeconds: inspectIntervalMs / 1000, timeoutMs: Math.min(2000, inspectIntervalMs) });
  let receiver: EventReceiver | undefined;
  let receiverRunning = false;
  let receiverError: string | undefined;
  let lastEventAt = 0;
  let closed = false;
  let closing: Promise<void> | undefined;
  const aborter = new AbortController();
  const onAbort = (): void => void model.close();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const receiverTotals = { received: 0, malformed: 0, dropped: 0 };
  let eventsThisSecond = 0;
  let liveBudget = LIVE_TASKS_PER_SECOND;
  let eventsPerSecond = 0;

  const metrics = createDashboardMetrics({
    queueDepths: async () => (await model.queues()).map((q) => ({ queue: q.name, depth: q.depth, deadLetters: q.deadLetters })),
    storedCounts: () => store.countsByNameState(),
    workersUp: () => workers.views(now()).map((w) => ({ worker: w.hostname, up: w.status === 'online' })),
    workerSecurity: () => workers.securityCounters(),
    eventLagSeconds: () => ingestor.stats.lastLagSeconds,
    receiver: () => {
      const s = receiver?.stats;
      return { received: receiverTotals.received + (s?.received ?? 0), malformed: receiverTotals.malformed + (s?.malformed ?? 0), dropped: receiverTotals.dropped + (s?.dropped ?? 0) };
    },
  });

  /** The queue of a task seen only at a worker: that worker's queue when it consumes exactly one. */
  const queueOfTask = (t: StoredTask): string | undefined => {
    if (t.queue) return t.queue;
    const q = t.worker ? workers.queuesOf(t.worker) : undefined;
    return q?.length === 1 ? q[0] : undefined;
  };

  const onApplied = ({ event, subject, task, before, finishedNow }: AppliedEvent): void => {
    const at = event.local_received;
    if (task.state !== before) metrics.transition(task.name, task.state);
    const q = queueOfTask(task);
    switch (subject) {
      case 'sent':
        if (task.queue) {
          queues.sent(task.queue, task.id, at);
          queues.rateIn(task.queue, at);
        }
        break;
      case 'received':
        series.record('received', task.name, at);
        workers.count(event.hostname, 'received');
        if (before === undefined && q) queues.rateIn(q, at);
        queues.taken(q, task.id);
        break;
      case 'started':
        if (q) queues.rateOut(q, at);
        queues.taken(q, task.id);
        break;
      case 'retried':
        series.record('retried', task.name, at);
        break;
    }
    if (finishedNow) {
      queues.taken(q, task.id);
      if (task.started === undefined && q && subject !== 'revoked') queues.rateOut(q, at);
      const latency = task.received !== undefined && task.finished !== undefined ? task.finished - task.received : undefined;
      if (subject === 'succeeded') {
        series.record('succeeded', task.name, at, latency);
        workers.count(event.hostname, 'succeeded');
      } else if (subject === 'failed') {
        series.record('failed', task.name, at, latency);
        workers.count(event.hostname, 'failed');
      }
    }
    if (subject === 'succeeded' && typeof event.runtime === 'number') metrics.runtime(task.name, event.runtime);
  };

  const ingestor = createIngestor({
    store,
    onApplied,
    onFlushed: ({ tasks, maxLagSeconds }) => {
      metrics.lag(maxLagSeconds);
      if (listeners.size === 0 || liveBudget <= 0) return;
      const send = tasks.slice(-liveBudget);
      liveBudget -= send.length;
      for (const t of send) emit({ kind: 'task', task: row(t, false) });
    },
    onError: (err) => app.logger.error({ err }, 'dashboard: writing task events to the store failed; this tick is lost'),
  });

  const lastWorkerEmit = new Map<string, number>();
  const onEvent = (ev: CeleryEvent): void => {
    lastEventAt = now();
    eventsThisSecond++;
    if (isWorkerEvent(ev) || isTaskEvent(ev)) workers.apply(ev);
    if (isTaskEvent(ev)) ingestor.push(ev);
    if (isWorkerEvent(ev) && listeners.size > 0) {
      // At most one update per worker per second: heartbeats of many workers must not flood the UI.
      const last = lastWorkerEmit.get(ev.hostname) ?? 0;
      if (lastEventAt - last >= 1 || ev.type !== 'worker-heartbeat') {
        lastWorkerEmit.set(ev.hostname, lastEventAt);
        if (lastWorkerEmit.size > 10_000) lastWorkerEmit.delete(lastWorkerEmit.keys().next().value as string);
        const v = workers.view(ev.hostname, lastEventAt);
        if (v) emit({ kind: 'worker', worker: v });
      }
    }
  };

  /** Read events until closed; resubscribe after a failure. */
  const runReceiver = async (): Promise<void> => {
    let firstReady: (() => void) | undefined;
    let firstFailed: ((err: unknown) => void) | undefined;
    const first = new Promise<void>((resolve, reject) => {
      firstReady = resolve;
      firstFailed = reject;
    });
    void (async () => {
      let attempt = 0;
      while (!closed) {
        const r = createEventReceiver({
          app,
          signal: aborter.signal,
          maxBuffered: 100_000,
          onMalformed: ({ reason }) => app.logger.debug?.({ reason: reason.slice(0, 200) }, 'dashboard: malformed event dropped'),
          onError: (err) => (receiverError = err.message),
        });
        receiver = r;
        try {
          await r.ready;
          receiverRunning = true;
          receiverError = undefined;
          attempt = 0;
          firstReady?.();
          for await (const ev of r) onEvent(ev);
        } catch (err) {
          receiverError = (err as Error).message;
          firstFailed?.(err);
        } finally {
          receiverRunning = false;
          receiverTotals.received += r.stats.received;
          receiverTotals.malformed += r.stats.malformed;
          receiverTotals.dropped += r.stats.dropped;
          receiver = undefined;
          firstReady = undefined;
          firstFailed = undefined;
        }
        if (closed) break;
        attempt++;
        await new Promise((res) => setTimeout(res, Math.min(30_000, 500 * 2 ** Math.min(attempt, 6))).unref?.());
      }
    })();
    return first;
  };

  const timers: NodeJS.Timeout[] = [];
  const every = (ms: number, fn: () => unknown): void => {
    const t = setInterval(() => {
      try {
        const r = fn();
        if (r instanceof Promise) r.catch(() => undefined);
      } catch {
        // Background work retries on its next turn.
      }
    }, ms);
    t.unref();
    timers.push(t);
  };

  let refreshing: Promise<void> | undefined;
  const refreshWorkers = (): Promise<void> => {
    refreshing ??= workers.refresh().finally(() => (refreshing = undefined));
    return refreshing;
  };

  const knownQueues = (): string[] => {
    const set = new Set<string>([app.settings.taskDefaultQueue, ...(options.queues ?? []), ...workers.queues(), ...queues.seen(), ...queues.paused.keys()]);
    return [...set].filter(Boolean).sort();
  };

  const pruneOnce = (): void => {
    // Small batches until nothing is left, each its own transaction: ingestion writes in between.
    const olderThan = retentionSeconds !== undefined ? now() - retentionSeconds : undefined;
    for (let i = 0; i < 20; i++) if (store.prune({ ...(olderThan !== undefined ? { olderThan } : {}), batch: 500 }) === 0) break;
  };

  const beat = options.beat === false ? undefined : createBeatReader(options.app, options.beat ?? {});
  const model: DashboardModel = {
    workers: () => workers.views(now()),
    worker: (hostname) => workers.view(hostname, now()),

    async tasks(query) {
      const limit = Number.isFinite(query.limit) ? Math.min(500, Math.max(1, Math.floor(query.limit!))) : 50;
      if (query.from !== undefined && !Number.isFinite(query.from)) throw new ValidationError('from must be epoch seconds', { field: 'from' });
      if (query.to !== undefined && !Number.isFinite(query.to)) throw new ValidationError('to must be epoch seconds', { field: 'to' });
      let names: string[] | undefined;
      let nameContains: string | undefined;
      if (query.name !== undefined && query.name !== '') {
        const matching = store.names().filter((n) => n.includes(query.name!));
        if (matching.length <= MAX_NAMES_RESOLVED) names = matching;
        else nameContains = query.name;
      }
      const page = store.query({
        limit,
        ...(query.id ? { id: query.id } : {}),
        ...(names ? { names } : {}),
        ...(nameContains !== undefined ? { nameContains } : {}),
        ...(query.state ? { state: query.state } : {}),
        ...(query.worker ? { worker: query.worker } : {}),
        ...(query.from !== undefined ? { from: query.from } : {}),
        ...(query.to !== undefined ? { to: query.to } : {}),
        ...(query.cursor ? { cursor: query.cursor } : {}),
      });
      const clear = query.clear === true;
      return {
        items: page.items.map((t) => row(t, clear)),
        total: page.total,
        ...(page.totalIsEstimate ? { totalIsEstimate: true } : {}),
        ...(page.nextCursor ? { nextCursor: page.nextCursor } : {}),
      };
    },

    async task(id, opts = {}) {
      if (typeof id !== 'string' || id.length === 0 || id.length > 255) return undefined;
      ingestor.flush();
      const t = store.get(id);
      if (!t) return undefined;
      return detailOf(t, store.children(id), opts.clear === true);
    },

    taskNames: () => [...new Set([...store.names(), ...workers.registered()])].sort(),

    async queues() {
      return queues.views(knownQueues(), (q) => workers.consumersOf(q), now());
    },

    async deadLetters(queue, opts = {}) {
      if (typeof queue !== 'string' || queue.length === 0 || queue.length > 255) return [];
      const limit = Number.isFinite(opts.limit) ? Math.min(1000, Math.max(1, Math.floor(opts.limit!))) : 100;
      const clear = opts.clear === true;
      const letters = await (await app.broker()).deadLetters(queue, limit);
      return letters.map((d): DeadLetterView => {
        const headers = d.message?.headers ?? {};
        const v: DeadLetterView = { id: (typeof headers.id === 'string' ? headers.id : typeof d.message?.properties.correlation_id === 'string' ? d.message.properties.correlation_id : '') || '(unknown)', reason: d.reason };
        if (typeof headers.task === 'string') v.name = headers.task;
        if (d.at) v.at = d.at / 1000;
        const args = shown(typeof headers.argsrepr === 'string' ? headers.argsrepr : undefined, 'repr', clear);
        if (args !== undefined) v.args = args;
        const kwargs = shown(typeof headers.kwargsrepr === 'string' ? headers.kwargsrepr : undefined, 'repr', clear);
        if (kwargs !== undefined) v.kwargs = kwargs;
        if (d.truncated) v.truncated = true;
        return v;
      });
    },

    async series({ from, bucketSeconds, taskName }) {
      ingestor.flush();
      const to = now();
      const start = Number.isFinite(from) ? Math.max(from, to - DAY) : to - 3600;
      return series.points({ from: start, to, ...(bucketSeconds !== undefined ? { bucketSeconds } : {}), ...(taskName !== undefined ? { taskName } : {}) });
    },

    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },

    actions: createActions({
      app,
      queues: async () => knownQueues(),
      queueOf: (id) => {
        const t = store.get(id);
        return t ? queueOfTask(t) : undefined;
      },
      consumersOf: async (queue) => {
        await refreshWorkers().catch(() => undefined);
        return workers.consumersOf(queue);
      },
      paused: queues.paused,
      changed: () => {
        savePaused();
        queues.invalidate();
        void refreshWorkers().catch(() => undefined);
      },
    }),

    metrics: () => metrics.text(),

    ...(beat ? { beat: () => beat.read() } : {}),

    ingestion() {
      const r = receiver?.stats;
      const st = ingestor.stats;
      return {
        received: receiverTotals.received + (r?.received ?? 0),
        malformed: receiverTotals.malformed + (r?.malformed ?? 0),
        dropped: receiverTotals.dropped + (r?.dropped ?? 0),
        taskEvents: st.taskEvents,
        pending: ingestor.pending,
        flushes: st.flushes,
        writeErrors: st.writeErrors,
        lastLagSeconds: st.lastLagSeconds,
        maxLagSeconds: st.maxLagSeconds,
        eventsPerSecond,
      };
    },

    health() {
      const t = now();
      const brokerOk = queues.lastBrokerOkAt > 0 && t - queues.lastBrokerOkAt < Math.max(30, (3 * inspectIntervalMs) / 1000);
      const eventsRecent = lastEventAt > 0 && t - lastEventAt < 120;
      const ready = !closed && brokerOk && (receiverRunning || eventsRecent);
      const parts = [
        closed ? 'closed' : undefined,
        brokerOk ? 'broker connected' : `broker not reachable${queues.lastBrokerError ? ` (${queues.lastBrokerError.slice(0, 200)})` : ''}`,
        receiverRunning ? 'event receiver running' : `event receiver stopped${receiverError ? ` (${receiverError.slice(0, 200)})` : ''}`,
        lastEventAt ? `last event ${Math.round(t - lastEventAt)} s ago` : 'no event yet',
        `event lag ${ingestor.stats.lastLagSeconds.toFixed(3)} s`,
      ].filter(Boolean);
      return { live: !closed, ready, detail: parts.join('; ') };
    },

    close() {
      // One shutdown, awaited by every caller: the CLI aborts the signal (which starts it) and then awaits
      // close() before closing the app; returning early there closed the broker under a receiver still
      // unsubscribing, which never finished, and left the beat store's connection holding the process open.
      closing ??= (async () => {
        closed = true;
        options.signal?.removeEventListener('abort', onAbort);
        for (const t of timers) clearInterval(t);
        aborter.abort();
        await receiver?.close().catch(() => undefined);
        await beat?.close();
        ingestor.close();
        store.close();
        listeners.clear();
      })();
      return closing;
    },
  };

  try {
    // The broker first: a dashboard that cannot reach it should fail to start with that error.
    await app.broker();
    await runReceiver();
    // First readings now, so the first page is not empty of workers and queues.
    await Promise.allSettled([refreshWorkers(), queues.views(knownQueues(), () => [], now())]);
  } catch (err) {
    await model.close();
    throw err;
  }

  every(inspectIntervalMs, refreshWorkers);
  // Health: one broker reading per interval even when nobody looks at the queues.
  every(inspectIntervalMs, () => queues.views([app.settings.taskDefaultQueue], () => [], now()));
  every(1000, () => {
    eventsPerSecond = eventsThisSecond;
    eventsThisSecond = 0;
    liveBudget = LIVE_TASKS_PER_SECOND;
    if (listeners.size > 0) emit({ kind: 'stats', eventsPerSecond, tasks: store.size(), workers: workers.views(now()).filter((w) => w.status === 'online').length });
  });
  if (retentionSeconds !== undefined || store.kind === 'sqlite') {
    pruneOnce();
    every(5000, pruneOnce);
  }
  if (options.signal?.aborted) await model.close();
  return model;
}
