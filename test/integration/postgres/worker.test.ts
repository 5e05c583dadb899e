/**
 * A real `celeriac worker` process on the PostgreSQL engine (broker and
 * result backend on the loopback server, in a schema of this run): tasks
 * sent from another app run and their results come back (now, and after a
 * countdown), the worker's events reach a receiver, and `celeriac inspect
 * ping` gets its pong through the fanout tables.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../../src/client/app.ts';
import { createEventReceiver } from '../../../src/client/events/receiver.ts';
import type { CeleryEvent } from '../../../src/client/events/types.ts';
import { startCeleriacWorker, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import { runCli } from '../../helpers/control-interop.ts';
import { dropPgSchema, hasPostgres, pgSchemaUrl } from '../../helpers/postgres.ts';
import { IN_CI, waitFor } from '../../helpers/services.ts';

const available = await hasPostgres();
if (!available && IN_CI) throw new Error('PostgreSQL is required in CI');

describe('a Celeriac worker on PostgreSQL', { skip: available ? false : 'PostgreSQL not reachable' }, () => {
  const { url, schema } = pgSchemaUrl('e2e');
  const node = `pgw-${schema.slice(-8)}@test`;
  let worker: CeleriacWorkerProcess;
  let app: App;

  before(async () => {
    worker = await startCeleriacWorker({
      env: { CELERIAC_BROKER_URL: url, CELERIAC_RESULT_BACKEND: url, CELERIAC_ENV: 'development', CELERIAC_LOG_FORMAT: 'json' },
      args: ['-P', 'prefork', '--processes', '1', '-c', '4', '-E', '-n', node],
    });
    app = createApp({ brokerUrl: url, resultBackend: url });
  });

  after(async () => {
    await app?.close();
    await worker?.stop();
    await dropPgSchema(schema);
  });

  it('runs a task and returns its result; a countdown task runs when due', async () => {
    const r = await app.sendTask('tasks.add', [2, 3]);
    assert.equal(await r.get({ timeoutMs: 20_000 }), 5);
    const started = Date.now();
    const later = await app.sendTask('tasks.add', [20, 22], {}, { countdown: 1.5 });
    assert.equal(await later.get({ timeoutMs: 20_000 }), 42);
    assert.ok(Date.now() - started >= 1400, 'not before its countdown');
  });

  it('sends task events to a receiver on the same database', async () => {
    const ac = new AbortController();
    const got: CeleryEvent[] = [];
    const rx = createEventReceiver({ app, signal: ac.signal });
    const reading = (async () => {
      for await (const ev of rx) got.push(ev);
    })();
    await rx.ready;
    const r = await app.sendTask('tasks.add', [1, 1]);
    assert.equal(await r.get({ timeoutMs: 20_000 }), 2);
    await waitFor(() => got.some((e) => e.type === 'task-succeeded' && e.uuid === r.id), 15_000, `task-succeeded; got ${got.map((e) => e.type).join(',')}`);
    assert.ok(got.some((e) => e.type === 'task-received' && e.uuid === r.id));
    ac.abort();
    await reading;
  });

  it('celeriac inspect ping gets the worker\'s pong', async () => {
    const ping = await runCli(['inspect', 'ping', '--json', '-d', node, '-t', '5', '-b', url]);
    assert.equal(ping.code, 0, ping.stderr);
    assert.deepEqual(JSON.parse(ping.stdout), { [node]: { ok: 'pong' } });
  });
});
