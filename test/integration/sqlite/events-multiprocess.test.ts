/**
 * Events across processes on SQLite: `celeriac worker -E` (prefork: the
 * supervisor sends the node's heartbeat, its child the task events) on a
 * file another process subscribes to, as a monitor would.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createApp } from '../../../src/client/app.ts';
import { eventExchange } from '../../../src/core/broker.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { sqliteUrlForPath } from '../../../src/transport/sqlite/location.ts';
import { startCeleriacWorker } from '../../helpers/celeriac-worker.ts';
import { waitFor } from '../../helpers/services.ts';

const dir = mkdtempSync(join(tmpdir(), 'celeriac-sqlite-events-'));
after(() => rmSync(dir, { recursive: true, force: true }));

type Ev = { type: string; hostname: string; uuid?: string; clock: number };

describe('events on SQLite across processes', () => {
  it('a prefork `celeriac worker -E` sends worker and task events another process receives', async () => {
    const broker = sqliteUrlForPath(join(dir, 'broker.db'));
    const backend = sqliteUrlForPath(join(dir, 'results.db'));
    const app = createApp({ brokerUrl: broker, resultBackend: backend, logger: createLogger({ level: 'silent' }) });
    const events: Array<{ key: string; ev: Ev }> = [];
    const sub = await (await app.broker()).subscribe(eventExchange(), { bindingKeys: ['#'] }, (d) => {
      const body = JSON.parse(d.message.body.toString()) as Ev | Ev[];
      for (const ev of Array.isArray(body) ? body : [body]) events.push({ key: d.routingKey, ev });
    });
    const worker = await startCeleriacWorker({
      env: { CELERIAC_BROKER_URL: broker, CELERIAC_RESULT_BACKEND: backend, CELERIAC_UNSAFE_ALLOW_ROOT: '1' },
      args: ['-E', '-P', 'prefork', '--processes', '1', '-c', '2', '-n', 'evsq@test', '--heartbeat-interval', '0.3'],
    });
    try {
      const r = await app.sendTask('tasks.add', [2, 3]);
      assert.equal(await r.get({ timeoutMs: 15_000 }), 5);
      await waitFor(() => events.some((e) => e.ev.type === 'task-succeeded' && e.ev.uuid === r.id), 10_000, 'task-succeeded');
      await waitFor(() => events.filter((e) => e.ev.type === 'worker-heartbeat').length >= 2, 10_000, 'heartbeats');
      assert.equal(await worker.stop(), 0);
      await waitFor(() => events.some((e) => e.ev.type === 'worker-offline'), 10_000, 'worker-offline');
      const types = events.filter((e) => e.ev.hostname === 'evsq@test').map((e) => e.ev.type);
      assert.equal(types[0], 'worker-online');
      assert.equal(types.at(-1), 'worker-offline');
      assert.deepEqual(events.filter((e) => e.ev.uuid === r.id).map((e) => [e.key, e.ev.type]), [
        ['task.multi', 'task-received'],
        ['task.multi', 'task-started'],
        ['task.multi', 'task-succeeded'],
      ]);
    } finally {
      await worker.stop();
      await sub.close();
      await app.close();
    }
  });
});
