/**
 * `celeriac audit -A module`: a loaded Celeriac app is audited with its
 * settings and tasks (tasks without schemas are listed, CEL-018); the
 * live-probe scope admits loopback and configured hosts only; the command
 * is registered in the CLI.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { runAudit } from '../../../src/audit/index.ts';
import { ProbeScope } from '../../../src/audit/live/common.ts';
import type { AuditFinding } from '../../../src/audit/types.ts';
import { runAuditCommand } from '../../../src/cli/audit.ts';
import { main } from '../../../src/cli/main.ts';
import { captureIo as capture } from './capture-io.ts';

describe('celeriac audit -A and probe scope', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'celeriac-audit-app-'));
    const appUrl = new URL('../../../src/client/app.ts', import.meta.url).href;
    const zodUrl = pathToFileURL(createRequire(import.meta.url).resolve('zod')).href;
    // .mts: the temp directory has no package.json saying "type": "module".
    writeFileSync(join(dir, 'tasks.mts'), [
      `import { z } from ${JSON.stringify(zodUrl)};`,
      `import { createApp } from ${JSON.stringify(appUrl)};`,
      `export const app = createApp({ brokerUrl: 'memory://audit-test', resultBackend: 'redis://127.0.0.1:6379/0', taskTimeLimit: 60 });`,
      `app.task('tasks.loose', (x: number) => x);`,
      `app.task('tasks.checked', (x: number) => x, { schema: { args: z.tuple([z.number()]) } });`,
    ].join('\n'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('audits a loaded app: its settings through the policy, its tasks without schemas', async () => {
    const c = capture(dir);
    const code = await runAuditCommand(['-A', join(dir, 'tasks.mts'), dir, '--json', '--no-env'], c.io);
    assert.equal(code, 1);
    const findings = (JSON.parse(c.out()) as { findings: AuditFinding[] }).findings;
    const loose = findings.find((f) => f.id === 'CEL-018');
    assert.ok(loose && /tasks\.loose/.test(loose.message) && !/tasks\.checked/.test(loose.message), JSON.stringify(loose));
    assert.ok(findings.some((f) => f.id === 'CEL-014' && f.fromPolicy), 'the backend URL went through the policy');
    assert.ok(!findings.some((f) => f.id === 'CEL-020'), 'taskTimeLimit was read from the app');
  });

  it('a password written into Celeriac settings is a finding; a ${file:…} reference is not', async () => {
    const strong = 'tR4vQ9zLm2Xw8KpNa7Yc';
    const written = await runAudit({ celeriacSettings: { brokerUrl: `rediss://w:${strong}@redis.internal:6379/0` }, celeriacSettingsFile: '/etc/app/celeriac.json' });
    const f = written.findings.find((x) => x.id === 'CEL-002' && x.setting === 'brokerUrl');
    assert.ok(f && !f.message.includes(strong), JSON.stringify(written.findings));
    const referenced = await runAudit({ celeriacSettings: { brokerUrl: 'rediss://w:${file:/nonexistent/pw}@redis.internal:6379/0' } });
    assert.ok(!referenced.findings.some((x) => x.id === 'CEL-002' && x.setting === 'brokerUrl' && /written/.test(x.message)));
  });

  it('probes only loopback and hosts named in the configuration', async () => {
    const scope = new ProbeScope();
    assert.equal(scope.allowed('127.0.0.1'), true);
    assert.equal(scope.allowed('::1'), true);
    assert.equal(scope.allowed('localhost'), true);
    assert.equal(scope.allowed('flower.example.com'), false);
    scope.allow('Redis.Internal');
    assert.equal(scope.allowed('redis.internal'), true);
    const r = await runAudit({ live: true, http: ['http://192.0.2.1:5555/'], timeoutMs: 200 });
    assert.deepEqual(r.findings, []);
    assert.match(r.notes.join('\n'), /192\.0\.2\.1:5555 was not probed/);
  });

  it('is registered as a CLI command', async () => {
    const c = capture(dir);
    assert.equal(await main(['audit', '--help'], c.io), 0);
    assert.match(c.out(), /Usage: celeriac audit/);
    const h = capture(dir);
    await main(['--help'], h.io);
    assert.match(h.out(), /audit\s+check a Celeriac or Python Celery deployment/);
  });
});
