/**
 * Event-consumer interop cases against real Python Celery 5.2.6, shared by
 * the Redis and RabbitMQ files (test/interop/{redis,amqp}/events-receiver.test.ts):
 * a Python worker started with -E and a Python client with
 * task_send_sent_event run a succeeding, a failing and an expired task;
 * Celeriac's receiver gets every event with its fields, the state
 * aggregator follows worker and tasks, and `celeriac events --dump` prints
 * the same task lines as Python's own `celery events --dump`.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { it } from 'node:test';
import type { TestContext } from 'node:test';
import { eventExchange, type Broker } from '../../src/core/broker.ts';
import type { WireMessage } from '../../src/protocol/types.ts';
import { readVector } from './fixtures.ts';
import { createEventReceiver } from '../../src/client/events/receiver.ts';
import { createEventState } from '../../src/client/events/state.ts';
import { isTaskEvent, type CeleryEvent } from '../../src/client/events/types.ts';
import { CLI } from './celeriac-worker.ts';
import { HARNESS_DIR, pyClient, startPythonWorker } from './python-celery.ts';
import { PYTHON, requireService, sleep, waitFor } from './services.ts';

export interface EventsInteropTarget {
  ready: () => boolean;
  what: string;
  /** A Celeriac broker on the shared broker (the suite closes it). */
  broker: () => Promise<Broker>;
  /** Environment for the Python side (CELERY_BROKER_URL, CELERY_RESULT_BACKEND). */
  env: () => Record<string, string>;
}

interface Proc {
  proc: ChildProcess;
  out: () => string;
  err: () => string;
  exit: Promise<number | null>;
}

