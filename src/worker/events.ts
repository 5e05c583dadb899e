/**
 * A worker's Celery events: its heartbeat (`worker-online` at start,
 * `worker-heartbeat` every 2 s, `worker-offline` at stop, as Celery's
 * `Heart`) and its task events (`task-received` … `task-revoked`, as
 * Celery's `Request` and strategy send them), through the shared
 * `EventDispatcher` (buffered into `task.multi`).
 *
 * When Celery sends what: its worker's event dispatcher is enabled when
 * task events are on (`-E`, `worker_send_task_events`) or when its gossip
 * or heartbeat bootstep runs (both on by default), and its groups are then
 * `worker` only unless task events are on. Celeriac has no gossip, so the
 * worker-* events go out unless the heartbeat is turned off
 * (`--without-heartbeat`), and task events only with `-E` or
 * `workerSendTaskEvents` (or remote control's `enable_events`). Every task
 * hook is guarded by one boolean (`taskEvents`) at its call site, so with
 * task events off a task costs nothing more.
 */
import { loadavg, type } from 'node:os';
import { readFileSync } from 'node:fs';
import type { Broker } from '../core/broker.ts';
import type { Logger } from '../observability/logging.ts';
import { EventDispatcher, type LamportClock } from '../observability/event-dispatcher.ts';
import { EVENT_REPR_MAX, HEARTBEAT_FREQ_S, eventRepr, roundLoadavg, type TaskEventFields, type TaskEventType, type WorkerEventType, type WorkerStatus } from '../protocol/events.ts';
import { reprValue } from '../protocol/pyrepr.ts';
import { saferepr } from '../protocol/saferepr.ts';
import type { ExceptionInfo } from '../protocol/result-meta.ts';
import { toIsoUtc } from '../protocol/time.ts';
import type { TaskRequest } from '../protocol/task-message.ts';

export interface WorkerEventsOptions {
  broker: Broker;
  hostname: string;
  logger: Logger;
  /** Task events on at start. */
  taskEvents: boolean;
  /** Send worker-online/heartbeat/offline (default true, as Celery). */
  heartbeat?: boolean;
  /** Heartbeat interval, seconds (default 2, Celery's). */
  heartbeatIntervalS?: number;
  /** Event exchange name (default `celeryev`). */
  exchange?: string;
  /** Tasks running now, and accepted since start, for the heartbeat. */
  status?: () => { active: number; processed: number };
  clock?: LamportClock;
}

let version: string | undefined;
/** Celeriac's version, for `sw_ver`. */
function swVersion(): string {
  if (version === undefined) {
    try {
      version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? '0.0.0';
    } catch {
      version = '0.0.0';
    }
  }
  return version;
}

/** Python's `platform.system()` for Node's `os.type()`. */
function swSys(): string {
  const t = type();
  return t === 'Windows_NT' ? 'Windows' : t;
}

/** Python's repr of an exception from its record: `ValueError('bad value')`. */
export function exceptionRepr(exc: ExceptionInfo): string {
  const args = Array.isArray(exc.exc_message) ? exc.exc_message : [exc.exc_message];
  return `${exc.exc_type}(${args.map((a) => reprValue(a)).join(', ')})`;
}

/** An ISO time header as received (Python's isoformat, microseconds kept), else from epoch ms. */
function isoHeader(raw: unknown, ms: number | null): string | null {
  if (ms === null) return null;
  return typeof raw === 'string' ? raw : toIsoUtc(ms);
}

/** See the module comment. */
export class WorkerEvents {
  readonly dispatcher: EventDispatcher;
  private readonly heartbeat: boolean;
  private readonly freq: number;
  private readonly status: () => { active: number; processed: number };
  private timer: NodeJS.Timeout | undefined;
  private online = false;

  constructor(o: WorkerEventsOptions) {
    this.dispatcher = new EventDispatcher({ broker: o.broker, hostname: o.hostname, logger: o.logger, exchange: o.exchange, taskEvents: o.taskEvents, bufferTasks: true, clock: o.clock });
    this.heartbeat = o.heartbeat ?? true;
    this.freq = o.heartbeatIntervalS ?? HEARTBEAT_FREQ_S;
    this.status = o.status ?? (() => ({ active: 0, processed: 0 }));
  }

  /** Task events are on: every task hook checks this first. */
  get taskEvents(): boolean {
    return this.dispatcher.taskEvents;
  }

  /** Remote control's `enable_events` / `disable_events`. */
  setTaskEvents(on: boolean): void {
    this.dispatcher.setTaskEvents(on);
  }

  /** `worker-online`, then a `worker-heartbeat` every interval (when the heartbeat is on). */
  start(): void {
    if (!this.heartbeat || this.online) return;
    this.online = true;
    this.beat('worker-online');
    this.timer = setInterval(() => this.beat('worker-heartbeat'), this.freq * 1000);
    this.timer.unref();
  }

