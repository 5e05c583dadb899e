/**
 * `celeriac demo` (the README's `npm start`) as a user runs it: a real
 * process, no server, exit code 0, a summary table, plain progress lines
 * when stderr is not a terminal; and Ctrl-C stops the workers it started
 * and removes its temporary directory. With neither CELERIAC_ENV nor
 * NODE_ENV set (a fresh shell: production by default) it asks for
 * development for its own processes and says so; an explicit
 * CELERIAC_ENV=production is refused up front.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { describe, it } from 'node:test';
import { CLI, ROOT } from '../../helpers/celeriac-worker.ts';
import { sleep } from '../../helpers/services.ts';

function run(args: string[], extraEnv: Record<string, string> = {}): { done: Promise<{ code: number | null; out: string; err: string }>; pid: number; err: () => string } {
  // A fresh shell: no mode variable (the test runner's NODE_ENV=test removed), so production is the default.
  const env = { ...process.env, CELERIAC_BROKER_URL: '', CELERIAC_RESULT_BACKEND: '', NODE_ENV: '', CELERIAC_ENV: '', ...extraEnv };
  const p = spawn(process.execPath, [CLI, 'demo', ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return { pid: p.pid!, err: () => err, done: new Promise((resolve) => p.on('exit', (code) => resolve({ code, out, err }))) };
}

function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('celeriac demo', { timeout: 120_000 }, () => {
  it('runs the sample batch on the embedded broker, prints the summary and exits 0', async () => {
    const { code, out, err } = await run(['--tasks', '120', '--workers', '1', '--concurrency', '4']).done;
    assert.equal(code, 0, `${out}\n${err}`);
    for (const row of ['succeeded', 'failed', 'retried', 'throughput', 'latency p50', 'latency p99']) assert.match(out, new RegExp(`│ ${row}`));
    assert.match(out, /│ succeeded\s+│\s+119 │/);
    assert.match(out, /│ failed\s+│\s+1 │/);
    assert.match(out, /│ retried\s+│\s+2 │/);
    // Not a terminal: plain progress lines, no carriage returns.
    assert.match(err, /^progress: 120\/120 done/m);
    assert.ok(!err.includes('\r'));
    const db = /database (\S+) \(temporary\)/.exec(err)?.[1];
    assert.ok(db && !existsSync(dirname(db)), 'temporary directory removed');
    // Development was asked for by the demo, visibly, and the next steps say how to do the same.
    assert.match(err, /security mode: development \(set by the demo for its own processes\)/);
    assert.match(out, /export CELERIAC_ENV=development/);
  });

  it('honours an explicit CELERIAC_ENV: production is refused up front, development runs', async () => {
    const prod = await run(['--tasks', '20', '--workers', '1'], { CELERIAC_ENV: 'production' }).done;
    assert.equal(prod.code, 2, prod.err);
    assert.match(prod.err, /CELERIAC_ENV="production": celeriac demo sends unsigned sample tasks, which only development mode accepts/);
    assert.doesNotMatch(prod.err, /database /, 'nothing was started');
    const bad = await run(['--tasks', '20', '--workers', '1'], { CELERIAC_ENV: 'prod' }).done;
    assert.equal(bad.code, 2, bad.err);
    const dev = await run(['--tasks', '20', '--workers', '1', '--concurrency', '2'], { CELERIAC_ENV: 'development', NODE_ENV: 'production' }).done;
    assert.equal(dev.code, 0, `${dev.out}\n${dev.err}`);
    assert.match(dev.err, /security mode: development \(CELERIAC_ENV=development\)/);
  });

  it('stops its workers and cleans up on Ctrl-C', async () => {
    const demo = run(['--tasks', '200000', '--workers', '1']);
    const deadline = Date.now() + 60_000;
    while (!demo.err().includes('sending')) {
      if (Date.now() > deadline) throw new Error(`demo never started sending:\n${demo.err()}`);
      await sleep(50);
    }
    const workers = childPids(demo.pid);
    assert.ok(workers.length >= 1, 'the demo started a worker process');
    const grandchildren = workers.flatMap(childPids);
    process.kill(demo.pid, 'SIGINT');
    const { code, err } = await demo.done;
    assert.equal(code, 130, err);
    await sleep(200);
    for (const pid of [...workers, ...grandchildren]) assert.ok(!alive(pid), `process ${pid} still running`);
    const db = /database (\S+) \(temporary\)/.exec(err)?.[1];
    assert.ok(db && !existsSync(dirname(db)), 'temporary directory removed');
  });
});
