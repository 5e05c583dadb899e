import type { ExecJob, ExecOutcome } from '../execute.ts';

/** Where task functions run. */
export interface Pool {
  readonly kind: 'prefork' | 'solo';
  /** Start children (prefork) and load the app in them; rejects if the app fails to load. */
  start(): Promise<void>;
  /**
   * Run a job. `hardTimeLimitMs` kills the process running it when it
   * passes (prefork); the solo pool can only stop waiting. A task that
   * finishes synchronously yields its outcome directly (no promise).
   */
  run(job: ExecJob, hardTimeLimitMs?: number): ExecOutcome | Promise<ExecOutcome>;
  /** Abort a running job's signal (revoke with terminate). Returns false when it is not running. */
  abort(jobId: string): boolean;
  /**
   * Stop: wait up to `graceMs` for running jobs, then abort the rest and
   * return them (the caller settles them as lost; their outcomes, if they
   * ever come, are ignored).
   */
  close(graceMs: number): Promise<ExecJob[]>;
  /** Process ids of the children (empty for solo). */
  readonly pids: number[];
}
