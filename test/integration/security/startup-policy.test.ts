/**
 * The security policy at start-up, end to end: `celeriac worker` processes
 * and in-process apps/workers refuse insecure settings before any
 * connection, with an error that names the setting and the fix (exit code
 * 4 for the CLI); the `unsafe…` overrides start, with a warning logged at
 * every start.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApp } from '../../../src/client/app.ts';
import { InsecureConfigError } from '../../../src/config/policy.ts';
import { createWorker } from '../../../src/worker/worker.ts';
import { startCeleriacWorker, TS_TASKS } from '../../helpers/celeriac-worker.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService } from '../../helpers/services.ts';
import { awkwardPassword, memoryLogger, runCli, type CliRun } from './support.ts';

const ok = hasRedisServer();
const PICKLE_APP = new URL('./apps/pickle-app.ts', import.meta.url).pathname;
/** A host that never resolves (RFC 2606): if the policy let a URL through, the connection would fail differently. */
const NET_HOST = 'redis.celeriac-test.invalid';
const strong = awkwardPassword();
const enc = encodeURIComponent(strong);
/** Blank out what the test runner's environment may have set (empty means unset): neither mode variable, so production. */
const CLEAN: Record<string, string> = { NODE_ENV: '', CELERIAC_ENV: '', CELERIAC_BROKER_URL: '', CELERIAC_RESULT_BACKEND: '', CELERY_BROKER_URL: '', CELERY_RESULT_BACKEND: '', CELERIAC_LOG_LEVEL: 'info' };
/** The lax mode, asked for explicitly: the refusals below hold even there. */
const DEV: Record<string, string> = { ...CLEAN, CELERIAC_ENV: 'development' };

const CASES: Array<{ name: string; env: Record<string, string>; module?: string; setting: RegExp; problem: RegExp; fix: RegExp }> = [
  {
    name: 'a non-loopback plaintext URL',
    env: { CELERIAC_BROKER_URL: `redis://celeriac:${enc}@${NET_HOST}:6379/0` },
    setting: /\[CEL-003\] brokerUrl/,
    problem: new RegExp(`connects to ${NET_HOST.replace(/\./g, '\\.')} without TLS`),
    fix: /fix: use rediss:\/\/…\?ssl_cert_reqs=required/,
  },
  {
    name: 'a network broker without a password',
    env: { CELERIAC_BROKER_URL: `rediss://${NET_HOST}:6379/0` },
    setting: /\[CEL-001\] brokerUrl/,
    problem: /has no credentials/,
    fix: /fix: enable authentication .*celeriac secrets generate redis-acl/,
  },
  {
    name: 'guest/guest',
    env: { CELERIAC_BROKER_URL: `amqps://guest:guest@rabbit.celeriac-test.invalid:5671//` },
    setting: /\[CEL-011\] brokerUrl/,
    problem: /guest/,
    fix: /fix: use a random password .*celeriac secrets generate/,
  },
  {
    name: "acceptContent: ['pickle']",
    env: { CELERIAC_BROKER_URL: `rediss://celeriac:${enc}@127.0.0.1:1/0` },
    module: PICKLE_APP,
    setting: /\[CEL-005\] acceptContent/,
    problem: /"pickle", a format whose decoder can execute code/,
    fix: /fix: list only json, msgpack or auth/,
  },
];

function assertRefused(run: CliRun, c: (typeof CASES)[number]): void {
  assert.equal(run.timedOut, false, 'the worker must exit, not hang');
  assert.equal(run.code, 4, `exit code 4 (configuration refused); stderr:\n${run.stderr}`);
  assert.match(run.stderr, /error: .*refusing to start/);
  assert.match(run.stderr, c.setting);
  assert.match(run.stderr, c.problem);
  assert.match(run.stderr, c.fix);
  assert.doesNotMatch(run.stderr, /worker \S+ ready/);
  assert.doesNotMatch(run.stderr, /connection to .* failed/, 'refused before connecting');
  assert.ok(!run.stderr.includes(strong) && !run.stderr.includes(enc), 'no password in the output');
}

