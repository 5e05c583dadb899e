/**
 * The layering of src/ (issue #14), enforced: .dependency-cruiser.cjs is the
 * architecture in executable form, and this test runs it, so `npm test` (CI)
 * fails on an import that crosses a layer, a cycle or an engine reaching into
 * another engine. docs/architecture.md draws the same rules.
 *
 * The second part plants one violation per rule in a scratch tree and checks
 * that exactly the expected rule fires (and that the allowed edges stay
 * allowed), so a rule that silently stops matching fails here too.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { IConfiguration, IViolation } from 'dependency-cruiser';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const CONFIG_FILE = join(ROOT, '.dependency-cruiser.cjs');
const CONFIG = createRequire(import.meta.url)(CONFIG_FILE) as IConfiguration;
const LINT = join(ROOT, 'scripts', 'lint-layers.mjs');

/** What scripts/lint-layers.mjs --json reports. */
interface LintResult {
  totalCruised: number;
  errors: IViolation[];
  ignored: IViolation[];
  typeOnlyCycles: IViolation[];
}

/**
 * Runs `npm run lint:layers`'s script on `src/` under `baseDir` with `configFile`. A child process on
 * plain Node: in-process under tsx, the swc visitor class that dependency-cruiser loads from
 * @swc/core (CommonJS) comes out undefined.
 */