  /** Stop the heartbeat, send `worker-offline`, flush buffered task events and wait for the sends. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.dispatcher.flush();
    if (this.online) {
      this.online = false;
      this.beat('worker-offline');
    }
    await this.dispatcher.close();
  }

  /** One `worker-heartbeat` now (remote control's `heartbeat`), when the heartbeat runs. */
  sendHeartbeat(): void {
    if (this.online) this.beat('worker-heartbeat');
  }

  private beat(type: WorkerEventType): void {
    const { active, processed } = this.status();
    const s: WorkerStatus = { freq: this.freq, active, processed, loadavg: roundLoadavg(loadavg()), sw_ident: 'celeriac', sw_ver: swVersion(), sw_sys: swSys() };
    this.dispatcher.send(type, { freq: s.freq, active: s.active, processed: s.processed, loadavg: s.loadavg, sw_ident: s.sw_ident, sw_ver: s.sw_ver, sw_sys: s.sw_sys });
  }

  private task<T extends TaskEventType>(type: T, uuid: string, fields: TaskEventFields[T]): void {
    this.dispatcher.send(type, fields, uuid);
  }

  /** `task-received`: the message's own `argsrepr`/`kwargsrepr` (a sender may hide arguments there), capped and redacted. */
  received(req: TaskRequest): void {
    this.task('task-received', req.id, {
      name: req.task,
      // Celery's saferepr may run a few characters past its 1024 (`, ...` and the closing brackets): not cut again.
      args: eventRepr(req.argsrepr, EVENT_REPR_MAX + 64),
      kwargs: eventRepr(req.kwargsrepr, EVENT_REPR_MAX + 64),
      root_id: req.rootId,
      parent_id: req.parentId,
      retries: req.retries,
      eta: isoHeader(req.headers.eta, req.eta),
      expires: isoHeader(req.headers.expires, req.expires),
    });
  }

  started(req: TaskRequest): void {
    this.task('task-started', req.id, {});
  }

  /** `result`: Celery's `saferepr` of the value (`resultrepr_maxsize`, 1024), redacted; `runtime` in seconds. */
  succeeded(req: TaskRequest, value: unknown, runtimeMs: number): void {
    this.task('task-succeeded', req.id, { result: eventRepr(saferepr(value === undefined ? null : value, EVENT_REPR_MAX), EVENT_REPR_MAX + 64), runtime: runtimeMs / 1000 });
  }

  failed(req: TaskRequest, exc: ExceptionInfo, traceback: string | null): void {
    this.task('task-failed', req.id, { exception: eventRepr(exceptionRepr(exc)), traceback: eventRepr(traceback ?? '', Infinity) });
  }

  /** An unregistered task: Celery sends `task-failed` with `NotRegistered('name')` and no traceback. */
  notRegistered(req: TaskRequest): void {
    this.dispatcher.send('task-failed', { uuid: req.id, exception: eventRepr(`NotRegistered(${reprValue(req.task)})`) });
  }

  retried(req: TaskRequest, exc: ExceptionInfo | null | undefined, traceback: string | null): void {
    this.task('task-retried', req.id, { exception: exc ? eventRepr(exceptionRepr(exc)) : 'Retry()', traceback: eventRepr(traceback ?? '', Infinity) });
  }

  rejected(req: TaskRequest, requeue: boolean): void {
    this.task('task-rejected', req.id, { requeue });
  }

  revoked(req: TaskRequest, how: { terminated?: boolean; signum?: number | null; expired?: boolean }): void {
    this.task('task-revoked', req.id, { terminated: how.terminated ?? false, signum: how.signum ?? null, expired: how.expired ?? false });
  }
}

/**
 * The heartbeat of a prefork node, sent by its supervisor for the node
 * (its children send the task events, under the same node name): started
 * unless `heartbeat` is false; undefined then.
 */
export async function startNodeHeartbeat(
  rt: { broker(): Promise<Broker>; readonly settings: { eventExchange: string } },
  hostname: string,
  logger: Logger,
  o: { heartbeat?: boolean | undefined; heartbeatIntervalS?: number | undefined },
  stats: () => { active: number; processed: number },
): Promise<WorkerEvents | undefined> {
  if (o.heartbeat === false) return undefined;
  let broker: Broker;
  try {
    broker = await rt.broker();
  } catch (err) {
    logger.warn({ err }, 'no heartbeat events: the broker could not be reached');
    return undefined;
  }
  const events = new WorkerEvents({
    broker,
    hostname,
    logger,
    taskEvents: false,
    heartbeatIntervalS: o.heartbeatIntervalS,
    exchange: rt.settings.eventExchange,
    status: () => {
      const s = stats();
      return { active: s.active, processed: s.processed + s.active };
    },
  });
  events.start();
  return events;
}