function start(cmd: string, args: string[], env: Record<string, string>, cwd?: string): Proc {
  const proc = spawn(cmd, args, { env: { ...process.env, ...env }, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { proc, out: () => out, err: () => err, exit };
}

async function interrupt(p: Proc): Promise<number | null> {
  if (p.proc.exitCode !== null) return p.proc.exitCode;
  p.proc.kill('SIGINT');
  const code = await Promise.race([p.exit, sleep(15_000).then(() => 'timeout' as const)]);
  if (code !== 'timeout') return code;
  p.proc.kill('SIGKILL');
  return p.exit;
}

/** A dump line without what differs between two receivers (their own Lamport clock and receive time). */
function normalise(line: string): string {
  return line.replace(/clock=\d+, /, '').replace(/local_received=[\d.e+-]+(, )?/, '').trim();
}

/** Define the cases (call inside a `describe`). */
export function eventsInteropCases(target: EventsInteropTarget): void {
  const skip = (t: TestContext): boolean => !requireService(t, target.ready(), target.what);

  it('every celeryev message Celery 5.2.6 published (redis_pubsub_all.json), broadcast again, is received in order, field for field', async (t) => {
    if (skip(t)) return;
    const broker = await target.broker();
    const v = readVector<{ messages: Array<{ channel: string; envelope: { body: string; 'content-type': string; 'content-encoding': string; headers: Record<string, unknown> } }> }>('events/redis_pubsub_all.json');
    const messages = v.messages.filter((m) => m.channel.includes('celeryev/'));
    const ac = new AbortController();
    const got: CeleryEvent[] = [];
    const rx = createEventReceiver({ broker, signal: ac.signal });
    const reading = (async () => {
      for await (const ev of rx) got.push(ev);
    })();
    await rx.ready;
    const expected: unknown[] = [];
    for (const m of messages) {
      const body = Buffer.from(m.envelope.body, 'base64');
      const sent = JSON.parse(body.toString('utf8')) as unknown;
      expected.push(...(Array.isArray(sent) ? sent : [sent]));
      const message: WireMessage = { headers: m.envelope.headers, properties: { delivery_mode: 1, priority: 0 }, contentType: m.envelope['content-type'], contentEncoding: m.envelope['content-encoding'], body };
      await broker.broadcast(eventExchange(), m.channel.slice(m.channel.indexOf('celeryev/') + 'celeryev/'.length), message);
    }
    await waitFor(() => got.length >= expected.length, 15_000, `${expected.length} events, got ${got.length}`);
    ac.abort();
    await reading;
    assert.deepEqual(got.map(({ local_received: _lr, ...ev }) => ev), expected);
    assert.equal(rx.stats.malformed, 0);
  });

  it('the receiver and `celeriac events --dump` get a Python worker\'s and client\'s events, as Python\'s own dump shows them', async (t) => {
    if (skip(t)) return;
    const broker = await target.broker();
    const env = target.env();
    const queue = `events-interop-${randomUUID().slice(0, 8)}`;
    const node = `py-${randomUUID().slice(0, 8)}@events-interop`;
    const ac = new AbortController();
    const got: CeleryEvent[] = [];
    const rx = createEventReceiver({ broker, signal: ac.signal });
    const reading = (async () => {
      for await (const ev of rx) got.push(ev);
    })();
    await rx.ready;

    const cli = start(process.execPath, [CLI, 'events', '--dump'], { CELERIAC_BROKER_URL: env.CELERY_BROKER_URL!, CELERIAC_LOG_FORMAT: 'json' });
    const pyDump = start(PYTHON, ['-m', 'celery', '-A', 'harness_tasks', 'events', '--dump'], { ...env, PYTHONPATH: HARNESS_DIR, PYTHONUNBUFFERED: '1' }, HARNESS_DIR);
    let worker: Awaited<ReturnType<typeof startPythonWorker>> | undefined;
    try {
      await waitFor(() => cli.out().includes('starting capture'), 30_000, `celeriac events ready:\n${cli.err()}`);
      await waitFor(() => pyDump.out().includes('starting capture'), 30_000, `celery events ready:\n${pyDump.err()}`);
      // Python's receiver subscribes once it starts consuming, just after it prints.
      await sleep(1500);
      worker = await startPythonWorker({ brokerUrl: env.CELERY_BROKER_URL!, backendUrl: env.CELERY_RESULT_BACKEND!, name: node, concurrency: 1, env: { CELERY_SEND_EVENTS: '1' }, args: ['-Q', queue] });
      const pyEnv = { ...env, CELERY_SEND_EVENTS: '1' };
      const add = await pyClient(['send', 'tasks.add', '2', '3', '--queue', queue, '--timeout', '20'], pyEnv);
      const fail = await pyClient(['send', 'tasks.fail', 'bad value', '--queue', queue, '--timeout', '20'], pyEnv);
      const expired = await pyClient(['send', 'tasks.add', '1', '1', '--queue', queue, '--countdown', '2', '--expires', '1', '--no-wait'], pyEnv);
      const ids = { add: add.task_id as string, fail: fail.task_id as string, expired: expired.task_id as string };
      assert.equal(add.state, 'SUCCESS');
      const has = (type: string, uuid?: string): boolean => got.some((e) => e.type === type && (uuid === undefined || e.uuid === uuid));
      await waitFor(() => has('task-revoked', ids.expired), 20_000, `expired task revoked; got ${got.map((e) => e.type).join(',')}`);
      await waitFor(() => got.some((e) => e.type === 'worker-heartbeat' && e.hostname === node), 10_000, 'a heartbeat');
      await worker.stop();
      worker = undefined;
      await waitFor(() => got.some((e) => e.type === 'worker-offline' && e.hostname === node), 15_000, 'worker-offline');

      // Every event type a worker and a client send, each with Celery's fields and types.
      for (const type of ['task-sent', 'task-received', 'task-started', 'task-succeeded']) assert.ok(has(type, ids.add), `${type} of tasks.add`);
      assert.ok(has('task-failed', ids.fail));
      assert.ok(has('worker-online') && has('worker-offline'));
      const sent = got.find((e) => e.type === 'task-sent' && e.uuid === ids.add)!;
      assert.equal(sent.name, 'tasks.add');
      assert.equal(sent.args, '[2, 3]', 'the repr of the list py_client passes');
      assert.equal(sent.queue, queue);
      const ok = got.find((e) => e.type === 'task-succeeded' && e.uuid === ids.add)!;
      assert.equal(ok.result, '5');
      assert.equal(typeof ok.runtime, 'number');
      assert.equal(ok.hostname, node);
      const failed = got.find((e) => e.type === 'task-failed' && e.uuid === ids.fail)!;
      assert.match(String(failed.exception), /ValueError\('bad value'\)/);
      assert.match(String(failed.traceback), /Traceback/);
      const revoked = got.find((e) => e.type === 'task-revoked' && e.uuid === ids.expired)!;
      assert.equal(revoked.expired, true);
      const online = got.find((e) => e.type === 'worker-online' && e.hostname === node)!;
      assert.equal(online.sw_ident, 'py-celery');
      assert.equal(online.sw_ver, '5.2.6');
      assert.equal(typeof online.freq, 'number');
      assert.equal(rx.stats.malformed, 0);

      // The aggregator follows the worker and its tasks.
      const state = createEventState();
      for (const ev of got) state.apply(ev);
      assert.equal(state.task(ids.add)?.state, 'SUCCESS');
      assert.equal(state.task(ids.add)?.name, 'tasks.add');
      assert.equal(state.task(ids.fail)?.state, 'FAILURE');
      assert.equal(state.task(ids.expired)?.state, 'REVOKED');
      const w = state.worker(node)!;
      assert.equal(w.offline, true);
      assert.equal(state.isAlive(w, Date.now() / 1000), false);
      assert.ok(got.filter((e) => isTaskEvent(e)).every((e) => typeof e.uuid === 'string'));

      // celeriac events --dump prints the task lines Python's dump prints (their own clocks and receive times aside).
      await sleep(500);
      assert.equal(await interrupt(cli), 0, cli.err());
      await interrupt(pyDump);
      for (const id of Object.values(ids)) {
        // Celeriac keeps each event on one line (a traceback's newlines shown as \u000a); Python's line ends at the first newline.
        const mine = cli.out().split('\n').filter((l) => l.includes(id)).map((l) => normalise(l.split('\\u000a')[0]!));
        const theirs = pyDump.out().split('\n').filter((l) => l.includes(id)).map(normalise);
        assert.ok(mine.length >= 2, `celeriac dump has the task ${id}:\n${cli.out()}`);
        assert.deepEqual(mine, theirs);
      }
      const onlineLine = (out: string): string | undefined => out.split('\n').find((l) => l.startsWith(`${node} `) && l.includes('] started:'));
      assert.equal(normalise(onlineLine(cli.out()) ?? 'none'), normalise(onlineLine(pyDump.out()) ?? 'none'));
    } finally {
      ac.abort();
      await reading;
      await worker?.stop();
      await interrupt(cli);
      await interrupt(pyDump);
    }
  });
}