function lint(baseDir: string, configFile: string): LintResult {
  const r = spawnSync(process.execPath, [LINT, '--json', '--config', configFile], { cwd: baseDir, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  assert.ok(r.stdout.trim().startsWith('{'), `lint-layers printed a result (exit ${r.status}): ${r.stderr}`);
  const result = JSON.parse(r.stdout) as LintResult;
  assert.equal(r.status, result.errors.length === 0 ? 0 : 1, 'exit status 1 exactly when there is a violation');
  return result;
}

function describeViolation(v: IViolation): string {
  const where = v.cycle && v.cycle.length > 0 ? [v.from, ...v.cycle.map((c) => c.name)].join(' → ') : `${v.from} → ${v.to}`;
  return `${v.rule.name}: ${where}`;
}

describe('layering of src/ (.dependency-cruiser.cjs)', () => {
  it('src/ has no violation outside the temporary allowlist', async () => {
    const result = lint(ROOT, CONFIG_FILE);
    assert.ok(result.totalCruised > 50, `cruised ${result.totalCruised} modules: the whole of src/`);
    assert.deepEqual(
      result.errors.map(describeViolation),
      [],
      'imports that break the layering (see the comment of each rule in .dependency-cruiser.cjs and docs/architecture.md)',
    );
  });

  it('every entry of the temporary allowlist still occurs (fixed ones are deleted from it)', async () => {
    const known = CONFIG.options?.knownViolations ?? [];
    if (known.length === 0) return;
    const { ignored } = lint(ROOT, CONFIG_FILE);
    const stale = known.filter((k) => !ignored.some((v) => v.rule.name === k.rule.name && v.from === k.from && v.to === k.to));
    assert.deepEqual(
      stale.map((k) => `${k.rule.name}: ${k.from} → ${k.to}`),
      [],
      'allowlist entries that no longer occur: delete them from TEMPORARY_ALLOWLIST',
    );
  });
});

/** One import planted in a scratch tree: the file, its import statement, and the rules it must break. */
interface Case {
  file: string;
  code: string;
  rules: string[];
}

// Files the cases import; each exists and imports nothing itself.
const TARGETS = [
  'src/errors.ts',
  'src/protocol/types.ts',
  'src/codec/json.ts',
  'src/config/url.ts',
  'src/core/broker.ts',
  'src/observability/logging.ts',
  'src/observability/security-events.ts',
  'src/transport/redis/connection.ts',
  'src/transport/amqp/connection.ts',
  'src/transport/virtual/consumer-core.ts',
  'src/client/app.ts',
  'src/client/task.ts',
  'src/worker/worker.ts',
  'src/audit/report.ts',
  'src/cli/main.ts',
  'src/dashboard/server/index.ts',
  'src/dashboard/model/index.ts',
  'src/beat/beat.ts',
  'src/control/mailbox.ts',
  'src/security/control-guard.ts',
];

const CASES: Case[] = [
  // forbidden
  { file: 'src/protocol/type-from-observability.ts', code: "import type { L } from '../observability/logging.ts';", rules: ['protocol-codec-stay-pure'] },
  { file: 'src/codec/imports-core.ts', code: "import '../core/broker.ts';", rules: ['protocol-codec-stay-pure'] },
  { file: 'src/config/imports-client.ts', code: "import '../client/app.ts';", rules: ['config-stays-pure'] },
  { file: 'src/config/type-from-engine.ts', code: "import type { X } from '../transport/redis/connection.ts';", rules: ['config-stays-pure', 'engines-only-through-registry'] },
  { file: 'src/config/type-from-pino.ts', code: "import type { Logger } from 'pino';", rules: ['pure-layers-no-io-packages'] },
  { file: 'src/core/imports-pino.ts', code: "import 'pino';", rules: ['pure-layers-no-io-packages'] },
  { file: 'src/codec/imports-http.ts', code: "import 'node:http';", rules: ['pure-layers-no-network-builtins'] },
  { file: 'src/config/imports-child-process.ts', code: "import 'node:child_process';", rules: ['pure-layers-no-network-builtins'] },
  { file: 'src/protocol/imports-net.ts', code: "import 'node:net';", rules: ['protocol-codec-no-sockets'] },
  { file: 'src/core/imports-observability.ts', code: "import '../observability/security-events.ts';", rules: ['core-is-interfaces-only'] },
  { file: 'src/core/names-the-logger.ts', code: "import type { Logger } from '../observability/logging.ts';", rules: [] },
  { file: 'src/observability/imports-worker.ts', code: "import '../worker/worker.ts';", rules: ['observability-is-a-leaf'] },
  { file: 'src/transport/redis/imports-client.ts', code: "import '../../client/app.ts';", rules: ['transport-not-upward'] },
  { file: 'src/transport/redis/imports-amqp.ts', code: "import '../amqp/connection.ts';", rules: ['engines-are-independent'] },
  { file: 'src/transport/redis/imports-registry.ts', code: "import '../index.ts';", rules: ['engines-are-independent'] },
  { file: 'src/transport/virtual/imports-engine.ts', code: "import '../redis/connection.ts';", rules: ['engines-are-independent'] },
  {
    file: 'src/client/dynamic-engine.ts',
    code: "export const load = async () => import('../transport/redis/connection.ts');",
    rules: ['engines-only-through-registry'],
  },
  { file: 'src/worker/imports-registry.ts', code: "import '../transport/index.ts';", rules: ['worker-sees-core-interfaces-only'] },
  {
    file: 'src/worker/imports-engine.ts',
    code: "import '../transport/redis/connection.ts';",
    rules: ['engines-only-through-registry', 'worker-sees-core-interfaces-only'],
  },
  { file: 'src/worker/type-from-app.ts', code: "import type { App } from '../client/app.ts';", rules: ['worker-not-app'] },
  { file: 'src/client/imports-worker.ts', code: "import '../worker/worker.ts';", rules: ['client-not-worker'] },
  { file: 'src/audit/imports-worker.ts', code: "import '../worker/worker.ts';", rules: ['audit-stays-offline-of-the-runtime'] },
  { file: 'src/beat/imports-registry.ts', code: "import '../transport/index.ts';", rules: ['beat-sends-through-the-client'] },
  { file: 'src/beat/imports-worker.ts', code: "import '../worker/worker.ts';", rules: ['beat-sends-through-the-client'] },
  { file: 'src/worker/imports-beat.ts', code: "import '../beat/beat.ts';", rules: ['beat-only-from-cli'] },
  { file: 'src/beat/uses-client.ts', code: "import '../client/app.ts';\nimport '../core/broker.ts';\nimport '../observability/logging.ts';\nimport '../errors.ts';", rules: [] },
  { file: 'src/control/imports-worker.ts', code: "import '../worker/worker.ts';", rules: ['control-mailbox-is-generic'] },
  { file: 'src/control/type-from-security.ts', code: "import type { G } from '../security/control-guard.ts';", rules: ['control-mailbox-is-generic'] },
  { file: 'src/control/imports-client.ts', code: "import '../client/app.ts';", rules: ['control-mailbox-is-generic'] },
  { file: 'src/observability/imports-control.ts', code: "import '../control/mailbox.ts';", rules: ['observability-is-a-leaf'] },
  { file: 'src/beat/imports-security.ts', code: "import '../security/control-guard.ts';", rules: ['beat-sends-through-the-client'] },
  { file: 'src/control/uses-core.ts', code: "import '../core/broker.ts';\nimport '../observability/security-events.ts';\nimport '../protocol/types.ts';\nimport '../errors.ts';", rules: [] },
  { file: 'src/beat/uses-control.ts', code: "import '../control/mailbox.ts';", rules: [] },
  { file: 'src/worker/uses-control.ts', code: "import '../control/mailbox.ts';", rules: [] },
  { file: 'src/cli/starts-beat.ts', code: "import '../beat/beat.ts';", rules: [] },
  { file: 'src/worker/imports-cli.ts', code: "import '../cli/main.ts';", rules: ['cli-only-from-bin'] },
  { file: 'src/dashboard/server/imports-worker.ts', code: "import '../../worker/worker.ts';", rules: ['dashboard-stays-above-the-app'] },
  { file: 'src/client/imports-dashboard.ts', code: "import '../dashboard/server/index.ts';", rules: ['dashboard-only-from-cli'] },
  { file: 'src/dashboard/model/imports-server.ts', code: "import '../server/index.ts';", rules: ['dashboard-model-below-server'] },
  { file: 'src/dashboard/model/imports-worker.ts', code: "import '../../worker/worker.ts';", rules: ['dashboard-model-below-server', 'dashboard-stays-above-the-app'] },
  { file: 'src/dashboard/model/uses-client.ts', code: "import '../../client/app.ts';\nimport '../../core/broker.ts';\nimport '../../observability/security-events.ts';", rules: [] },
  { file: 'src/client/imports-missing.ts', code: "import './missing.ts';", rules: ['not-to-unresolvable'] },
  { file: 'src/worker/cycle-a.ts', code: "import './cycle-b.ts';", rules: ['no-circular'] },
  // dependency-cruiser reports a cycle once, from its first member in file order
  { file: 'src/worker/cycle-b.ts', code: "import './cycle-a.ts';", rules: [] },
  // a cycle with one edge through `import type` does not exist at run time: not counted
  { file: 'src/worker/type-cycle-a.ts', code: "import type { B } from './type-cycle-b.ts';\nexport type A = B;", rules: [] },
  { file: 'src/worker/type-cycle-b.ts', code: "import './type-cycle-a.ts';\nexport type B = string;", rules: [] },
  // …but a cycle through a dynamic import() does
  { file: 'src/client/dyn-cycle-a.ts', code: "export const load = async () => import('./dyn-cycle-b.ts');", rules: ['no-circular'] },
  { file: 'src/client/dyn-cycle-b.ts', code: "import { load } from './dyn-cycle-a.ts';\nexport const again = load;", rules: [] },
  // allowed
  { file: 'src/transport/index.ts', code: "export const load = async () => import('./redis/connection.ts');", rules: [] },
  { file: 'src/client/creates-engines.ts', code: "import '../transport/index.ts';\nimport '../core/broker.ts';", rules: [] },
  {
    file: 'src/transport/redis/uses-shared.ts',
    code: "import '../virtual/consumer-core.ts';\nimport '../../core/broker.ts';\nimport '../../observability/logging.ts';\nimport '../../config/url.ts';\nimport 'pino';",
    rules: [],
  },
  {
    file: 'src/config/reads-files.ts',
    code: "import 'node:fs';\nimport 'node:net';\nimport 'node:tls';\nimport '../codec/json.ts';\nimport '../protocol/types.ts';\nimport '../core/broker.ts';\nimport '../errors.ts';",
    rules: [],
  },
  { file: 'src/codec/reads-certs.ts', code: "import 'node:fs';\nimport 'node:crypto';\nimport 'node:zlib';", rules: [] },
  { file: 'src/core/uses-vocabulary.ts', code: "import '../protocol/types.ts';\nimport '../codec/json.ts';\nimport '../config/url.ts';\nimport '../errors.ts';", rules: [] },
  { file: 'src/audit/uses-policy.ts', code: "import '../config/url.ts';\nimport '../codec/json.ts';\nimport '../audit/report.ts';", rules: [] },
  { file: 'src/worker/uses-core.ts', code: "import '../core/broker.ts';\nimport '../observability/logging.ts';\nimport '../client/task.ts';", rules: [] },
  { file: 'src/dashboard/model/uses-app.ts', code: "import '../../client/app.ts';\nimport '../../core/broker.ts';\nimport '../../observability/logging.ts';\nimport '../../config/url.ts';", rules: [] },
  { file: 'src/cli/uses-everything.ts', code: "import './main.ts';\nimport '../worker/worker.ts';\nimport '../client/app.ts';\nimport '../audit/report.ts';", rules: [] },
];

describe('each layering rule fires on what it forbids, and only there', () => {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-layers-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  const write = (rel: string, text: string): void => {
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), text);
  };
  for (const t of TARGETS) write(t, 'export {};\n');
  for (const c of CASES) write(c.file, `${c.code}\nexport {};\n`);
  write('node_modules/pino/package.json', JSON.stringify({ name: 'pino', version: '1.0.0', main: 'index.js' }));
  write('node_modules/pino/index.js', 'module.exports = {};\n');
  write('tsconfig.json', '{}\n');
  // The project's rules, without the temporary allowlist.
  write(
    'layers.cjs',
    `const c = require(${JSON.stringify(CONFIG_FILE)});\nmodule.exports = { ...c, options: { ...c.options, knownViolations: [] } };\n`,
  );

  it('planted imports break exactly the expected rules', async () => {
    const result = lint(dir, join(dir, 'layers.cjs'));
    const fired = new Map<string, Set<string>>();
    for (const v of result.errors) {
      const set = fired.get(v.from) ?? new Set<string>();
      set.add(v.rule.name);
      fired.set(v.from, set);
    }
    for (const c of CASES) {
      assert.deepEqual([...(fired.get(c.file) ?? [])].sort(), [...c.rules].sort(), `${c.file}: ${c.code.replace(/\n/g, ' ')}`);
    }
    const unexpected = [...fired.keys()].filter((f) => !CASES.some((c) => c.file === f));
    assert.deepEqual(unexpected, [], 'no violation from a target file');
    assert.deepEqual(
      result.typeOnlyCycles.map((v) => [v.from, ...(v.cycle ?? []).map((c) => c.name)].sort().join(' ')),
      ['src/worker/type-cycle-a.ts src/worker/type-cycle-a.ts src/worker/type-cycle-b.ts'],
      'the type-only cycle is recognised as such',
    );
  });

  it('every rule in .dependency-cruiser.cjs has a planted case', () => {
    const planted = new Set(CASES.flatMap((c) => c.rules));
    const untested = (CONFIG.forbidden ?? []).map((r) => r.name ?? '').filter((name) => !planted.has(name));
    assert.deepEqual(untested, [], 'add a case to CASES for each new rule');
  });
});
