/**
 * The solo pool runs tasks in the worker process itself. It has no
 * isolation and cannot enforce hard time limits (a JavaScript function
 * cannot be stopped from outside); use it for tests and trusted, purely
 * asynchronous tasks. The default pool is prefork.
 */
import type { TaskDefinition } from '../../client/task.ts';
import { executeJob, TaskAbort, type ExecJob, type ExecOutcome } from '../execute.ts';
import type { Pool } from './types.ts';

export function createSoloPool(registry: ReadonlyMap<string, TaskDefinition>): Pool {
  const running = new Map<string, TaskAbort>();
  const jobs = new Map<string, ExecJob>();
  return {
    kind: 'solo',
    async start() {},
    run(job: ExecJob, hardTimeLimitMs?: number): ExecOutcome | Promise<ExecOutcome> {
      const controller = new TaskAbort();
      const started = performance.now();
      const exec = executeJob(registry, job, controller);
      // A task that finished synchronously cannot be aborted or timed out any more.
      if (!(exec instanceof Promise)) return exec;
      running.set(job.jobId, controller);
      jobs.set(job.jobId, job);
      const done = (): void => {
        running.delete(job.jobId);
        jobs.delete(job.jobId);
      };
      if (hardTimeLimitMs === undefined) return exec.finally(done);
      let timer: NodeJS.Timeout | undefined;
      const limit = new Promise<ExecOutcome>((resolve) => {
        timer = setTimeout(() => {
          controller.abort(new Error('hard time limit exceeded'));
          resolve({ kind: 'timeout', limitSeconds: hardTimeLimitMs / 1000, runtimeMs: performance.now() - started });
        }, hardTimeLimitMs);
      });
      return Promise.race([exec, limit]).finally(() => {
        clearTimeout(timer);
        done();
      });
    },
    abort(jobId: string, reason: Error): void {
      running.get(jobId)?.abort(reason);
    },
    async close(graceMs: number): Promise<ExecJob[]> {
      const deadline = Date.now() + graceMs;
      while (running.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      // Past the grace: signal every task still running to stop, and hand them back as lost.
      const lost = [...jobs.values()];
      for (const c of running.values()) c.abort(new Error('worker shutting down: shutdown timeout reached'));
      running.clear();
      jobs.clear();
      return lost;
    },
  };
}
