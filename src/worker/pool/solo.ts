/**
 * The solo pool runs tasks in the worker process itself. It has no
 * isolation and cannot enforce hard time limits (a JavaScript function
 * cannot be stopped from outside); use it for tests and trusted, purely
 * asynchronous tasks. The default pool is prefork.
 */
import type { TaskDefinition } from '../../task.ts';
import { executeJob, TaskAbort, type ExecJob, type ExecOutcome } from '../execute.ts';
import type { Pool } from './types.ts';

export function createSoloPool(registry: ReadonlyMap<string, TaskDefinition>): Pool {
  const running = new Map<string, TaskAbort>();
  return {
    kind: 'solo',
    pids: [],
    async start() {},
    async run(job: ExecJob, hardTimeLimitMs?: number): Promise<ExecOutcome> {
      const controller = new TaskAbort();
      running.set(job.jobId, controller);
      const started = performance.now();
      try {
        const exec = executeJob(registry, job, controller);
        if (hardTimeLimitMs === undefined) return await exec;
        let timer: NodeJS.Timeout | undefined;
        const limit = new Promise<ExecOutcome>((resolve) => {
          timer = setTimeout(() => {
            controller.abort(new Error('hard time limit exceeded'));
            resolve({ kind: 'timeout', limitSeconds: hardTimeLimitMs / 1000, runtimeMs: performance.now() - started });
          }, hardTimeLimitMs);
        });
        try {
          return await Promise.race([exec, limit]);
        } finally {
          clearTimeout(timer);
        }
      } finally {
        running.delete(job.jobId);
      }
    },
    abort(jobId: string): boolean {
      const c = running.get(jobId);
      if (!c) return false;
      c.abort(new Error('terminated'));
      return true;
    },
    async close(graceMs: number): Promise<void> {
      const deadline = Date.now() + graceMs;
      while (running.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    },
  };
}
