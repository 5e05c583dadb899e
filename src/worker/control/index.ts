/**
 * Remote control of one worker process: loads the revoked ids kept by the
 * shared store, then (unless turned off) answers Celery's pidbox.
 */
import type { Broker, Consumer } from '../../core/broker.ts';
import type { RevokedStore } from '../../core/revoked-store.ts';
import type { WorkerState } from '../state.ts';
import type { ControlHost } from './commands.ts';
import { workerControlGuard, type ControlGuard } from './guard-hook.ts';
import { backendRevokedStore, memoryRevokedStore } from './revoked.ts';
import { startControlServer, type ControlServer } from './server.ts';
import { workerControlHost } from './worker-host.ts';

export interface WorkerControlOptions {
  queues: string[];
  consume(queues: string[]): Promise<Consumer>;
  stop(): void;
  /** Answer the pidbox for this node (false: only honour revokes). */
  remoteControl: boolean;
  /** A prefork child: listen for revokes on a queue of its own, without replying. */
  listenOnly?: boolean;
  guard?: ControlGuard;
  /** Task events on or off (`enable_events`/`disable_events`). */
  setTaskEvents?: (on: boolean) => void;
  /** Send a heartbeat now (`heartbeat`). */
  heartbeat?: () => void;
}

export interface WorkerControl {
  readonly store: RevokedStore;
  /** What the commands act on (a prefork child runs the commands its supervisor forwards on it). */
  readonly host: ControlHost | undefined;
  readonly server: ControlServer | undefined;
  close(): Promise<void>;
}

export async function startWorkerControl(w: WorkerState, broker: Broker, o: WorkerControlOptions): Promise<WorkerControl> {
  const store = w.store ? backendRevokedStore(w.store.backend) : memoryRevokedStore();
  try {
    w.revoked.merge(await store.load());
  } catch (err) {
    w.logger.warn({ err }, 'could not read the revoked task ids; honouring those received from now on');
  }
  let server: ControlServer | undefined;
  let host: ControlHost | undefined;
  if (o.remoteControl || o.listenOnly) {
    host = workerControlHost(w, {
      queues: o.queues,
      store,
      consume: o.consume,
      shutdown: o.stop,
      setTaskEvents: o.setTaskEvents,
      heartbeat: o.heartbeat,
    });
    const guard = o.guard ?? workerControlGuard({ settings: w.rt.settings, logger: w.logger, nodeName: w.nodeName });
    server = await startControlServer({ broker, host, guard, logger: w.logger, listenOnly: o.remoteControl ? undefined : ['revoke', 'terminate'] });
  }
  return { store, server, host, close: async () => server?.close() };
}
