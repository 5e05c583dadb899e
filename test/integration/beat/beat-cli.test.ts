/**
 * `celeriac beat` refusals: what it says when it cannot run safely.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { CLI, ROOT } from '../../helpers/celeriac-worker.ts';

function run(args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  const proc = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, NODE_ENV: '', ...env }, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((r) => proc.once('exit', (code) => r({ code, out })));
}

describe('celeriac beat refusals', () => {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-beat-cli-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const module = join(dir, 'app.mjs');
  writeFileSync(
    module,
    `import { createApp } from ${JSON.stringify(pathToFileURL(join(ROOT, 'src', 'index.ts')).href)};\n` +
      `export const app = createApp();\nexport const beatSchedule = { t: { task: 'tasks.add', schedule: 10 } };\n`,
  );

  it('a RabbitMQ broker without a Redis or SQLite result backend: refused, saying what to set', async () => {
    const { code, out } = await run(['beat', '-A', module, '--log-format', 'text'], { CELERIAC_ENV: 'development', CELERIAC_BROKER_URL: 'amqp://guest:guest@127.0.0.1:5672//' });
    assert.notEqual(code, 0, out);
    assert.match(out, /needs a lock to elect one leader/);
    assert.match(out, /CELERIAC_RESULT_BACKEND|--state-url/);
    assert.doesNotMatch(out, /guest:guest@/, 'no password in the output');
  });

  it('production mode without signing keys: refused before sending anything', async () => {
    const { code, out } = await run(['beat', '-A', module, '--log-format', 'text'], { CELERIAC_ENV: 'production', CELERIAC_UNSAFE_ALLOW_ROOT: '1', CELERIAC_BROKER_URL: `sqlite://${join(dir, 'b.db')}` });
    assert.notEqual(code, 0, out);
    assert.match(out, /CEL-007/, out);
    assert.doesNotMatch(out, /beat: sent/);
  });

  it('a schedule error names the entry', async () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ nightly: { task: 'x', schedule: { minute: '0', hour: '26' } } }));
    const { code, out } = await run(['beat', '-A', module, '--schedule', bad], { CELERIAC_ENV: 'development', CELERIAC_BROKER_URL: `sqlite://${join(dir, 'c.db')}` });
    assert.notEqual(code, 0, out);
    assert.match(out, /beat entry nightly: crontab "0 26 \* \* \*" is not valid/);
  });
});
