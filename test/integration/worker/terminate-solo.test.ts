/**
 * Revoke with terminate in the solo pool: cooperative (the task's abort
 * signal fires; a task that listens ends REVOKED 'terminated'), and a task
 * that ignores its signal is reported: in the reply (still running after
 * the grace) and in the log; it then ends as it would have.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createEventReceiver } from '../../../src/client/events/receiver.ts';
import { currentTask } from '../../../src/worker/context.ts';
import { memoryFixture } from '../../helpers/app-fixture.ts';
import { ask } from '../../helpers/control-client.ts';
import { waitFor } from '../../helpers/services.ts';

const ALLOW_ALL = { workerControlAllow: ['@all'] };

describe('revoke with terminate in the solo pool', () => {
  it('a cooperative task stops: Celery\'s reply, REVOKED terminated, and a task-revoked event with the signal', async () => {
    const f = memoryFixture(ALLOW_ALL);
    const polite = f.app.task('t.polite', async () => {
      const { signal } = currentTask();
      await new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
    });
    await f.startWorker({ nodeName: 'term1@host', taskEvents: true });
    const ac = new AbortController();
    const receiver = createEventReceiver({ broker: f.broker, signal: ac.signal, bindingKeys: ['task.#'] });
    await receiver.ready;
    const revokedEvents: Array<Record<string, unknown>> = [];
    const reading = (async () => {
      for await (const ev of receiver) if (ev.type === 'task-revoked') revokedEvents.push(ev as unknown as Record<string, unknown>);
    })();
    const r = await polite.delay();
    await waitFor(async () => ((await ask(f.broker, 'active', {}, { limit: 1 }))[0]!['term1@host'] as unknown[]).length === 1, 3000, 'running');
    const [reply] = await ask(f.broker, 'revoke', { task_id: r.id, terminate: true, signal: 'SIGTERM' }, { limit: 1, timeoutMs: 3000 });
    assert.deepEqual(reply, { 'term1@host': { ok: `terminate: ${r.id}` } });
    await assert.rejects(r.get({ timeoutMs: 3000 }), (e: { state?: string; excMessage?: unknown[] }) => e.state === 'REVOKED' && e.excMessage?.[0] === 'terminated');
    await waitFor(() => revokedEvents.length === 1, 3000, 'task-revoked');
    assert.equal(revokedEvents[0]!.uuid, r.id);
    assert.equal(revokedEvents[0]!.terminated, true);
    assert.equal(revokedEvents[0]!.signum, 15);
    assert.equal(revokedEvents[0]!.expired, false);
    const [unknown] = await ask(f.broker, 'revoke', { task_id: r.id, terminate: true }, { limit: 1 });
    assert.deepEqual(unknown, { 'term1@host': { ok: 'terminate: tasks unknown' } });
    ac.abort();
    await reading;
    await f.close();
  });

  it('a task that ignores its abort signal is reported still running after the grace, logged, and ends as it would have', async () => {
    const f = memoryFixture(ALLOW_ALL);
    const stubborn = f.app.task('t.stubborn', async () => {
      await new Promise((resolve) => setTimeout(resolve, 1500));
      return 'finished anyway';
    });
    await f.startWorker({ nodeName: 'term2@host' });
    const r = await stubborn.delay();
    await waitFor(async () => ((await ask(f.broker, 'active', {}, { limit: 1 }))[0]!['term2@host'] as unknown[]).length === 1, 3000, 'running');
    const started = Date.now();
    const [reply] = (await ask(f.broker, 'revoke', { task_id: [r.id], terminate: true, signal: 'SIGKILL' }, { limit: 1, timeoutMs: 3000 })) as Array<Record<string, { ok: string }>>;
    const took = Date.now() - started;
    assert.match(reply!['term2@host']!.ok, new RegExp(`^terminate: ${r.id}; still running 0.5 s after their abort signal: ${r.id} \\(they ignore their abort signal and this pool cannot kill them`));
    assert.ok(took >= 450 && took < 1000, `replied after the grace, within Celery's 1 s (${took} ms)`);
    assert.ok(f.logs.some((l) => l.level === 40 && String(l.msg).includes(`${r.id}] is still running 0.5 s after its revoke with terminate`)), 'a warning in the log');
    assert.equal(await r.get({ timeoutMs: 3000 }), 'finished anyway');
    await f.close();
  });
});
