/**
 * `celeriac events --dump` and `--json` as a separate process on the
 * embedded SQLite broker: events broadcast in the format of the Celery
 * 5.2.6 vectors are printed one line each (Celery's dump layout, JSON
 * lines), malformed ones are skipped and counted, a hostile hostname
 * cannot put an escape sequence on the terminal, and SIGINT exits 0.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { resolveSettings } from '../../../src/config/options.ts';
import { eventExchange, type Broker } from '../../../src/core/broker.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import type { WireMessage } from '../../../src/protocol/types.ts';
import { createBroker } from '../../../src/transport/index.ts';
import { CLI } from '../../helpers/celeriac-worker.ts';
import { readVector } from '../../helpers/fixtures.ts';
import { hasCommand, sleep, waitFor } from '../../helpers/services.ts';

const vector = (type: string): Record<string, unknown> => readVector<{ event: Record<string, unknown> }>(`events/${type}.json`).event;
function wire(body: unknown, raw?: string): WireMessage {
  return { headers: { hostname: 'x' }, properties: { delivery_mode: 1, priority: 0 }, contentType: 'application/json', contentEncoding: 'utf-8', body: Buffer.from(raw ?? JSON.stringify(body)) };
}

interface Running {
  proc: ChildProcess;
  out: () => string;
  err: () => string;
  exit: Promise<number | null>;
}

function run(args: string[], env: Record<string, string>): Running {
  const proc = spawn(process.execPath, [CLI, 'events', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { proc, out: () => out, err: () => err, exit };
}

async function interrupt(r: Running): Promise<number | null> {
  r.proc.kill('SIGINT');
  const code = await Promise.race([r.exit, sleep(15_000).then(() => 'timeout' as const)]);
  if (code === 'timeout') {
    r.proc.kill('SIGKILL');
    throw new Error(`celeriac events did not exit on SIGINT:\n${r.err()}`);
  }
  return code;
}

describe('celeriac events (CLI, SQLite)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-events-'));
  const url = `sqlite://${join(dir, 'broker.db')}`;
  const env = { CELERIAC_BROKER_URL: url, CELERIAC_LOG_FORMAT: 'json' };
  let broker: Broker;

  before(async () => {
    broker = await createBroker(url, { settings: resolveSettings({}), logger: createLogger({ level: 'silent' }) });
    await broker.connect();
  });
  after(async () => {
    await broker.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function broadcastAll(): Promise<void> {
    const ex = eventExchange();
    await broker.broadcast(ex, 'worker.online', wire(vector('worker-online')));
    await broker.broadcast(ex, 'task.sent', wire(vector('task-sent')));
    await broker.broadcast(ex, 'task.multi', wire([{ ...vector('task-received'), uuid: vector('task-sent').uuid }, vector('task-started'), vector('task-succeeded')]));
    await broker.broadcast(ex, 'task.multi', wire(undefined, '{"type": "task-failed", "hostname": 1'));
    await broker.broadcast(ex, 'task.multi', wire(undefined, '{"type":"worker-online","hostname":"x","timestamp":1,"__proto__":{"a":1}}'));
    await broker.broadcast(ex, 'worker.heartbeat', wire({ ...vector('worker-heartbeat'), hostname: 'evil\u001b[2J@host' }));
    await broker.broadcast(ex, 'worker.offline', wire(vector('worker-offline')));
  }

  it('--dump prints one line per event as celery events --dump does', async () => {
    const r = run(['--dump'], env);
    await waitFor(() => r.out().includes('-> evdump: starting capture...'), 30_000, `capture start:\n${r.err()}`);
    await broadcastAll();
    await waitFor(() => r.out().includes('shutdown'), 15_000, `all events:\n${r.out()}\n${r.err()}`);
    assert.equal(await interrupt(r), 0, r.err());
    const lines = r.out().trim().split('\n');
    assert.equal(lines[0], '-> evdump: starting capture...');
    const ev = lines.slice(1);
    assert.equal(ev.length, 7, ev.join('\n'));
    const sent = vector('task-sent');
    assert.match(ev[0]!, /^pyworker@localhost \[2026-11-\d\d \d\d:\d\d:\d\d\.\d{6}\] started: active=0, clock=1, freq=2\.0, loadavg=\[1\.26, 0\.99, 0\.5\], local_received=[\d.]+, pid=14480, processed=0, sw_ident=py-celery, sw_sys=Linux, sw_ver=5\.2\.6, utcoffset=0$/);
    assert.match(ev[1]!, new RegExp(`^gen14385@vm \\[[^\\]]+\\] task sent: tasks\\.add\\(${sent.uuid}\\) args=\\(2, 3\\) kwargs=\\{\\} clock=1, eta=None, exchange=, expires=None, local_received=[\\d.]+, parent_id=None, pid=14385, queue=celery, retries=0, root_id=${sent.root_id}, routing_key=celery, utcoffset=0$`));
    assert.match(ev[2]!, /^pyworker@localhost \[[^\]]+\] task received: tasks\.add\(/);
    assert.match(ev[3]!, /^pyworker@localhost \[[^\]]+\] task started: tasks\.add\(2d0acf73-4aec-4c50-95cf-7026e8379ac0\) args=\(2, 3\) kwargs=\{\} clock=5, /);
    assert.match(ev[4]!, /task succeeded: tasks\.add\(2d0acf73-[^)]+\) args=\(2, 3\) kwargs=\{\} clock=16, local_received=[\d.]+, pid=14480, result=5, runtime=0\.0154/);
    assert.match(ev[5]!, /^evil\\u001b\[2J@host \[[^\]]+\] heartbeat: /, 'the escape is shown, not sent to the terminal');
    assert.ok(!r.out().includes('\u001b'));
    assert.match(ev[6]!, /^pyworker@localhost \[[^\]]+\] shutdown: active=0/);
    assert.match(r.err(), /7 events, 2 malformed/);
  });

  it('--json prints one JSON object per event', async () => {
    const r = run(['--json'], env);
    await waitFor(() => r.err().includes('-> listening for events'), 30_000, `listening:\n${r.err()}`);
    await broadcastAll();
    await waitFor(() => r.out().includes('worker-offline'), 15_000, `all events:\n${r.out()}\n${r.err()}`);
    assert.equal(await interrupt(r), 0, r.err());
    const events = r.out().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(events.map((e) => e.type), ['worker-online', 'task-sent', 'task-received', 'task-started', 'task-succeeded', 'worker-heartbeat', 'worker-offline']);
    const { local_received: lr, ...rest } = events[4]!;
    assert.equal(typeof lr, 'number');
    assert.deepEqual(rest, vector('task-succeeded'));
    assert.equal(events[5]!.hostname, 'evil\u001b[2J@host', 'JSON keeps the value, escaped');
    assert.match(r.err(), /7 events, 2 malformed/);
  });

  it('not a terminal and no flag: one plain line per event', async () => {
    const r = run([], env);
    await waitFor(() => r.err().includes('-> listening for events'), 30_000, `listening:\n${r.err()}`);
    await broker.broadcast(eventExchange(), 'task.multi', wire([vector('task-failed')]));
    await waitFor(() => r.out().includes('task-failed'), 15_000, `event:\n${r.out()}\n${r.err()}`);
    assert.equal(await interrupt(r), 0, r.err());
    assert.match(r.out().trim(), /^\d{4}-\d\d-\d\dT[\d:.]+Z pyworker@localhost task-failed \[024b5d3e-3f5f-48a1-88c7-9a55dcc31941\] exception=ValueError\('bad value'\)$/);
  });

  it('on a terminal: the live view, redrawn in place, and the screen given back on Ctrl-C', async (t) => {
    if (!hasCommand('script')) {
      t.skip('script (util-linux) not available to make a pseudo-terminal');
      return;
    }
    // script(1) runs the command on a pseudo-terminal; a ^C written to it is the terminal's interrupt.
    const cmd = `stty cols 160 rows 40; exec ${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} events --last 5`;
    const proc = spawn('script', ['-qfec', cmd, '/dev/null'], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const exit = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    try {
      await waitFor(() => out.includes('Workers ('), 30_000, `live view:\n${out}`);
      await broadcastAll();
      await waitFor(() => /tasks\.add\s+SUCCESS/.test(out) && /pyworker@localhost\s+OFFLINE/.test(out), 15_000, `tasks in the view:\n${out}`);
      proc.stdin!.write('\u0003');
      assert.equal(await Promise.race([exit, sleep(15_000).then(() => 'timeout')]), 0);
    } finally {
      if (proc.exitCode === null) proc.kill('SIGKILL');
    }
    assert.ok(out.includes('\u001b[?1049h'), 'alternate screen');
    assert.ok(out.includes('\u001b[H'), 'redrawn from the top');
    assert.ok(out.indexOf('\u001b[?1049l') > out.lastIndexOf('Workers ('), 'screen given back at the end');
    assert.match(out, /Tasks by state: .*SUCCESS 1/);
    assert.match(out, /evil\\u001b\[2J@host/, 'the hostile hostname shown escaped');
    assert.ok(!out.includes('evil\u001b'));
    assert.match(out, /-> 7 events, 2 malformed/);
  });

  it('refuses --dump with --json', async () => {
    const r = run(['--dump', '--json'], env);
    assert.equal(await r.exit, 2);
    assert.match(r.err(), /exclusive/);
  });
});
