/**
 * Entry point of a prefork child process: loads the app module, then runs
 * the jobs the parent sends and reports outcomes, batched per event-loop
 * turn. The child never touches the broker on the worker's behalf.
 */
import { pathToFileURL } from 'node:url';
import type { TaskDefinition } from '../../task.ts';
import { executeJob, type ExecJob, type ExecOutcome } from '../execute.ts';
import { decodeJob, type ChildMessage, type ParentMessage } from './ipc.ts';

// The parent owns shutdown: a Ctrl-C reaching the whole process group must
// not kill tasks mid-flight, and losing the parent must stop the child.
process.on('SIGINT', () => {});
process.on('SIGTERM', () => {});
process.on('disconnect', () => process.exit(0));

const send = (m: ChildMessage): void => {
  if (process.connected) process.send!(m);
};

let registry: ReadonlyMap<string, TaskDefinition> | undefined;
let hostname = '';
const running = new Map<string, AbortController>();
let outbox: Array<[string, ExecOutcome]> = [];
let flushScheduled = false;

function report(jobId: string, outcome: ExecOutcome): void {
  outbox.push([jobId, outcome]);
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(() => {
      flushScheduled = false;
      const results = outbox;
      outbox = [];
      send({ t: 'done', results });
    });
  }
}

async function run(job: ExecJob): Promise<void> {
  const controller = new AbortController();
  running.set(job.jobId, controller);
  const outcome = await executeJob(registry!, job, controller);
  running.delete(job.jobId);
  report(job.jobId, outcome);
}

/** Find the app in a module: its `app` export, else its default export. */
export function findRegistry(mod: Record<string, unknown>): ReadonlyMap<string, TaskDefinition> | undefined {
  for (const candidate of [mod.app, mod.default]) {
    const reg = (candidate as { registry?: unknown } | undefined)?.registry;
    if (reg instanceof Map) return reg as ReadonlyMap<string, TaskDefinition>;
  }
  return undefined;
}

process.on('message', (raw: ParentMessage) => {
  switch (raw.t) {
    case 'init':
      void (async () => {
        try {
          hostname = raw.hostname;
          const spec = raw.appModule.startsWith('file:') ? raw.appModule : pathToFileURL(raw.appModule).href;
          const mod = (await import(spec)) as Record<string, unknown>;
          registry = findRegistry(mod);
          if (!registry) throw new Error(`module ${raw.appModule} exports no app (export it as "app" or as the default export)`);
          send({ t: 'ready', pid: process.pid });
        } catch (err) {
          send({ t: 'init-error', message: err instanceof Error ? err.message : String(err) });
        }
      })();
      break;
    case 'run':
      for (const job of raw.jobs) void run(decodeJob(job, hostname));
      break;
    case 'abort':
      running.get(raw.jobId)?.abort(new Error('terminated'));
      break;
  }
});
