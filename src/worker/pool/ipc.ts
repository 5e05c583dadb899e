/**
 * Messages between the worker process and its pool children. Jobs travel
 * as compact tuples: most request fields are null or repeat the task id, and
 * the bytes written to the pipe are a large part of the pool's cost.
 */
import type { RequestInfo } from '../context.ts';
import type { ExecJob, ExecOutcome } from '../execute.ts';

/** Messages from the worker process to a child. */
export type ParentMessage =
  | { t: 'init'; appModule: string; hostname: string }
  | { t: 'run'; jobs: WireJob[] }
  | { t: 'abort'; jobId: string };

/** Messages from a child to the worker process. */
export type ChildMessage =
  | { t: 'ready'; pid: number }
  | { t: 'init-error'; message: string }
  | { t: 'done'; results: Array<[string, ExecOutcome]> };

/** A job as sent over the pipe (see `encodeJob`). */
export type WireJob = [
  jobId: string,
  task: string,
  args: unknown[],
  softTimeLimitMs: number | null,
  id: string,
  retries: number,
  eta: number | null,
  expires: number | null,
  /** 0 when equal to id */
  rootId: string | 0,
  parentId: string | null,
  group: string | null,
  groupIndex: number | null,
  origin: string | null,
  /** 0 when equal to id */
  correlationId: string | 0,
  replyTo: string,
  queue: string,
  priority: number,
  redelivered: boolean,
  timeLimit: [number | null, number | null],
  kwargs: Record<string, unknown>,
  /** 0 when the request's args are the call args */
  requestArgs: unknown[] | 0,
];

/** Encode a job for the pipe (the hostname is sent once, at init). */
export function encodeJob(job: ExecJob): WireJob {
  const r = job.request;
  return [
    job.jobId,
    job.task,
    job.args,
    job.softTimeLimitMs ?? null,
    r.id,
    r.retries,
    r.eta,
    r.expires,
    r.rootId === r.id ? 0 : r.rootId,
    r.parentId,
    r.group,
    r.groupIndex,
    r.origin,
    r.correlationId === r.id ? 0 : r.correlationId,
    r.replyTo,
    r.deliveryInfo.queue,
    r.deliveryInfo.priority,
    r.deliveryInfo.redelivered,
    r.timeLimit,
    r.kwargs,
    r.args === job.args ? 0 : r.args,
  ];
}

/** Rebuild a job from its wire form. */
export function decodeJob(w: WireJob, hostname: string): ExecJob {
  const [jobId, task, args, soft, id, retries, eta, expires, rootId, parentId, group, groupIndex, origin, correlationId, replyTo, queue, priority, redelivered, timeLimit, kwargs, requestArgs] = w;
  const request: RequestInfo = {
    id,
    task,
    retries,
    eta,
    expires,
    rootId: rootId === 0 ? id : rootId,
    parentId,
    group,
    groupIndex,
    origin,
    correlationId: correlationId === 0 ? id : correlationId,
    replyTo,
    hostname,
    deliveryInfo: { queue, priority, redelivered },
    timeLimit,
    args: requestArgs === 0 ? args : requestArgs,
    kwargs,
  };
  return soft === null ? { jobId, task, args, request } : { jobId, task, args, request, softTimeLimitMs: soft };
}
