import type { ExecJob, ExecOutcome } from '../execute.ts';

/** Messages from the worker process to a child. */
export type ParentMessage =
  | { t: 'init'; appModule: string }
  | { t: 'run'; jobs: ExecJob[] }
  | { t: 'abort'; jobId: string };

/** Messages from a child to the worker process. */
export type ChildMessage =
  | { t: 'ready'; pid: number }
  | { t: 'init-error'; message: string }
  | { t: 'done'; results: Array<[string, ExecOutcome]> };
