/**
 * The prefork pool: tasks run in child processes, isolated from the worker
 * (which holds the broker connection) and from each other's crashes. Each
 * child runs up to `slotsPerChild` jobs concurrently (JavaScript tasks are
 * usually asynchronous); a hard time limit kills the child, so set
 * `processes` equal to the concurrency for one-task-per-process isolation.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CeleriacError } from '../../errors.ts';
import type { Logger } from '../../logging.ts';
import type { ExecJob, ExecOutcome } from '../execute.ts';
import { encodeJob, type ChildMessage, type ParentMessage } from './ipc.ts';
import type { Pool } from './types.ts';

export interface PreforkOptions {
  /** Module (path or file URL) whose `app` or default export is the app. */
  appModule: string;
  /** The worker's node name, as tasks see it in `currentTask().request.hostname`. */
  hostname: string;
  processes: number;
  slotsPerChild: number;
  /** V8 heap limit per child in MiB (`--max-old-space-size`). */
  maxMemoryPerChildMb?: number;
  /** Run children as this user/group (least privilege when the worker starts as root). */
  uid?: number;
  gid?: number;
  logger: Logger;
}

interface Running {
  job: ExecJob;
  resolve: (o: ExecOutcome) => void;
  started: number;
  timer: NodeJS.Timeout | undefined;
}

interface Child {
  proc: ChildProcess;
  running: Map<string, Running>;
  outbox: ExecJob[];
  ready: boolean;
  dead: boolean;
}

const CHILD_ENTRY = fileURLToPath(new URL('./child.ts', import.meta.url));
const TSX_LOADER = import.meta.resolve('tsx');

