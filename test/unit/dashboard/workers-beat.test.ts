/**
 * The dashboard's worker list (src/dashboard/model/workers.ts) from an
 * inspect round where a celeriac beat answers too: the beat node (its
 * stats say `celeriac.role: "beat"`, its worker-only replies are errors)
 * is not listed as a worker; the worker is.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Control } from '../../../src/client/control.ts';
import { createWorkerTracker } from '../../../src/dashboard/model/workers.ts';

const BEAT = 'beat.default.42@h';
const WORKER = 'w1@h';
const notAWorker = (m: string) => ({ error: `${m} is a worker command: ${BEAT} is a celeriac beat (it sends periodic tasks and runs none)` });

function fakeControl(): Control {
  const inspect = {
    stats: async () => ({ [WORKER]: { pid: 1, total: {} }, [BEAT]: { pid: 2, beat: { role: 'leader' }, celeriac: { role: 'beat', security: {} } } }),
    active: async () => ({ [WORKER]: [], [BEAT]: notAWorker('active') }),
    reserved: async () => ({ [WORKER]: [], [BEAT]: notAWorker('reserved') }),
    registered: async () => ({ [WORKER]: ['t.add'], [BEAT]: notAWorker('registered') }),
    activeQueues: async () => ({ [WORKER]: [{ name: 'celery' }], [BEAT]: notAWorker('active_queues') }),
  };
  return { inspect: () => inspect } as unknown as Control;
}

describe('dashboard worker list with a beat on the control plane', () => {
  it('lists the worker, not the beat', async () => {
    const tracker = createWorkerTracker({ control: fakeControl });
    await tracker.refresh();
    assert.deepEqual(tracker.views(Date.now()).map((v) => v.hostname), [WORKER]);
    assert.equal(tracker.view(BEAT, Date.now()), undefined);
  });
});
