/**
 * `celeriac audit` on Celeriac configurations (settings file + environment,
 * `*_FILE` secrets and `${file:…}` references), through the CLI:
 *
 * - insecure (plaintext Redis without credentials as broker and backend,
 *   pickle accepted, no signing, a world-readable key-ring file) is flagged
 *   with every expected id statically and live against the shared
 *   loopback Redis (read-only);
 * - hardened (TLS with test-time certificates on a redis-server of its
 *   own, an ACL user whose password comes from a 0600 file, signing and
 *   result key rings in 0600 files, limits) exits 0 with `--fail-on low`,
 *   statically and live.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AuditFinding } from '../../../src/audit/types.ts';
import { runAuditCommand } from '../../../src/cli/audit.ts';
import { requireService } from '../../helpers/services.ts';
import { captureIo } from '../../unit/audit/capture-io.ts';
import { hardenedRedisSuite, reachable, tempDir, writeFile } from './support.ts';

async function audit(args: string[], cwd: string): Promise<{ code: number; report: { findings: AuditFinding[]; notes: string[] }; stderr: string }> {
  const c = captureIo(cwd);
  const code = await runAuditCommand([...args, '--json', '--no-env'], c.io);
  return { code, report: JSON.parse(c.out()) as { findings: AuditFinding[]; notes: string[] }, stderr: c.err() };
}

function missing(findings: readonly AuditFinding[], kind: 'static' | 'live', expected: readonly string[]): string[] {
  const got = new Set<string>(findings.filter((f) => f.kind === kind).map((f) => f.id));
  return expected.filter((id) => !got.has(id));
}

describe('audit of an insecure Celeriac configuration', () => {
  const tmp = tempDir('celeriac-insecure');
  before(() => {
    const d = tmp.dir;
    writeFile(join(d, 'celeriac.json'), JSON.stringify({ acceptContent: ['json', 'pickle'] }));
    const keyPassword = writeFile(join(d, 'keys', 'key-password'), 'a passphrase\n', 0o644);
    writeFile(join(d, 'deploy.env'), [
      'CELERIAC_BROKER_URL=redis://127.0.0.1:6379/12',
      'CELERIAC_RESULT_BACKEND=redis://127.0.0.1:6379/12',
      `CELERIAC_SECURITY_KEY_PASSWORD_FILE=${keyPassword}`,
    ].join('\n'), 0o600);
  });
  after(() => tmp.cleanup());

  it('is flagged statically with every expected id', async () => {
    const r = await audit([tmp.dir, '--settings', join(tmp.dir, 'celeriac.json'), '--env-file', join(tmp.dir, 'deploy.env')], tmp.dir);
    assert.equal(r.code, 1);
    assert.deepEqual(missing(r.report.findings, 'static', ['CEL-001', 'CEL-002', 'CEL-003', 'CEL-005', 'CEL-007', 'CEL-014', 'CEL-015', 'CEL-016', 'CEL-020']), [],
      JSON.stringify(r.report.findings.map((f) => [f.id, f.setting])));
    const broker = r.report.findings.find((f) => f.id === 'CEL-001')!;
    assert.equal(broker.setting, 'CELERIAC_BROKER_URL');
    assert.ok(broker.location.file?.endsWith('deploy.env') && broker.location.line === 1, JSON.stringify(broker.location));
    assert.ok(r.report.findings.some((f) => f.id === 'CEL-002' && f.setting === 'CELERIAC_SECURITY_KEY_PASSWORD_FILE'), 'the world-readable secret file');
  });

  it('is flagged live against the shared loopback Redis', async (t) => {
    if (!requireService(t, await reachable(6379), 'Redis on 127.0.0.1:6379')) return;
    const r = await audit([tmp.dir, '--settings', join(tmp.dir, 'celeriac.json'), '--env-file', join(tmp.dir, 'deploy.env'), '--live'], tmp.dir);
    assert.deepEqual(missing(r.report.findings, 'live', ['CEL-001', 'CEL-004']), [], JSON.stringify(r.report.findings.filter((f) => f.kind === 'live').map((f) => [f.id, f.setting])));
  });
});

describe('audit of a hardened Celeriac configuration', () => {
  const suite = hardenedRedisSuite('celeriac-hardened', (d, redis) => {
    const pw = redis.passwordFile;
    const signing = writeFile(join(d, 'secrets', 'signing.ring'), 'placeholder ring text (not parsed by the audit)\n', 0o600);
    const verify = writeFile(join(d, 'secrets', 'verify.ring'), 'placeholder ring text\n', 0o600);
    const results = writeFile(join(d, 'secrets', 'result.ring'), 'placeholder ring text\n', 0o600);
    const url = (db: number) => `rediss://${redis.user}:\${file:${pw}}@127.0.0.1:${redis.server.tlsPort}/${db}?ssl_cert_reqs=required&ssl_ca_certs=${encodeURIComponent(redis.pki.ca)}`;
    writeFile(join(d, 'deploy.env'), [
      `CELERIAC_BROKER_URL=${url(0)}`,
      `CELERIAC_RESULT_BACKEND=${url(1)}`,
      `CELERIAC_SIGNING_KEYS_FILE=${signing}`,
      `CELERIAC_VERIFY_KEYS_FILE=${verify}`,
      `CELERIAC_RESULT_KEYS_FILE=${results}`,
    ].join('\n'), 0o600);
    writeFile(join(d, 'celeriac.json'), JSON.stringify({ taskTimeLimit: 300, resultExpires: 3600, brokerTransportOptions: { maxQueueLength: 100_000 } }));
  });

  it('exits 0 with --fail-on low, statically and live, and the live probes logged in as the ACL user', async (t) => {
    if (!requireService(t, suite.ok, 'redis-server')) return;
    const args = [suite.dir, '--settings', join(suite.dir, 'celeriac.json'), '--env-file', join(suite.dir, 'deploy.env'), '--fail-on', 'low'];
    const s = await audit(args, suite.dir);
    assert.equal(s.code, 0, JSON.stringify(s.report.findings.map((f) => [f.id, f.severity, f.message])));
    await suite.redis().admin.call('ACL', 'LOG', 'RESET');
    const l = await audit([...args, '--live', '--timeout', '2000'], suite.dir);
    assert.equal(l.code, 0, JSON.stringify(l.report.findings.map((f) => [f.id, f.severity, f.message])));
    assert.deepEqual(l.report.notes, []);
    assert.match(JSON.stringify(await suite.redis().admin.call('ACL', 'LOG')), new RegExp(`"username","${suite.redis().user}"`));
  });

  it('live TLS checks: a TLS URL whose port answers plaintext, an expired server certificate, a certificate for another host, one from another CA', async (t) => {
    if (!requireService(t, suite.ok, 'redis-server')) return;
    const pw = join(suite.dir, 'secrets', 'redis_password');
    const ca = encodeURIComponent(suite.redis().pki.ca);
    const run = async (port: number) => {
      const env = writeFile(join(suite.dir, 'probe.env'), `CELERIAC_BROKER_URL=rediss://${suite.redis().user}:\${file:${pw}}@127.0.0.1:${port}/0?ssl_cert_reqs=required&ssl_ca_certs=${ca}\n`, 0o600);
      const r = await audit([join(suite.dir, 'secrets'), '--env-file', env, '--live', '--timeout', '2000'], suite.dir);
      return r.report.findings.filter((f) => f.kind === 'live' && f.id === 'CEL-003').map((f) => f.message);
    };
    // The helper's plaintext port, claimed as TLS.
    assert.ok((await run(suite.redis().server.port)).some((m) => /also answers plaintext/.test(m)));
    const { startRedisServer } = await import('../../helpers/redis-server.ts');
    for (const [cert, key, expect] of [
      [suite.redis().pki.expiredServer, suite.redis().pki.expiredServerKey, /expired on/],
      [suite.redis().pki.wrongHostServer, suite.redis().pki.wrongHostServerKey, /does not name 127\.0\.0\.1/],
      [suite.redis().pki.otherServer, suite.redis().pki.otherServerKey, /does not verify against the configured CA/],
    ] as const) {
      const other = await startRedisServer({ password: 'Adm1n-only-password-for-this-test', tls: { certFile: cert, keyFile: key, caFile: suite.redis().pki.ca } });
      try {
        const msgs = await run(other.tlsPort!);
        assert.ok(msgs.some((m) => expect.test(m)), JSON.stringify(msgs));
      } finally {
        await other.stop();
      }
    }
  });
});
