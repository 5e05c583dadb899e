/**
 * Dashboard server, HTTP level (fake model): start-up refusals, login,
 * sessions (cookie flags, rotation, logout, log out everywhere, timeouts),
 * lockout per account and per address.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createDashboardServer } from '../../../src/dashboard/server/index.ts';
import { createFakeModel } from '../../helpers/dashboard-fake-model.ts';
import { PASSWORDS, startHarness, type Harness } from '../../helpers/dashboard-server.ts';

describe('dashboard server: refuses to start insecurely', () => {
  it('without an auth method, naming the fix', async () => {
    await assert.rejects(createDashboardServer({ model: createFakeModel(), auditLog: '/tmp/x-audit.jsonl', warn: () => {} }), (err: Error) => {
      assert.match(err.message, /refuses to start without an authentication method/);
      assert.match(err.message, /--users-file/);
      assert.match(err.message, /celeriac dashboard users add/);
      assert.match(err.message, /--oidc-issuer/);
      return true;
    });
  });
  it('off loopback without TLS, naming the fix', async () => {
    const h = await startHarness();
    try {
      const { openUserStore } = await import('../../../src/dashboard/server/index.ts');
      await assert.rejects(createDashboardServer({ model: h.model, users: openUserStore(h.usersPath), host: '0.0.0.0', auditLog: h.auditPath, warn: () => {} }), (err: Error) => {
        assert.match(err.message, /refuses to listen on 0\.0\.0\.0 without TLS/);
        assert.match(err.message, /--tls-cert/);
        assert.match(err.message, /--bind/);
        return true;
      });
    } finally {
      await h.close();
    }
  });
  it('with an empty users file', async () => {
    const { openUserStore } = await import('../../../src/dashboard/server/index.ts');
    await assert.rejects(createDashboardServer({ model: createFakeModel(), users: openUserStore('/nonexistent-dir/users.json'), auditLog: '/tmp/x-audit.jsonl', warn: () => {} }), /has no accounts/);
  });
  it('warns loudly about a generated self-signed certificate', async () => {
    const lines: string[] = [];
    const h = await startHarness({ warn: (l) => lines.push(l) });
    try {
      assert.equal(h.server.selfSigned, true);
      assert.match(lines.join('\n'), /WARNING: the dashboard is using a SELF-SIGNED certificate/);
      assert.match(lines.join('\n'), /--tls-cert/);
    } finally {
      await h.close();
    }
  });
});

describe('dashboard server: login and sessions', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ lockout: { account: { maxFailures: 3 }, ip: { maxFailures: 6 } } });
  });
  after(async () => h.close());

  it('sets an HttpOnly, Secure, SameSite=Strict __Host- cookie and audits the login', async () => {
    const res = await h.server.app.inject({ method: 'POST', url: '/api/login', headers: h.same(), payload: { username: 'admin', password: PASSWORDS.admin } });
    assert.equal(res.statusCode, 200);
    const raw = String(res.headers['set-cookie']);
    assert.match(raw, /^__Host-celeriac-session=[A-Za-z0-9_-]{43};/);
    assert.match(raw, /HttpOnly/);
    assert.match(raw, /Secure/);
    assert.match(raw, /SameSite=Strict/);
    assert.match(raw, /Path=\//);
    assert.doesNotMatch(raw, /Domain=/);
    const entry = h.auditLines().find((l) => l.what === 'login' && l.who === 'admin');
    assert.equal(entry?.outcome, 'ok');
    assert.equal(typeof entry?.from, 'string');
    assert.equal(typeof entry?.at, 'string');
  });

  it('refuses a wrong password with the same message as an unknown user, and audits both', async () => {
    const a = await h.server.app.inject({ method: 'POST', url: '/api/login', headers: h.same(), payload: { username: 'victor', password: 'wrong-password-123' }, remoteAddress: '10.0.0.1' });
    const b = await h.server.app.inject({ method: 'POST', url: '/api/login', headers: h.same(), payload: { username: 'nobody', password: 'wrong-password-123' }, remoteAddress: '10.0.0.1' });
    assert.equal(a.statusCode, 401);
    assert.equal(b.statusCode, 401);
    assert.deepEqual(a.json(), b.json());
    assert.equal(h.auditLines().filter((l) => l.what === 'login-failed').length >= 2, true);
  });

  it('rotates the session id on login (an old id stops working)', async () => {
    const first = await h.login('victor');
    const res = await h.server.app.inject({ method: 'POST', url: '/api/login', headers: { ...h.same(), cookie: first.cookie }, payload: { username: 'victor', password: PASSWORDS.victor } });
    const second = res.cookies.find((c) => c.name === '__Host-celeriac-session')!;
    assert.notEqual(`${second.name}=${second.value}`, first.cookie);
    assert.equal((await h.server.app.inject({ url: '/api/me', headers: { cookie: first.cookie } })).statusCode, 401);
    assert.equal((await h.server.app.inject({ url: '/api/me', headers: { cookie: `${second.name}=${second.value}` } })).statusCode, 200);
  });

  it('logout invalidates the session server-side', async () => {
    const s = await h.login('victor');
    assert.equal((await h.server.app.inject({ url: '/api/workers', headers: { cookie: s.cookie } })).statusCode, 200);
    const out = await h.server.app.inject({ method: 'POST', url: '/api/logout', headers: h.same({ cookie: s.cookie, 'x-csrf-token': s.csrf }) });
    assert.equal(out.statusCode, 200);
    // Replaying the old cookie (as a thief would) no longer works.
    assert.equal((await h.server.app.inject({ url: '/api/workers', headers: { cookie: s.cookie } })).statusCode, 401);
  });

  it('log out everywhere ends every session of the user, not of others', async () => {
    const a = await h.login('olga');
    const b = await h.login('olga');
    const other = await h.login('victor');
    const res = await h.server.app.inject({ method: 'POST', url: '/api/logout-everywhere', headers: h.same({ cookie: a.cookie, 'x-csrf-token': a.csrf }) });
    assert.equal(res.json().sessions, 2);
    assert.equal((await h.server.app.inject({ url: '/api/me', headers: { cookie: b.cookie } })).statusCode, 401);
    assert.equal((await h.server.app.inject({ url: '/api/me', headers: { cookie: other.cookie } })).statusCode, 200);
  });

  it('locks an account after repeated failures, even for the right password, from any address', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await h.server.app.inject({ method: 'POST', url: '/api/login', headers: h.same(), payload: { username: 'clara', password: `nope-${i}` }, remoteAddress: `10.1.0.${i + 1}` });
      assert.equal(r.statusCode, 401);
    }
    const r = await h.server.app.inject({ method: 'POST', url: '/api/login', headers: h.same(), payload: { username: 'clara', password: PASSWORDS.clara }, remoteAddress: '10.1.0.99' });
    assert.equal(r.statusCode, 429);
    assert.match(r.json().error, /too many failed logins/);
    assert.ok(h.auditLines().some((l) => l.what === 'login-failed' && l.who === 'clara' && (l.detail as { reason?: string })?.reason === 'locked out'));
  });

  it('locks an address that tries many accounts', async () => {
    const ip = '10.2.0.1';
    for (let i = 0; i < 6; i++) {
      await h.server.app.inject({ method: 'POST', url: '/api/login', headers: h.same(), payload: { username: `user${i}`, password: 'x'.repeat(20) }, remoteAddress: ip });
    }
    const r = await h.server.app.inject({ method: 'POST', url: '/api/login', headers: h.same(), payload: { username: 'admin', password: PASSWORDS.admin }, remoteAddress: ip });
    assert.equal(r.statusCode, 429);
    // Another address is not affected.
    const ok = await h.server.app.inject({ method: 'POST', url: '/api/login', headers: h.same(), payload: { username: 'admin', password: PASSWORDS.admin }, remoteAddress: '10.2.0.2' });
    assert.equal(ok.statusCode, 200);
  });
});

describe('dashboard server: session timeouts', () => {
  it('expires an idle session and caps its absolute life', async () => {
    let now = 1_000_000;
    const h = await startHarness({ sessions: { idleMs: 1000, absoluteMs: 5000, now: () => now } });
    try {
      const s = await h.login('victor');
      now += 900;
      assert.equal((await h.server.app.inject({ url: '/api/me', headers: { cookie: s.cookie } })).statusCode, 200);
      now += 1100;
      assert.equal((await h.server.app.inject({ url: '/api/me', headers: { cookie: s.cookie } })).statusCode, 401, 'idle timeout');
      const t = await h.login('victor');
      for (let i = 0; i < 6; i++) {
        now += 900;
        await h.server.app.inject({ url: '/api/me', headers: { cookie: t.cookie } });
      }
      assert.equal((await h.server.app.inject({ url: '/api/me', headers: { cookie: t.cookie } })).statusCode, 401, 'absolute timeout');
    } finally {
      await h.close();
    }
  });
});
