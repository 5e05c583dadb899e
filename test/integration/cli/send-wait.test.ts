/**
 * `celeriac send --wait` tells the sender what happens: it says what it is
 * waiting for, gives up after a default timeout with a hint, and ends with
 * the worker's reason when the worker refuses the message (dead-lettered)
 * instead of waiting in silence. On the embedded SQLite broker.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { CLI, ROOT } from '../../helpers/celeriac-worker.ts';
import { sleep, waitFor } from '../../helpers/services.ts';

const TASKS = join(ROOT, 'src', 'cli', 'demo-tasks.ts');

function cli(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('send --wait', () => {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-sendwait-'));
  const url = `sqlite://${join(dir, 'broker.db')}`;
  const env = { CELERIAC_BROKER_URL: url, CELERIAC_RESULT_BACKEND: url, CELERIAC_LOG_FORMAT: 'json' };
  let worker: ChildProcess | undefined;
  let out = '';

  before(async () => {
    worker = spawn(process.execPath, [CLI, 'worker', '-A', TASKS, '-P', 'solo', '-c', '1', '-Q', 'sendwait'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    worker.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    worker.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor(() => /worker \S+ ready/.test(out), 30_000, `worker ready:\n${out}`);
  });
  after(async () => {
    if (worker && worker.exitCode === null) {
      worker.kill('SIGTERM');
      await Promise.race([new Promise((r) => worker!.once('exit', r)), sleep(10_000)]);
      if (worker.exitCode === null) worker.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('prints the result of a task that runs', async () => {
    const r = await cli(['send', 'demo.add', '[2, 3]', '-Q', 'sendwait', '--wait'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { result: unknown }).result, 5);
  });

  it('ends with the worker’s reason when the worker refuses the message', async () => {
    // A client that sends msgpack to a worker that accepts only json: the worker dead-letters it unrun.
    const sender = join(dir, 'msgpack-client.mjs');
    writeFileSync(sender, `import { createApp } from ${JSON.stringify(pathToFileURL(join(ROOT, 'src', 'index.ts')).href)};\nexport const app = createApp({ taskSerializer: 'msgpack' });\n`);
    const r = await cli(['send', 'demo.add', '[2, 3]', '-Q', 'sendwait', '-A', sender, '--wait'], env);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /the worker refused task demo\.add\[[0-9a-f-]+\] on queue sendwait without running it: .*msgpack.*dead-letter queue sendwait\.dlq/i);
  });

  it('says what it waits for and gives up with a hint when no worker consumes the queue', async () => {
    const r = await cli(['send', 'demo.add', '[2, 3]', '-Q', 'nobody-listens', '--wait', '--timeout', '3'], env);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /waiting for the result of demo\.add\[[0-9a-f-]+\] on queue nobody-listens \(up to 3 s; --timeout <s> to change\)/);
    assert.match(r.stderr, /no result for demo\.add\[[0-9a-f-]+\] on queue nobody-listens after 3 s\. Is a worker consuming that queue/);
  });
});
