/**
 * A worker started before its broker waits for it (Celery's
 * broker_connection_retry_on_startup): it says when it tries again, becomes
 * ready once Redis is up, and gives up with exit code 4 after
 * brokerConnectionMaxRetries. Redis is a private server on a free port.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { CLI, ROOT } from '../../helpers/celeriac-worker.ts';
import { hasRedisServer } from '../../helpers/redis-server.ts';
import { freePort, requireService, sleep, waitFor } from '../../helpers/services.ts';

describe('worker start-up retry', () => {
  const procs: ChildProcess[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-startup-'));
  after(() => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  function worker(module: string, url: string): { proc: ChildProcess; out: () => string; exited: Promise<number | null> } {
    const proc = spawn(process.execPath, [CLI, 'worker', '-A', module, '-P', 'solo', '-c', '1', '-Q', 'startup-retry'], {
      env: { ...process.env, CELERIAC_BROKER_URL: url, CELERIAC_RESULT_BACKEND: url, CELERIAC_LOG_FORMAT: 'text', CELERIAC_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    procs.push(proc);
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
    return { proc, out: () => out, exited };
  }

  it('waits with a countdown for a broker that starts later, then runs', async (t) => {
    if (!requireService(t, hasRedisServer(), 'redis-server')) return;
    const port = await freePort();
    const module = join(dir, 'app.mjs');
    writeFileSync(module, `import { createApp } from ${JSON.stringify(pathToFileURL(join(ROOT, 'src', 'index.ts')).href)};\nexport const app = createApp();\n`);
    const w = worker(module, `redis://127.0.0.1:${port}/0`);
    await waitFor(() => /trying again in 2\.00 seconds\.\.\. \(1\/100\)/.test(w.out()), 20_000, `a countdown line:\n${w.out()}`);
    assert.equal(w.proc.exitCode, null, 'still waiting, not exited');
    const redis = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    procs.push(redis);
    try {
      await waitFor(() => /worker \S+ ready/.test(w.out()), 30_000, `ready after Redis started:\n${w.out()}`);
      assert.match(w.out(), /connected after \d+ attempts/);
    } finally {
      w.proc.kill('SIGTERM');
      await Promise.race([w.exited, sleep(10_000)]);
      redis.kill('SIGTERM');
    }
  });

  it('gives up after brokerConnectionMaxRetries with exit code 4', async () => {
    const port = await freePort();
    const module = join(dir, 'limited.mjs');
    writeFileSync(module, `import { createApp } from ${JSON.stringify(pathToFileURL(join(ROOT, 'src', 'index.ts')).href)};\nexport const app = createApp({ brokerConnectionMaxRetries: 1 });\n`);
    const w = worker(module, `redis://127.0.0.1:${port}/0`);
    const code = await Promise.race([w.exited, sleep(30_000).then(() => 'timeout')]);
    assert.equal(code, 4, w.out());
    assert.match(w.out(), /\(1\/1\)/);
    assert.match(w.out(), /gave up after 2 attempts \(brokerConnectionMaxRetries is 1\)/);
  });
});
