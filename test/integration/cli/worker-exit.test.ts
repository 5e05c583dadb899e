/**
 * A worker whose pool cannot start exits with an error instead of living on:
 * the start-up check opens the supervisor's own broker and backend
 * connections, and a failure after it must close them (a process kept alive
 * by them is a supervisor with no child that an orchestrator never restarts;
 * the chaos suite's pool shrank this way).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { CLI, ROOT } from '../../helpers/celeriac-worker.ts';
import { requireService, sleep } from '../../helpers/services.ts';
import { hasRedisServer, startRedisServer } from '../../helpers/redis-server.ts';

describe('worker exit after a failed start', () => {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-exit-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a prefork worker whose children cannot load the app exits non-zero, connections closed', async (t) => {
    if (!requireService(t, hasRedisServer(), 'redis-server')) return;
    const redis = await startRedisServer();
    t.after(() => redis.stop());
    const module = join(dir, 'app.mjs');
    // Loads in the supervisor, throws in every child (their entry is child-main).
    writeFileSync(
      module,
      `import { createApp } from ${JSON.stringify(pathToFileURL(join(ROOT, 'src', 'index.ts')).href)};\n` +
        `if (process.argv[1]?.includes('child-main')) throw new Error('this app cannot load in a child');\n` +
        `export const app = createApp();\n`,
    );
    const proc = spawn(process.execPath, [CLI, 'worker', '-A', module, '-P', 'prefork', '-c', '1', '--processes', '1', '-Q', 'worker-exit-test'], {
      env: { ...process.env, CELERIAC_BROKER_URL: redis.url(0), CELERIAC_RESULT_BACKEND: redis.url(1), CELERIAC_LOG_FORMAT: 'text' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
    const code = await Promise.race([exited, sleep(30_000).then(() => 'still running' as const)]);
    if (code === 'still running') proc.kill('SIGKILL');
    assert.notEqual(code, 'still running', `the worker did not exit:\n${out}`);
    assert.notEqual(code, 0, out);
    assert.match(out, /could not start|cannot load in a child/, out);
  });
});