export function createPreforkPool(options: PreforkOptions): Pool {
  const children: Child[] = [];
  let closing = false;
  let flushScheduled = false;
  let respawnFailures = 0;

  const execArgv = ['--import', TSX_LOADER];
  if (options.maxMemoryPerChildMb) execArgv.push(`--max-old-space-size=${Math.max(16, Math.floor(options.maxMemoryPerChildMb))}`);

  function spawn(): Promise<Child> {
    const proc = fork(CHILD_ENTRY, [], {
      execArgv,
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      ...(options.uid !== undefined ? { uid: options.uid } : {}),
      ...(options.gid !== undefined ? { gid: options.gid } : {}),
    });
    const child: Child = { proc, running: new Map(), outbox: [], ready: false, dead: false };
    return new Promise<Child>((resolve, reject) => {
      proc.on('message', (m: ChildMessage) => {
        if (m.t === 'ready') {
          child.ready = true;
          resolve(child);
        } else if (m.t === 'init-error') {
          reject(new CeleriacError('ERR_POOL_INIT', `a pool child could not load the app: ${m.message}`, { hint: 'check that the module given with -A loads and exports the app' }));
          proc.kill('SIGKILL');
        } else if (m.t === 'done') {
          for (const [jobId, outcome] of m.results) finish(child, jobId, outcome);
        }
      });
      proc.on('exit', (code, sig) => {
        child.dead = true;
        if (!child.ready) reject(new CeleriacError('ERR_POOL_INIT', `a pool child exited during start-up (${sig ?? code})`));
        onChildExit(child, code, sig);
      });
      proc.on('error', (err) => options.logger.error({ err }, 'pool child error'));
      proc.send({ t: 'init', appModule: options.appModule, hostname: options.hostname } satisfies ParentMessage);
    });
  }

  function finish(child: Child, jobId: string, outcome: ExecOutcome): void {
    const r = child.running.get(jobId);
    if (!r) return;
    child.running.delete(jobId);
    if (r.timer) clearTimeout(r.timer);
    r.resolve(outcome);
  }

  function onChildExit(child: Child, code: number | null, sig: NodeJS.Signals | null): void {
    const idx = children.indexOf(child);
    if (idx >= 0) children.splice(idx, 1);
    for (const [jobId, r] of child.running) {
      finish(child, jobId, { kind: 'lost', reason: `child process ${child.proc.pid} exited (${sig ?? `code ${code}`})`, runtimeMs: performance.now() - r.started });
    }
    if (!closing && child.ready) {
      options.logger.warn({ pid: child.proc.pid, code, signal: sig }, 'pool child exited; starting a replacement');
      const delay = Math.min(5000, 100 * 2 ** respawnFailures);
      setTimeout(() => {
        if (closing) return;
        spawn().then(
          (c) => {
            respawnFailures = 0;
            children.push(c);
          },
          (err: unknown) => {
            respawnFailures++;
            options.logger.error({ err }, 'could not start a replacement pool child');
          },
        );
      }, respawnFailures === 0 ? 0 : delay);
    }
  }

  function flush(): void {
    flushScheduled = false;
    for (const c of children) {
      if (c.outbox.length > 0 && !c.dead) {
        const jobs = c.outbox;
        c.outbox = [];
        c.proc.send({ t: 'run', jobs: jobs.map(encodeJob) } satisfies ParentMessage);
      }
    }
  }

  function pick(): Child | undefined {
    let best: Child | undefined;
    for (const c of children) {
      if (c.dead || !c.ready) continue;
      if (!best || c.running.size < best.running.size) best = c;
    }
    return best;
  }

  function killFor(child: Child, jobId: string, limitMs: number): void {
    const r = child.running.get(jobId);
    if (!r) return;
    options.logger.error({ id: r.job.request.id, task: r.job.task, pid: child.proc.pid }, `hard time limit (${limitMs / 1000}s) exceeded; killing the child process`);
    finish(child, jobId, { kind: 'timeout', limitSeconds: limitMs / 1000, runtimeMs: performance.now() - r.started });
    child.proc.kill('SIGKILL');
  }

  return {
    kind: 'prefork',
    get pids() {
      return children.map((c) => c.proc.pid!).filter(Boolean);
    },
    async start() {
      const started = await Promise.allSettled(Array.from({ length: options.processes }, () => spawn()));
      const failed = started.find((s) => s.status === 'rejected');
      for (const s of started) if (s.status === 'fulfilled') children.push(s.value);
      if (failed) {
        closing = true;
        for (const c of children) c.proc.kill('SIGKILL');
        throw (failed as PromiseRejectedResult).reason;
      }
    },
    run(job: ExecJob, hardTimeLimitMs?: number): Promise<ExecOutcome> {
      return new Promise<ExecOutcome>((resolve) => {
        const child = pick();
        if (!child) {
          resolve({ kind: 'lost', reason: 'no pool child available', runtimeMs: 0 });
          return;
        }
        const r: Running = { job, resolve, started: performance.now(), timer: undefined };
        if (hardTimeLimitMs !== undefined) r.timer = setTimeout(() => killFor(child, job.jobId, hardTimeLimitMs), hardTimeLimitMs);
        child.running.set(job.jobId, r);
        child.outbox.push(job);
        if (!flushScheduled) {
          flushScheduled = true;
          setImmediate(flush);
        }
      });
    },
    abort(jobId: string): boolean {
      for (const c of children) {
        if (c.running.has(jobId)) {
          c.proc.send({ t: 'abort', jobId } satisfies ParentMessage);
          return true;
        }
      }
      return false;
    },
    async close(graceMs: number): Promise<void> {
      closing = true;
      const deadline = Date.now() + graceMs;
      while (children.some((c) => c.running.size > 0) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      await Promise.all(
        [...children].map(
          (c) =>
            new Promise<void>((resolve) => {
              if (c.dead) return resolve();
              c.proc.once('exit', () => resolve());
              // Closing the IPC channel lets an idle child exit by itself; SIGKILL the rest.
              if (c.running.size === 0) c.proc.disconnect();
              else c.proc.kill('SIGKILL');
              setTimeout(() => c.proc.kill('SIGKILL'), 2000).unref();
            }),
        ),
      );
    },
  };
}
