import type { ExecJob, ExecOutcome } from '../execute.ts';

/** Where task functions run. */
export interface Pool {
  /** Shown in the worker's ready line. */
  readonly kind: 'solo';
  /** Get ready to run jobs. */
  start(): Promise<void>;
  /**
   * Run a job. When `hardTimeLimitMs` passes the pool stops waiting and
   * yields a timeout (a prefork child's supervisor kills the process). A
   * task that finishes synchronously yields its outcome directly (no promise).
   */
  run(job: ExecJob, hardTimeLimitMs?: number): ExecOutcome | Promise<ExecOutcome>;
  /** Signal one running job to stop (remote control's revoke with terminate); the solo pool cannot kill it. */
  abort?(jobId: string, reason: Error): void;
  /**
   * Stop: wait up to `graceMs` for running jobs, then abort the rest and
   * return them (the caller settles them as lost; their outcomes, if they
   * ever come, are ignored).
   */
  close(graceMs: number): Promise<ExecJob[]>;
}
