/**
 * A `file:` dependency on a checkout (node_modules/celeriac is a symlink to
 * a directory that has src/ beside dist/): the installed `celeriac` command
 * runs dist/, the same files the app's `import 'celeriac'` loads, so
 * currentTask() works — the CLI must not run src/ through tsx there.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { createApp } from '../../src/client/app.ts';
import { ROOT } from '../helpers/celeriac-worker.ts';
import { sleep, waitFor } from '../helpers/services.ts';

const dir = mkdtempSync(join(tmpdir(), 'celeriac-filedep-'));
after(() => rmSync(dir, { recursive: true, force: true }));

it('runs dist/ and keeps one task context when installed as a file: dependency', async (t) => {
  if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) return t.skip('dist/ not built (npm run build)');
  mkdirSync(join(dir, 'node_modules', '.bin'), { recursive: true });
  symlinkSync(ROOT.replace(/\/$/, ''), join(dir, 'node_modules', 'celeriac'));
  symlinkSync('../celeriac/bin/celeriac.mjs', join(dir, 'node_modules', '.bin', 'celeriac'));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'filedep', version: '1.0.0', type: 'commonjs' }));
  writeFileSync(
    join(dir, 'app.cjs'),
    `const { createApp, currentTask } = require('celeriac');\nconst app = createApp();\napp.task('filedep.info', () => ({ id: currentTask().request.id }));\nmodule.exports = { app };\n`,
  );
  const url = `sqlite://${join(dir, 'broker.db')}`;
  const env = { ...process.env, CELERIAC_BROKER_URL: url, CELERIAC_RESULT_BACKEND: url, CELERIAC_LOG_FORMAT: 'json', NODE_OPTIONS: '' };
  const proc = spawn(join(dir, 'node_modules', '.bin', 'celeriac'), ['worker', '-A', './app.cjs', '-P', 'solo', '-c', '1', '-Q', 'filedep'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const client = createApp({ brokerUrl: url, resultBackend: url });
  try {
    await waitFor(() => /worker \S+ ready/.test(out) || proc.exitCode !== null, 30_000, 'worker ready');
    assert.match(out, /worker \S+ ready/, out);
    const r = await client.sendTask<{ id: string }>('filedep.info', [], {}, { queue: 'filedep' });
    // Had the CLI run src/, the app's require('celeriac') (dist/) would hold a second task context, and currentTask() would throw.
    const info = await r.get({ timeoutMs: 20_000 });
    assert.equal(info.id, r.id, 'currentTask() inside the task');
  } finally {
    await client.close();
    proc.kill('SIGTERM');
    await Promise.race([new Promise((r) => proc.once('exit', r)), sleep(10_000)]);
  }
});