describe('start-up policy (celeriac worker and in-process apps)', () => {
  for (const c of CASES) {
    it(`celeriac worker refuses ${c.name}, even in development: exit 4, the setting and the fix on stderr`, async () => {
      const run = await runCli(['worker', '-A', c.module ?? TS_TASKS, '-P', 'solo', '-c', '1'], { ...DEV, ...c.env }, { timeoutMs: 30_000 });
      assertRefused(run, c);
    });
  }

  it('the prefork worker refuses too (the policy runs in every worker process)', async () => {
    const c = CASES[0]!;
    const run = await runCli(['worker', '-A', TS_TASKS, '-c', '2'], { ...DEV, ...c.env }, { timeoutMs: 30_000 });
    assertRefused(run, c);
  });

  it('in-process: app.broker(), app.resultStore() and worker.start() refuse each case before connecting, even in development', async () => {
    const env = { CELERIAC_ENV: 'development' };
    const urls: Array<[string, RegExp]> = [
      [`redis://celeriac:${enc}@${NET_HOST}:6379/0`, /brokerUrl.*without TLS/s],
      [`rediss://${NET_HOST}:6379/0`, /brokerUrl.*has no credentials/s],
      [`amqps://guest:guest@rabbit.celeriac-test.invalid:5671//`, /CEL-011.*brokerUrl/s],
    ];
    for (const [url, re] of urls) {
      const log = memoryLogger();
      const app = createApp({ brokerUrl: url, resultBackend: url, env, logger: log.logger });
      const t0 = performance.now();
      await assert.rejects(app.broker(), (err: Error) => err instanceof InsecureConfigError && re.test(err.message) && /fix: /.test(err.message));
      await assert.rejects(app.resultStore(), InsecureConfigError);
      const worker = createWorker({ app, pool: 'solo', concurrency: 1 });
      await assert.rejects(worker.start(), InsecureConfigError);
      assert.ok(performance.now() - t0 < 2000, 'no connection attempt (no DNS, no retries)');
      assert.ok(!log.lines.some((l) => /connection to/.test(l)), 'nothing was connected');
      await app.close();
    }
    const pickle = createApp({ brokerUrl: `rediss://celeriac:${enc}@127.0.0.1:1/0`, acceptContent: ['json', 'pickle'], env, logger: memoryLogger().logger });
    await assert.rejects(pickle.broker(), (err: Error) => err instanceof InsecureConfigError && err.findings.some((f) => f.setting === 'acceptContent' && f.override === 'unsafeAllowContent'));
    await pickle.close();
    // The error lists every refused setting at once, so one run shows everything to fix.
    const all = createApp({ brokerUrl: `redis://guest:guest@${NET_HOST}/0`, resultBackend: `redis://${NET_HOST}/1`, acceptContent: ['pickle', 'yaml'], env, logger: memoryLogger().logger });
    await assert.rejects(all.broker(), (err: Error) => {
      assert.ok(err instanceof InsecureConfigError);
      const settings = err.findings.map((f) => f.setting).sort();
      assert.deepEqual([...new Set(settings)], ['acceptContent', 'brokerUrl', 'resultBackend']);
      assert.ok(err.findings.length >= 6, `${err.findings.length} findings`);
      return true;
    });
    await all.close();
  });

  describe('on the local machine', () => {
    let redis: RedisServer | undefined;
    before(async () => {
      if (ok) redis = await startRedisServer();
    });
    after(async () => {
      await redis?.stop();
    });

    // Issue 20 #10: production is the default; development must be asked for.
    for (const [label, modeEnv] of [['neither CELERIAC_ENV nor NODE_ENV set', {}], ['NODE_ENV=production', { NODE_ENV: 'production' }]] as const) {
      it(`${label}: loopback plaintext without credentials is refused (CELERIAC_ENV=development only warns)`, async (t) => {
        if (!requireService(t, ok, 'redis-server')) return;
        const url = redis!.url(0);
        const env = { ...CLEAN, CELERIAC_BROKER_URL: url, CELERIAC_RESULT_BACKEND: redis!.url(1) };
        const prod = await runCli(['worker', '-A', TS_TASKS, '-P', 'solo', '-c', '1'], { ...env, ...modeEnv, CELERIAC_UNSAFE_ACCEPT_UNSIGNED: '1', CELERIAC_UNSAFE_ALLOW_ROOT: '1' }, { timeoutMs: 30_000 });
        assert.equal(prod.code, 4, prod.stderr);
        assert.match(prod.stderr, /refusing to start: 4 insecure settings/);
        for (const re of [/\[CEL-003\] brokerUrl/, /\[CEL-001\] brokerUrl/, /\[CEL-015\] resultBackend/, /\[CEL-014\] resultBackend/, /fix: use rediss:\/\//, /unsafeAllowPlaintext/, /unsafeAllowNoCredentials/]) {
          assert.match(prod.stderr, re);
        }
        // In-process, the same.
        const app = createApp({ brokerUrl: url, env: { ...modeEnv }, unsafeAcceptUnsigned: true, logger: memoryLogger().logger });
        await assert.rejects(app.broker(), (err: Error) => err instanceof InsecureConfigError && /brokerUrl/.test(err.message));
        await app.close();
        // Development, asked for: starts, with a warning per finding that names who asked.
        const log = memoryLogger();
        const devApp = createApp({ brokerUrl: url, env: { ...modeEnv, CELERIAC_ENV: 'development' }, logger: log.logger });
        await devApp.broker();
        await devApp.close();
        const warnings = log.logs().filter((l) => l.securityEvent === 'policy_warning');
        assert.deepEqual(warnings.map((w) => w.id).sort(), ['CEL-001', 'CEL-003']);
        assert.ok(warnings.every((w) => /CELERIAC_ENV asks for development mode; refused in production/.test(String(w.reason))));
        // The CLI worker with CELERIAC_ENV=development runs, warning at start.
        const dev = await startCeleriacWorker({ env: { ...env, ...modeEnv, CELERIAC_ENV: 'development' }, args: ['-P', 'solo', '-c', '1'] });
        assert.equal(await dev.stop(), 0, dev.output());
        const devWarnings = dev.logs().filter((l) => l.securityEvent === 'policy_warning' && l.id !== 'CEL-020');
        assert.deepEqual([...new Set(devWarnings.map((w) => w.id))].sort(), ['CEL-001', 'CEL-003', 'CEL-014', 'CEL-015']);
      });
    }

    it('the unsafe… overrides start the worker, with a warning logged at every start (CLI run twice)', async (t) => {
      if (!requireService(t, ok, 'redis-server')) return;
      const env = {
        ...CLEAN,
        NODE_ENV: 'production',
        CELERIAC_UNSAFE_ALLOW_ROOT: '1', // CI runs as root (CEL-020: run-as-root.test.ts)
        CELERIAC_BROKER_URL: redis!.url(0),
        CELERIAC_RESULT_BACKEND: redis!.url(1),
        CELERIAC_UNSAFE_ALLOW_PLAINTEXT: '1',
        CELERIAC_UNSAFE_ALLOW_NO_CREDENTIALS: '1',
        CELERIAC_UNSAFE_ACCEPT_UNSIGNED: '1',
      };
      const counts: Array<Record<string, number>> = [];
      for (let start = 1; start <= 2; start++) {
        const w = await startCeleriacWorker({ env, args: ['-P', 'solo', '-c', '1'] });
        const code = await w.stop();
        assert.equal(code, 0, w.output());
        const warnings = w.logs().filter((l) => l.securityEvent === 'policy_warning');
        const byOverride: Record<string, number> = {};
        for (const x of warnings) {
          assert.equal(x.level, 40, 'at warn level');
          const key = typeof x.override === 'string' ? x.override : String(x.id);
          byOverride[key] = (byOverride[key] ?? 0) + 1;
          if (typeof x.override === 'string') assert.match(String(x.reason), new RegExp(`accepted by ${x.override}`));
        }
        counts.push(byOverride);
      }
      // Each start: broker and backend each accepted once per override.
      for (const c of counts) {
        assert.equal(c.unsafeAllowPlaintext, 2, JSON.stringify(c));
        assert.equal(c.unsafeAllowNoCredentials, 2, JSON.stringify(c));
      }
      assert.deepEqual(counts[0], counts[1], 'the same warnings at every start');
    });
  });
});
