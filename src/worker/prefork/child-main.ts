/**
 * Entry point of a prefork child process: loads the app module and runs one
 * Worker (consumer and executor) with its share of the concurrency. Task
 * starts and ends go to the supervisor, batched per event-loop turn, so it
 * can enforce hard time limits and account for tasks if this process dies.
 */
import { pathToFileURL } from 'node:url';
import { importModule } from '../../runtime/import-module.ts';
import { encodeTaskEvent, type FromChild, type ToChild } from './supervisor-ipc.ts';
import { applyOverrides, runForwarded } from './child-control.ts';
import type { LossEntry } from '../loss-ledger.ts';
import type { WorkerRuntime } from '../runtime.ts';
import type { TaskEvent } from '../types.ts';
import { Worker } from '../worker.ts';

// The supervisor owns shutdown: a Ctrl-C reaching the whole process group
// must not kill tasks mid-flight. Losing the supervisor means the worker was
// killed: stop at once, like the rest of it (late-ack messages are restored
// by the broker).
process.on('SIGINT', () => {});
process.on('SIGTERM', () => {});
process.on('disconnect', () => process.exit(0));

const send = (m: FromChild): void => {
  if (process.connected) process.send!(m);
};

let worker: Worker | undefined;
/** Ledger changes that arrived while the worker was starting. */
const early: Array<[string, LossEntry]> = [];
/** Remote-control commands forwarded while the worker was starting (run once it has). */
const earlyControl: Array<Extract<ToChild, { t: 'control' }>> = [];
const control = (m: Extract<ToChild, { t: 'control' }>): void => void runForwarded(worker?.controlHost, m).then(send);
let app: WorkerRuntime | undefined;
// SIGHUP's default action would kill the child (issue 20 #6): a HUP sent to it directly, or to the
// process group, reloads its credentials like the supervisor's IPC reload does.
process.on('SIGHUP', () => {
  void worker?.reload().catch((err: unknown) => app?.logger.error({ err }, 'SIGHUP: credential reload failed; keeping the current credentials'));
});
/**
 * Tell the supervisor about task starts and ends. A batch of starts arrives
 * before any of its tasks runs; the pipe write is synchronous when the pipe
 * has room, so a task that then crashes the process is still known to have
 * started. One message per batch keeps the supervisor's wake-ups few.
 */
function onTaskEvents(batch: TaskEvent[]): void {
  if (!process.connected) return;
  let lines = encodeTaskEvent(batch[0]!);
  for (let i = 1; i < batch.length; i++) lines += '\n' + encodeTaskEvent(batch[i]!);
  process.send!({ t: 'events', lines } satisfies FromChild);
}

/** The app in a module: its `app` export, else its default export. */
function findApp(mod: Record<string, unknown>): WorkerRuntime | undefined {
  for (const candidate of [mod.app, mod.default]) {
    if (candidate && typeof candidate === 'object' && (candidate as { registry?: unknown }).registry instanceof Map) return candidate as WorkerRuntime;
  }
  return undefined;
}

process.on('message', (msg: ToChild) => {
  if (msg.t === 'init') {
    void (async () => {
      try {
        Object.assign(process.env, msg.env);
        const spec = msg.appModule.startsWith('file:') ? msg.appModule : pathToFileURL(msg.appModule).href;
        app = findApp(await importModule(spec));
        if (!app) throw new Error(`module ${msg.appModule} exports no app (export it as "app" or as the default export)`);
        const o = msg.options;
        applyOverrides(app, o.overrides);
        worker = new Worker({
          app,
          queues: o.queues,
          concurrency: o.concurrency,
          prefetchMultiplier: o.prefetchMultiplier,
          nodeName: o.nodeName,
          shutdownTimeoutMs: o.shutdownTimeoutMs,
          taskEvents: o.taskEvents,
          pool: 'solo',
          announce: false,
          onTaskEvents,
          onLoss: (id, kind) => send({ t: 'loss', id, kind, final: kind === 'final' }),
        });
        for (const [id, entry] of [...(msg.losses ?? []), ...early.splice(0)]) worker.ledger.set(id, entry);
        await worker.start();
        setInterval(() => send({ t: 'stats', stats: worker!.stats() }), 1000).unref();
        send({ t: 'ready', pid: process.pid, owner: worker.consumerOwner });
        for (const m of earlyControl.splice(0)) control(m);
      } catch (err) {
        send({ t: 'init-error', message: err instanceof Error ? err.message : String(err) });
        setTimeout(() => process.exit(1), 50);
      }
    })();
  } else if (msg.t === 'losses') {
    if (worker) for (const [id, entry] of msg.entries) worker.ledger.set(id, entry);
    else early.push(...msg.entries);
  } else if (msg.t === 'reload') {
    // The supervisor announces the pool's reload once every process has switched.
    (worker ? worker.reload({ announce: false }) : Promise.resolve({ broker: false, backend: false })).then(
      (changed) => send({ t: 'reloaded', changed }),
      (err: unknown) => {
        app?.logger.error({ err }, 'credential reload failed; keeping the current credentials');
        send({ t: 'reloaded', error: err instanceof Error ? err.message : String(err) });
      },
    );
  } else if (msg.t === 'control') {
    if (worker?.controlHost) control(msg);
    else earlyControl.push(msg);
  } else if (msg.t === 'stop') {
    void (async () => {
      await worker?.stop();
      send({ t: 'stats', stats: worker?.stats() ?? emptyStats() });
      await app?.close();
      send({ t: 'stopped' });
      setTimeout(() => process.exit(0), 20);
    })();
  }
});

function emptyStats(): ReturnType<Worker['stats']> {
  return { nodeName: '', active: 0, held: 0, processed: 0, succeeded: 0, failed: 0, retried: 0, revoked: 0, rejected: 0, byTask: {} };
}
