/**
 * The compiled package (dist/, what `celeriac` exports and what an installed
 * CLI runs): a worker started from it forks plain JavaScript children with no
 * TypeScript loader, and still loads a TypeScript app module (tsx registered
 * on demand) with one copy of Celeriac, so `currentTask()` works.
 * The build goes to a private directory under tmp/ (git-ignored), on the
 * embedded SQLite broker, so no server is needed.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { createApp, type App } from '../../../src/client/app.ts';
import { ROOT } from '../../helpers/celeriac-worker.ts';
import { sleep } from '../../helpers/services.ts';

const DIR = join(ROOT, 'tmp', `compiled-${process.pid}`);
const DIST = join(DIR, 'dist');
const DB = join(DIR, 'broker.db');

const APP_SOURCE = (ext: 'mjs' | 'ts'): string => `
import { createApp, currentTask } from './dist/index.js';
export const app = createApp({ brokerUrl: process.env.COMPILED_URL, resultBackend: process.env.COMPILED_URL });
app.task('compiled.info', () => ({
  execArgv: process.execArgv,
  pid: process.pid,
  id: currentTask().request.id,
  module: ${JSON.stringify(ext)},
}));
`;

interface Info {
  execArgv: string[];
  pid: number;
  id: string;
  module: string;
}

function startWorker(appFile: string, queue: string): { proc: ChildProcess; ready: Promise<void>; output: () => string } {
  const runner = `const { main } = await import(${JSON.stringify(pathToFileURL(join(DIST, 'cli', 'main.js')).href)}); process.exitCode = await main(process.argv.slice(1));`;
  const proc = spawn(process.execPath, ['--input-type=module', '-e', runner, 'worker', '-A', appFile, '-Q', queue, '-c', '2', '--processes', '1'], {
    env: { ...process.env, COMPILED_URL: `sqlite://${DB}`, CELERIAC_LOG_LEVEL: 'info', NODE_OPTIONS: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const ready = (async () => {
    const deadline = Date.now() + 30_000;
    while (!/worker \S+ ready/.test(out)) {
      if (proc.exitCode !== null) throw new Error(`compiled worker exited early:\n${out}`);
      if (Date.now() > deadline) throw new Error(`compiled worker not ready after 30 s:\n${out}`);
      await sleep(50);
    }
  })();
  return { proc, ready, output: () => out };
}

async function stopWorker(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  await Promise.race([exited, sleep(10_000).then(() => proc.kill('SIGKILL'))]);
}

describe('compiled package (dist/)', () => {
  let client: App | undefined;
  const workers: ChildProcess[] = [];

  before(() => {
    rmSync(DIR, { recursive: true, force: true });
    mkdirSync(DIR, { recursive: true, mode: 0o700 });
    execFileSync(process.execPath, [join(ROOT, 'scripts', 'build.mjs'), '--out', DIST], { stdio: 'pipe' });
    writeFileSync(join(DIR, 'app.mjs'), APP_SOURCE('mjs'));
    writeFileSync(join(DIR, 'app.ts'), APP_SOURCE('ts'));
    client = createApp({ brokerUrl: `sqlite://${DB}`, resultBackend: `sqlite://${DB}` });
  });
  after(async () => {
    for (const w of workers) await stopWorker(w);
    await client?.close();
    rmSync(DIR, { recursive: true, force: true });
  });

  for (const ext of ['mjs', 'ts'] as const) {
    it(`runs a ${ext === 'ts' ? 'TypeScript' : 'JavaScript'} app in children without a TypeScript loader flag`, async () => {
      const w = startWorker(join(DIR, `app.${ext}`), `compiled-${ext}`);
      workers.push(w.proc);
      await w.ready;
      const r = await client!.sendTask<Info>('compiled.info', [], {}, { queue: `compiled-${ext}` });
      const info = await r.get({ timeoutMs: 20_000 });
      assert.equal(info.module, ext);
      // currentTask() saw the running task: the app and the worker share one copy of Celeriac.
      assert.equal(info.id, r.id);
      assert.notEqual(info.pid, w.proc.pid, 'tasks run in a child process');
      assert.deepEqual(info.execArgv.filter((a) => /tsx|--import|--loader/.test(a)), [], `child execArgv: ${info.execArgv.join(' ')}`);
      await stopWorker(w.proc);
    });
  }
});
