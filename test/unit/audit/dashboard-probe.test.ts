/**
 * CEL-008/009/010 for the Celeriac dashboard: the start-up rules are one pure
 * function (config/dashboard-policy.ts) shared by the server and the audit's
 * static check, and the live probe passes the real dashboard server while it
 * reports a weakened one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import { dashboardPolicy } from '../../../src/config/dashboard-policy.ts';
import { probeHttp } from '../../../src/audit/live/http.ts';
import { auditYamlFile } from '../../../src/audit/static/deploy.ts';
import { severityRank as rank } from '../../../src/audit/types.ts';
import { PASSWORDS, startHarness } from '../../helpers/dashboard-server.ts';

test('dashboardPolicy: the refusals the dashboard starts with', () => {
  assert.deepEqual(dashboardPolicy({ users: { accounts: 1 }, checkFile: false }).refusals, []);
  const none = dashboardPolicy({});
  assert.deepEqual(none.refusals.map((f) => f.id), ['CEL-008']);
  assert.match(none.refusals[0]!.fix, /--users-file/);
  assert.deepEqual(dashboardPolicy({ host: '0.0.0.0', oidc: true }).refusals.map((f) => [f.id, f.setting]), [['CEL-010', 'bind']]);
  assert.deepEqual(dashboardPolicy({ users: { accounts: 0 }, checkFile: false }).refusals.map((f) => f.setting), ['users-file']);
  assert.deepEqual(dashboardPolicy({ oidc: true, metricsTokenLength: 31 }).refusals.map((f) => f.setting), ['metrics-token']);
  const selfSigned = dashboardPolicy({ oidc: true, host: '10.0.0.5', tls: 'self-signed' });
  assert.deepEqual(selfSigned.refusals, []);
  assert.deepEqual(selfSigned.warnings.map((f) => f.id), ['CEL-010']);
});

test('dashboardPolicy: a users file others can read is refused, and the server says so', async () => {
  const { chmodSync } = await import('node:fs');
  const h = await startHarness();
  try {
    chmodSync(h.usersPath, 0o644);
    assert.deepEqual(dashboardPolicy({ users: { path: h.usersPath, accounts: 4 } }).refusals.map((f) => f.setting), ['users-file']);
    const { createDashboardServer, openUserStore } = await import('../../../src/dashboard/server/index.ts');
    await assert.rejects(createDashboardServer({ model: h.model, users: openUserStore(h.usersPath), auditLog: h.auditPath, warn: () => {} }), /users file .* readable by every user/);
  } finally {
    await h.close();
  }
});

test('audit static: a compose service running `celeriac dashboard` gets the same rules', () => {
  const yaml = 'services:\n  dash:\n    image: node:22\n    command: npx celeriac dashboard --bind 0.0.0.0 --port 5555\n    ports: ["5555:5555"]\n';
  const dashboards: string[] = [];
  const f = auditYamlFile('compose.yaml', yaml, [], dashboards).filter((x) => x.setting === 'services.dash.command');
  assert.deepEqual(f.map((x) => [x.id, x.severity]).sort(), [['CEL-008', 'high'], ['CEL-010', 'high']]);
  assert.deepEqual(dashboards, ['https://127.0.0.1:5555/']);
  const ok = 'services:\n  dash:\n    image: node:22\n    command: npx celeriac dashboard --bind 0.0.0.0 --tls-cert /run/c.pem --tls-key /run/k.pem --users-file /run/users.json\n';
  assert.deepEqual(auditYamlFile('compose.yaml', ok, []).filter((x) => x.setting === 'services.dash.command'), []);
  const k8s = [
    'apiVersion: apps/v1', 'kind: Deployment', 'metadata: {name: dash}', 'spec:', '  template:', '    spec:', '      containers:',
    '        - name: web', '          image: node:22', '          args: [npx, celeriac, dashboard, --bind, 0.0.0.0, --tls-self-signed, --oidc-issuer, https://idp.example]',
  ].join('\n');
  const kf = auditYamlFile('deploy.yaml', k8s, []).filter((x) => x.setting === 'Deployment/dash.web' && x.id !== 'CEL-020');
  assert.deepEqual(kf.map((x) => [x.id, x.severity]), [['CEL-010', 'low']], JSON.stringify(kf));
});

test('live probe: the real dashboard shows nothing at or above low; a viewer is refused', async () => {
  const h = await startHarness();
  try {
    const url = await h.server.listen();
    const r = await probeHttp(`${url}/`, 10_000, { viewer: { username: 'victor', password: PASSWORDS.victor } });
    const serious = r.findings.filter((f) => rank(f.severity) >= rank('low'));
    // The harness uses the generated self-signed certificate (which the dashboard warns about loudly): the TLS check rightly says so; nothing else may be reported.
    assert.deepEqual(serious.filter((f) => !(f.setting === 'tls' && /SELF_SIGNED/.test(f.message))).map((f) => `${f.id} ${f.message}`), []);
    assert.ok(r.notes.some((n) => /is a Celeriac dashboard/.test(n)), r.notes.join('\n'));
    assert.ok(r.notes.some((n) => /viewer's revoke was refused \(403\)/.test(n)), r.notes.join('\n'));
    assert.ok(h.auditLines().some((l) => l.outcome === 'denied' && l.who === 'victor'), 'the server logged the refused revoke');
    const without = await probeHttp(`${url}/`, 10_000);
    assert.ok(without.findings.some((f) => f.id === 'CEL-009' && f.severity === 'info' && /not probed/.test(f.message)));
  } finally {
    await h.close();
  }
});

test('live probe: a weakened dashboard (plain HTTP, no headers, open API, viewer may revoke) is reported', async () => {
  const app = Fastify();
  app.get('/', async (_req, reply) => reply.type('text/html').header('set-cookie', 'sid=1; Path=/').header('access-control-allow-origin', '*').send('<html><title>Celeriac dashboard</title></html>'));
  app.get('/api/workers', async () => ({ workers: [] }));
  app.get('/metrics', async () => 'celeriac_up 1\n');
  app.post('/api/login', async (_req, reply) => reply.header('set-cookie', 'sid=2; Path=/').send({ csrf: 'x' }));
  app.post('/api/tasks/:id/revoke', async () => ({ ok: true, message: 'revoked' }));
  app.post('/api/logout', async () => ({ ok: true }));
  await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const addr = app.server.address() as { port: number };
    const r = await probeHttp(`http://127.0.0.1:${addr.port}/`, 5000, { viewer: { username: 'v', password: 'p' } });
    const got = new Set(r.findings.map((f) => `${f.id}/${f.setting}/${f.severity}`));
    for (const want of ['CEL-008/api/high', 'CEL-010/https/medium', 'CEL-010/headers/low', 'CEL-010/cookie sid/medium', 'CEL-010/cors/medium', 'CEL-009/roles/high']) {
      assert.ok(got.has(want), `${want} missing from ${[...got].join(', ')}`);
    }
  } finally {
    await app.close();
  }
});

test('celeriac audit --live --http <dashboard> --http-viewer-file: the CLI logs in as the viewer', async () => {
  const { mkdtempSync, rmSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { runAuditCommand } = await import('../../../src/cli/audit.ts');
  const { captureIo } = await import('./capture-io.ts');
  const h = await startHarness();
  const dir = mkdtempSync(join(tmpdir(), 'audit-dash-'));
  try {
    const url = await h.server.listen();
    writeFileSync(join(dir, 'viewer'), `victor:${PASSWORDS.victor}\n`, { mode: 0o600 });
    const s = captureIo(dir);
    await runAuditCommand([dir, '--no-env', '--live', '--http', `${url}/`, '--http-viewer-file', join(dir, 'viewer'), '--json'], s.io);
    const report = JSON.parse(s.out()) as { findings: Array<{ id: string; message: string }> };
    assert.ok(!report.findings.some((f) => f.id === 'CEL-009'), JSON.stringify(report.findings));
    assert.ok(h.auditLines().some((l) => l.who === 'victor' && l.what === 'revoke' && l.outcome === 'denied'), 'the viewer\'s revoke reached the server and was refused');
    assert.doesNotMatch(s.out() + s.err(), new RegExp(PASSWORDS.victor.replace(/[-]/g, '\\-')), 'the password is never printed');
  } finally {
    await h.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
