/**
 * Messages between a prefork supervisor and its child processes. Each child
 * runs a whole Worker (consumer and executor); the supervisor only starts,
 * watches, stops and, when one dies, recovers for it.
 */
import type { LossEntry, LossKind } from '../loss-ledger.ts';
import type { TaskEvent, WorkerStats } from '../types.ts';

/** The serializable part of WorkerOptions a child needs. */
export interface ChildWorkerOptions {
  queues: string[] | undefined;
  concurrency: number;
  prefetchMultiplier: number | undefined;
  nodeName: string;
  shutdownTimeoutMs: number | undefined;
  /** Send task events (`-E`); undefined: the app's setting. */
  taskEvents?: boolean | undefined;
  /** Limits changed by remote control since the node started (a replacement child starts with them). */
  overrides?: ChildOverrides;
}

/** Per-task limits set by remote control (`rate_limit`, `time_limit`), applied to the app before a child consumes. */
export interface ChildOverrides {
  rateLimits: Record<string, string | null>;
  timeLimits: Record<string, { soft: number | null; hard: number | null }>;
}

/** Supervisor → child. */
export type ToChild =
  /** `env`: secret variables, set into the child's process.env before the app module loads (never its environment block). */
  | { t: 'init'; env: Record<string, string>; appModule: string; options: ChildWorkerOptions; losses: Array<[string, LossEntry]> }
  /** Loss-ledger changes (loss-ledger.ts), sent before the messages concerned can come back. */
  | { t: 'losses'; entries: Array<[string, LossEntry]> }
  | { t: 'stop' }
  /** SIGHUP: re-read credentials from the environment and secret files. */
  | { t: 'reload' }
  /** A remote-control command the supervisor forwards (already admitted by its guard); answered by `control-reply`. */
  | { t: 'control'; seq: number; method: string; args: Record<string, unknown> };

/** Child → supervisor. */
export type FromChild =
  | { t: 'ready'; pid: number; owner: string | undefined }
  | { t: 'init-error'; message: string }
  /** Task events of one turn, one line each (see `encodeTaskEvent`): cheap to send and to skim. */
  | { t: 'events'; lines: string }
  | { t: 'stats'; stats: WorkerStats }
  /** The child counted a lost run of its own (a result it could not settle), or stored a final FAILURE. */
  | { t: 'loss'; id: string; kind: LossKind | 'final'; final: boolean }
  /** The answer to `reload`: what changed, or why the new credentials were refused. */
  | { t: 'reloaded'; changed?: { broker: boolean; backend: boolean }; error?: string }
  /** The reply of the command of `seq` (Celery's reply shape), or why it failed. */
  | { t: 'control-reply'; seq: number; result?: unknown; error?: string }
  | { t: 'stopped' };

/*
 * A started task is `s<TAB>key<TAB>hardLimitMs<TAB>id<TAB>task<TAB>late<TAB>group<TAB>parent`,
 * then, when either is present, `<TAB>replyTo<TAB>correlationId` (`rpc://` results; empty otherwise)
 * and `<TAB>canvas` (JSON of the canvas part of the request),
 * a finished one `f<TAB>key`, where key = id + tag. The supervisor keeps
 * started lines as they are and reads their fields only when it needs them
 * (a hard limit to watch, or a child that died).
 */
const SEP = '\t';

/** Key identifying one execution (a task id may run again after a retry, with a new delivery). */
export function taskEventKey(id: string, tag: string): string {
  return `${id} ${tag}`;
}

/** One event as a line (tabs and newlines in names cannot occur in ids and tags; task names are sanitised). */
export function encodeTaskEvent(e: TaskEvent): string {
  const key = taskEventKey(e.id, e.tag);
  if (e.type === 'finished') return `f${SEP}${key}`;
  const line = `s${SEP}${key}${SEP}${e.hardLimitMs ?? ''}${SEP}${e.id}${SEP}${clean(e.task)}${SEP}${e.lateAck ? '1' : '0'}${SEP}${clean(e.group)}${SEP}${clean(e.parentId)}`;
  // rpc:// results only: the reply route, so the supervisor's FAILURE for a lost task reaches its caller.
  const route = e.replyTo || e.canvas ? `${SEP}${clean(e.replyTo ?? null)}${SEP}${clean(e.correlationId ?? null)}` : '';
  // The canvas field is JSON, whose strings escape tabs and newlines.
  return `${line}${route}${e.canvas ? `${SEP}${e.canvas}` : ''}`;
}

function clean(v: string | null): string {
  return v === null ? '' : v.includes('\t') || v.includes('\n') ? v.replace(/[\t\n]/g, ' ') : v;
}

/** The fields of a started line. */
export function decodeStartedLine(line: string): Extract<TaskEvent, { type: 'started' }> & { key: string } {
  const [, key, hard, id, task, late, group, parent, replyTo, correlationId, canvas] = line.split(SEP);
  const tag = key!.slice(id!.length + 1);
  return {
    type: 'started',
    key: key!,
    id: id!,
    task: task!,
    tag,
    lateAck: late === '1',
    hardLimitMs: hard ? Number(hard) : undefined,
    group: group || null,
    parentId: parent || null,
    ...(replyTo ? { replyTo, correlationId: correlationId || id! } : {}),
    ...(canvas ? { canvas } : {}),
  };
}
