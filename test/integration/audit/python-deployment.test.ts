/**
 * `celeriac audit` on Python Celery deployments built by the test:
 *
 * - an insecure one (RabbitMQ user guest, Redis without a password, pickle
 *   accepted, a password written in celeryconfig.py, a world-readable
 *   signing key, an unauthenticated "Flower" on 127.0.0.1) is flagged with
 *   every expected id statically, and live against the shared loopback
 *   Redis and RabbitMQ (read-only probes: the test checks that no key was
 *   written or removed) and the stand-in Flower;
 * - a hardened one (TLS with test-time certificates on a redis-server of
 *   its own, a least-privilege ACL user whose password is read from a
 *   0600 file, Celery's auth signing, limits) reports nothing at or above
 *   `low`, statically and live.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { runAudit } from '../../../src/audit/index.ts';
import { severityRank, type AuditFinding } from '../../../src/audit/types.ts';
import { runAuditCommand } from '../../../src/cli/audit.ts';
import { requireService } from '../../helpers/services.ts';
import { captureIo } from '../../unit/audit/capture-io.ts';
import { fakeFlower, hardenedRedisSuite, reachable, tempDir, writeFile } from './support.ts';
import { fakePrivateKeyPem } from '../../helpers/pki.ts';

const HARDCODED = 'Tr0ub4dor-hardcoded-in-config';

function ids(findings: readonly AuditFinding[], kind?: 'static' | 'live'): Set<string> {
  return new Set(findings.filter((f) => !kind || f.kind === kind).map((f) => f.id));
}

function assertIds(findings: readonly AuditFinding[], expected: readonly string[], kind: 'static' | 'live'): void {
  const got = ids(findings, kind);
  const missing = expected.filter((id) => !got.has(id));
  assert.deepEqual(missing, [], `${kind} findings miss ${missing.join(', ')}; got ${JSON.stringify(findings.filter((f) => f.kind === kind).map((f) => [f.id, f.setting]))}`);
}

function atOrAboveLow(findings: readonly AuditFinding[]): AuditFinding[] {
  return findings.filter((f) => severityRank(f.severity) >= severityRank('low'));
}

describe('audit of an insecure Python Celery deployment', () => {
  const tmp = tempDir('py-insecure');
  let flower: Awaited<ReturnType<typeof fakeFlower>>;
  let services = false;
  before(async () => {
    services = (await reachable(6379)) && (await reachable(5672));
    flower = await fakeFlower();
    const d = tmp.dir;
    writeFile(join(d, 'proj', 'celeryconfig.py'), [
      'import os',
      `broker_url = 'amqp://guest:guest@127.0.0.1:5672//'`,
      `result_backend = 'redis://127.0.0.1:6379/13'`,
      `accept_content = ['json', 'pickle']`,
      `task_serializer = 'json'`,
      `security_key = ${JSON.stringify(join(d, 'proj', 'worker.key'))}`,
      `SMTP_PASSWORD = ${JSON.stringify(HARDCODED)}`,
    ].join('\n'));
    writeFile(join(d, 'proj', 'worker.key'), fakePrivateKeyPem(), 0o644);
    writeFile(join(d, 'docker-compose.yml'), [
      'services:',
      '  flower:',
      '    image: mher/flower:1.0.0',
      '    command: celery --broker=amqp://guest:guest@rabbit// flower',
      `    ports: ["127.0.0.1:${flower.port}:5555"]`,
    ].join('\n'));
    writeFile(join(d, 'requirements.txt'), 'celery==5.2.1\nflower==1.0.0\n');
  });
  after(async () => {
    await flower?.close();
    tmp.cleanup();
  });

  it('is flagged statically with every expected id, each pointing at its file and line', async () => {
    const r = await runAudit({ paths: [tmp.dir] });
    assertIds(r.findings, ['CEL-002', 'CEL-003', 'CEL-005', 'CEL-007', 'CEL-008', 'CEL-011', 'CEL-013', 'CEL-014', 'CEL-015', 'CEL-017', 'CEL-022'], 'static');
    const pickle = r.findings.find((f) => f.id === 'CEL-005')!;
    assert.ok(pickle.location.file?.endsWith('celeryconfig.py') && pickle.location.line === 4, JSON.stringify(pickle.location));
    assert.equal(pickle.severity, 'critical');
    assert.ok(r.findings.some((f) => f.id === 'CEL-002' && f.setting === 'SMTP_PASSWORD' && f.location.line === 7), 'the hard-coded password');
    assert.ok(r.findings.some((f) => f.id === 'CEL-002' && f.setting === 'broker_url' && f.location.line === 2), 'the password in the broker URL');
    assert.ok(r.findings.some((f) => f.id === 'CEL-007' && f.setting === 'security_key' && /readable by every user/.test(f.message)), 'the world-readable key');
    assert.equal(r.live, false);
  });

  it('is flagged live — guest usable, Redis open and all-powerful, Flower open over HTTP — and the probes change nothing', async (t) => {
    if (!requireService(t, services, 'Redis on 127.0.0.1:6379 and RabbitMQ on 127.0.0.1:5672')) return;
    const probe = new Redis({ host: '127.0.0.1', port: 6379, db: 13, lazyConnect: true, maxRetriesPerRequest: 1 });
    await probe.connect();
    const marker = `celeriac-audit-test:${process.pid}:${Date.now()}`;
    await probe.set(marker, 'kept', 'EX', 120);
    const before = await probe.dbsize();
    const c = captureIo(tmp.dir);
    const code = await runAuditCommand([tmp.dir, '--live', '--json', '--no-env', '--timeout', '2000'], c.io);
    const out = c.out();
    assert.equal(code, 1, 'high findings fail the run by default');
    const report = JSON.parse(out) as { findings: AuditFinding[]; notes: string[] };
    assertIds(report.findings, ['CEL-004', 'CEL-008', 'CEL-010', 'CEL-011', 'CEL-014'], 'live');
    const open = report.findings.find((f) => f.kind === 'live' && f.id === 'CEL-008' && f.setting === 'auth')!;
    assert.match(open.message, /Flower.*without authentication/);
    assert.ok(report.findings.some((f) => f.kind === 'live' && f.id === 'CEL-010' && /cookie/.test(f.setting)), 'cookie flags');
    assert.ok(report.findings.some((f) => f.kind === 'live' && f.id === 'CEL-004' && /FLUSHALL/.test(f.message)), 'FLUSHALL allowed (by ACL DRYRUN)');
    assert.ok(flower.requests.every((r) => r.startsWith('GET ')), `only GETs: ${flower.requests.join(', ')}`);
    assert.equal(await probe.get(marker), 'kept', 'the probes removed nothing');
    assert.equal(await probe.dbsize(), before, 'the probes wrote nothing');
    await probe.del(marker);
    probe.disconnect();
    assert.doesNotMatch(out, new RegExp(HARDCODED), 'no secret in the output');
  });
});

describe('audit of a hardened Python Celery deployment', () => {
  const suite = hardenedRedisSuite('py-hardened', (d, redis) => {
    const pw = redis.passwordFile;
    const ca = redis.pki.ca;
    const tlsPort = redis.server.tlsPort!;
    writeFile(join(d, 'proj', 'celeryconfig.py'), [
      'import ssl',
      `_password = open(${JSON.stringify(pw)}).read().strip()`,
      `broker_url = f"rediss://${redis.user}:{_password}@127.0.0.1:${tlsPort}/0"`,
      `result_backend = f"rediss://${redis.user}:{_password}@127.0.0.1:${tlsPort}/1"`,
      `broker_use_ssl = {'ssl_cert_reqs': ssl.CERT_REQUIRED, 'ssl_ca_certs': ${JSON.stringify(ca)}}`,
      `redis_backend_use_ssl = {'ssl_cert_reqs': ssl.CERT_REQUIRED, 'ssl_ca_certs': ${JSON.stringify(ca)}}`,
      `task_serializer = 'auth'`,
      `result_serializer = 'json'`,
      `accept_content = ['auth']`,
      `result_accept_content = ['json']`,
      `security_key = ${JSON.stringify(redis.pki.clientKey)}`,
      `security_certificate = ${JSON.stringify(redis.pki.client)}`,
      `security_cert_store = ${JSON.stringify(redis.pki.client)}`,
      'result_expires = 3600',
      'task_time_limit = 300',
      'task_soft_time_limit = 240',
    ].join('\n'));
    writeFile(join(d, 'requirements.txt'), 'celery[redis]==5.2.6\nredis==4.6.0\n');
    writeFile(join(d, 'docker-compose.yml'), [
      'services:',
      '  worker:',
      '    image: myapp',
      '    command: celery -A proj worker',
      '    user: "1000:1000"',
      '    environment:',
      '      REDIS_PASSWORD_FILE: /run/secrets/redis_password',
      '    secrets: [redis_password]',
    ].join('\n'));
  });

  it('reports nothing at or above low, statically and live', async (t) => {
    if (!requireService(t, suite.ok, 'redis-server')) return;
    const staticReport = await runAudit({ paths: [suite.dir] });
    assert.deepEqual(atOrAboveLow(staticReport.findings).map((f) => [f.id, f.setting, f.message]), []);
    await suite.redis().admin.call('ACL', 'LOG', 'RESET');
    const live = await runAudit({ paths: [suite.dir], live: true, timeoutMs: 2000 });
    assert.deepEqual(atOrAboveLow(live.findings).map((f) => [f.id, f.setting, f.message]), []);
    assert.deepEqual(live.notes, []);
    // The probes did log in as the configured user and asked about admin commands (denied, so logged): a real check, not a skip.
    const log = JSON.stringify(await suite.redis().admin.call('ACL', 'LOG'));
    assert.match(log, new RegExp(`"username","${suite.redis().user}"`), log);
  });

  it('the same deployment with one weakness each is flagged (the hardened result is not an accident)', async (t) => {
    if (!requireService(t, suite.ok, 'redis-server')) return;
    const { readFileSync, writeFileSync, chmodSync } = await import('node:fs');
    const cfg = join(suite.dir, 'proj', 'celeryconfig.py');
    const original = readFileSync(cfg, 'utf8');
    try {
      // The live probe must see the ACL user's power: give it the dangerous commands.
      await suite.redis().admin.call('ACL', 'SETUSER', suite.redis().user, '+@all');
      const r = await runAudit({ paths: [suite.dir], live: true, timeoutMs: 2000 });
      assert.ok(r.findings.some((f) => f.id === 'CEL-004' && f.kind === 'live'), JSON.stringify(r.findings.map((f) => [f.id, f.message])));
      await suite.redis().admin.call('ACL', 'SETUSER', suite.redis().user, '-@dangerous', '-@admin');
      chmodSync(join(suite.dir, 'secrets', 'redis_password'), 0o644);
      writeFileSync(cfg, original.replace("accept_content = ['auth']", "accept_content = ['auth', 'pickle']"));
      const s = await runAudit({ paths: [suite.dir] });
      assertIds(s.findings, ['CEL-002', 'CEL-005', 'CEL-022'], 'static');
    } finally {
      writeFileSync(cfg, original);
      chmodSync(join(suite.dir, 'secrets', 'redis_password'), 0o600);
    }
  });
});

describe('RabbitMQ probe with a management API', () => {
  it('reports the administrator tag and .* permissions read from the management API (GET only), and says so when the API is missing', async (t) => {
    if (!requireService(t, await reachable(5672), 'RabbitMQ on 127.0.0.1:5672')) return;
    const { createServer } = await import('node:http');
    const seen: string[] = [];
    const api = createServer((req, res) => {
      seen.push(`${req.method} ${req.url} ${req.headers.authorization ? 'auth' : 'no-auth'}`);
      res.setHeader('Content-Type', 'application/json');
      if (req.url === '/api/whoami') res.end(JSON.stringify({ name: 'guest', tags: ['administrator'] }));
      else if (req.url === '/api/users/guest/permissions') res.end(JSON.stringify([{ user: 'guest', vhost: '/', configure: '.*', write: '.*', read: '.*' }]));
      else res.writeHead(404).end('{}');
    });
    await new Promise<void>((r) => api.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (api.address() as { port: number }).port;
      const { probeAmqp } = await import('../../../src/audit/live/amqp.ts');
      const { parseConnectionUrl } = await import('../../../src/config/url.ts');
      const url = parseConnectionUrl('amqp://guest:guest@127.0.0.1:5672//');
      const r = await probeAmqp({ url, useSsl: undefined, setting: 'broker_url', managementUrl: `http://127.0.0.1:${port}/` }, 2000);
      assert.ok(r.findings.some((f) => f.id === 'CEL-011' && /guest\/guest/.test(f.message)));
      assert.ok(r.findings.some((f) => f.id === 'CEL-004' && /administrator/.test(f.message)));
      assert.ok(r.findings.some((f) => f.id === 'CEL-004' && /configure, write and read everything/.test(f.message)));
      assert.deepEqual(seen, ['GET /api/whoami auth', 'GET /api/users/guest/permissions auth']);
      const missing = await probeAmqp({ url, useSsl: undefined, setting: 'broker_url', managementUrl: 'http://127.0.0.1:9/' }, 1000);
      assert.match(missing.notes.join('\n'), /management API .* does not answer/);
    } finally {
      await new Promise((r) => api.close(r));
    }
  });
});
