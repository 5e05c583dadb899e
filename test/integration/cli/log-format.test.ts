/**
 * The worker's log lines as people and machines see them: text on a
 * terminal (a pseudo-terminal from `script`), JSON through a pipe,
 * `--log-format` choosing either, Celery's level names accepted, and each
 * task's received/succeeded lines at info. On the embedded SQLite broker in
 * a private directory, so no server is needed.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../../src/client/app.ts';
import { CLI, ROOT } from '../../helpers/celeriac-worker.ts';
import { hasCommand, requireService, sleep } from '../../helpers/services.ts';

const TASKS = join(ROOT, 'src', 'cli', 'demo-tasks.ts');

describe('worker log format', () => {
  let dir = '';
  let url = '';
  let client: App | undefined;
  const procs: ChildProcess[] = [];

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'celeriac-logfmt-'));
    url = `sqlite://${join(dir, 'broker.db')}`;
    client = createApp({ brokerUrl: url, resultBackend: url });
  });
  after(async () => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) process.kill(-p.pid!, 'SIGKILL');
    await client?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Start a worker (through `script` for a terminal), send demo.add, stop it; returns everything it wrote. */
  async function run(args: string[], opts: { tty: boolean; queue: string; until: RegExp }): Promise<string> {
    const argv = [process.execPath, CLI, 'worker', '-A', TASKS, '-Q', opts.queue, '-c', '1', '--processes', '1', ...args];
    const quoted = argv.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    const proc = opts.tty
      ? spawn('script', ['-qfec', quoted, '/dev/null'], { env: { ...process.env, CELERIAC_BROKER_URL: url, CELERIAC_RESULT_BACKEND: url, CELERIAC_LOG_LEVEL: '', CELERIAC_LOG_FORMAT: '', NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
      : spawn(argv[0]!, argv.slice(1), { env: { ...process.env, CELERIAC_BROKER_URL: url, CELERIAC_RESULT_BACKEND: url, CELERIAC_LOG_LEVEL: '', CELERIAC_LOG_FORMAT: '' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    procs.push(proc);
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise((r) => proc.once('exit', r));
    try {
      // The task is sent before the worker is up: it waits in the queue, so a worker that logs nothing at its level still proves it ran.
      const r = await client!.sendTask<number>('demo.add', [2, 3], {}, { queue: opts.queue });
      assert.equal(await r.get({ timeoutMs: 30_000 }), 5, out);
      const deadline = Date.now() + 10_000;
      while (!opts.until.test(out) && Date.now() < deadline) await sleep(50);
    } finally {
      process.kill(-proc.pid!, 'SIGTERM');
      await Promise.race([exited, sleep(10_000)]);
    }
    return out.replace(/\r/g, '');
  }

  it('writes readable lines on a terminal: local time, level names, task received and succeeded at info', async (t) => {
    if (!requireService(t, hasCommand('script'), 'script (util-linux) for a pseudo-terminal')) return;
    // The supervisor's ready line may come after the child already ran the queued task: wait for both.
    const out = await run([], { tty: true, queue: 'logfmt-tty', until: /worker \S+ ready[\s\S]*task succeeded|task succeeded[\s\S]*worker \S+ ready/ });
    assert.doesNotMatch(out, /^\{"level"/m, 'no JSON on a terminal');
    assert.match(out, /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO\/\d+\] worker \S+ ready/m);
    assert.match(out, /^\[[^\]]+ INFO\/\d+\] task received  task=demo\.add id=\S+$/m);
    assert.match(out, /^\[[^\]]+ INFO\/\d+\] task succeeded  task=demo\.add id=\S+ runtimeMs=/m);
  });

  it('writes JSON through a pipe, and text with --log-format text', async () => {
    const json = await run([], { tty: false, queue: 'logfmt-pipe', until: /"task succeeded"/ });
    const lines = json.split('\n').filter(Boolean);
    assert.ok(lines.length > 0 && lines.every((l) => JSON.parse(l) && l.startsWith('{')), json);
    assert.ok(lines.some((l) => (JSON.parse(l) as { msg: string }).msg === 'task received'));
    const text = await run(['--log-format', 'text'], { tty: false, queue: 'logfmt-text', until: /task succeeded/ });
    assert.match(text, /^\[[^\]]+ INFO\/\d+\] task succeeded/m);
  });

  it("accepts Celery's level names (-l warning, -l critical) and refuses an unknown one with a usage error", async () => {
    for (const level of ['warning', 'critical', 'WARNING', 'fatal']) {
      const out = await run(['-l', level], { tty: false, queue: `logfmt-${level}`, until: /(?:)/ });
      assert.doesNotMatch(out, /task received|Error|pino/i, `-l ${level}: ${out}`);
    }
    const bad = spawn(process.execPath, [CLI, 'worker', '-A', TASKS, '-l', 'loud'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    bad.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise((r) => bad.once('exit', r));
    assert.equal(code, 2);
    assert.match(err, /--loglevel "loud" is not a log level — use one of .*warning.*critical/);
  });
});
