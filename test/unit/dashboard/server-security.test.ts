/**
 * Dashboard server, HTTP level (fake model): browser security headers, CSRF
 * and cross-origin refusals, roles, clear-text permission and its audit,
 * actions and their audit lines, /metrics, health, SSE.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startHarness, type Harness } from '../../helpers/dashboard-server.ts';

const TASK = '22222222-2222-4222-8222-222222222222';
const XSS_TASK = '33333333-3333-4333-8333-333333333333';

describe('dashboard server: security properties', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ metricsToken: 'm'.repeat(8) + 'T0k3n-for-metrics-0123456789abcdef' });
  });
  after(async () => h.close());

  it('serves the page with strict CSP (per-response nonces, no inline), HSTS, nosniff, no framing, no referrer', async () => {
    const a = await h.server.app.inject({ url: '/' });
    const b = await h.server.app.inject({ url: '/' });
    assert.equal(a.statusCode, 200);
    const csp = String(a.headers['content-security-policy']);
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.match(csp, /object-src 'none'/);
    assert.match(csp, /base-uri 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    const nonceA = /script-src 'self' 'nonce-([^']+)'/.exec(csp)?.[1];
    const nonceB = /script-src 'self' 'nonce-([^']+)'/.exec(String(b.headers['content-security-policy']))?.[1];
    assert.ok(nonceA && nonceB && nonceA !== nonceB, 'a fresh nonce per response');
    assert.ok(a.body.includes(`nonce="${nonceA}"`), 'the script tag carries the response nonce');
    assert.doesNotMatch(a.body, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script');
    assert.doesNotMatch(a.body, /<style|\sstyle=/, 'no inline style');
    assert.match(String(a.headers['strict-transport-security']), /max-age=31536000; includeSubDomains/);
    assert.equal(a.headers['x-content-type-options'], 'nosniff');
    assert.equal(a.headers['x-frame-options'], 'DENY');
    assert.equal(a.headers['referrer-policy'], 'no-referrer');
    assert.equal(a.headers['cross-origin-opener-policy'], 'same-origin');
    assert.equal(a.headers['access-control-allow-origin'], undefined);
  });

  it('answers no CORS preflight and sends no CORS headers', async () => {
    const pre = await h.server.app.inject({ method: 'OPTIONS', url: '/api/tasks/x/revoke', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
    assert.notEqual(pre.statusCode, 204);
    assert.equal(pre.headers['access-control-allow-origin'], undefined);
    const s = await h.login('olga');
    const get = await h.server.app.inject({ url: '/api/workers', headers: { cookie: s.cookie, origin: 'https://evil.example' } });
    assert.equal(get.headers['access-control-allow-origin'], undefined);
  });

  it('refuses a cross-site form POST (Sec-Fetch-Site / Origin) before it reaches the model', async () => {
    const s = await h.login('olga');
    const before = h.model.calls.length;
    for (const headers of [
      { host: '127.0.0.1:5555', origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' },
      { host: '127.0.0.1:5555', origin: 'https://evil.example' },
      { host: '127.0.0.1:5555', 'sec-fetch-site': 'same-site' },
      { host: '127.0.0.1:5555', origin: 'null' },
      { host: '127.0.0.1:5555' },
    ]) {
      const res = await h.server.app.inject({ method: 'POST', url: `/api/tasks/${TASK}/revoke`, headers: { ...headers, cookie: s.cookie, 'x-csrf-token': s.csrf, 'content-type': 'application/x-www-form-urlencoded' }, payload: 'terminate=true' });
      assert.equal(res.statusCode, 403, JSON.stringify(headers));
      assert.match(res.json().error, /cross-origin/);
    }
    assert.equal(h.model.calls.length, before);
    assert.ok(h.auditLines().some((l) => l.outcome === 'denied' && (l.detail as { reason?: string }).reason === 'cross-origin request'));
  });

  it('refuses a same-origin request without the CSRF token, or with another session\'s', async () => {
    const s = await h.login('olga');
    const other = await h.login('admin');
    const before = h.model.calls.length;
    const none = await h.server.app.inject({ method: 'POST', url: `/api/tasks/${TASK}/revoke`, headers: h.same({ cookie: s.cookie }), payload: {} });
    assert.equal(none.statusCode, 403);
    assert.match(none.json().error, /CSRF/);
    const wrong = await h.server.app.inject({ method: 'POST', url: `/api/tasks/${TASK}/revoke`, headers: h.same({ cookie: s.cookie, 'x-csrf-token': other.csrf }), payload: {} });
    assert.equal(wrong.statusCode, 403);
    assert.equal(h.model.calls.length, before);
  });

  it('refuses text/plain bodies (what a cross-site form could send without a preflight)', async () => {
    const s = await h.login('olga');
    const res = await h.server.app.inject({ method: 'POST', url: '/api/rate-limit', headers: h.same({ cookie: s.cookie, 'x-csrf-token': s.csrf, 'content-type': 'text/plain' }), payload: '{"task":"tasks.add","rate":"1/s"}' });
    assert.equal(res.statusCode, 415);
  });

  it('lets an operator revoke and audits who, what, from where and the outcome', async () => {
    const s = await h.login('olga');
    const res = await h.server.app.inject({ method: 'POST', url: `/api/tasks/${TASK}/revoke`, headers: h.same({ cookie: s.cookie, 'x-csrf-token': s.csrf }), payload: { terminate: true, signal: 'SIGKILL' } });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(h.model.calls.at(-1), ['revoke', TASK, { terminate: true, signal: 'SIGKILL' }]);
    const line = h.auditLines().at(-1)!;
    assert.equal(line.who, 'olga');
    assert.equal(line.what, 'terminate');
    assert.equal(line.outcome, 'ok');
    assert.equal(line.from, '127.0.0.1');
    assert.equal((line.detail as { task: string }).task, TASK);
  });

  it('refuses a viewer every action (and audits the refusal); the model is never called', async () => {
    const s = await h.login('victor');
    const before = h.model.calls.length;
    const posts: Array<[string, unknown]> = [
      [`/api/tasks/${TASK}/revoke`, {}],
      [`/api/tasks/${TASK}/retry`, undefined],
      ['/api/rate-limit', { task: 'tasks.add', rate: '1/s' }],
      ['/api/queues/celery/dead-letters/redrive', {}],
      ['/api/queues/celery/dead-letters/drop', {}],
      ['/api/queues/celery/pause', undefined],
      ['/api/workers/celeriac@alpha/shutdown', undefined],
      ['/api/workers/celeriac@alpha/pool', { delta: 1 }],
      ['/api/workers/celeriac@alpha/consumers', { queue: 'x', action: 'add' }],
    ];
    for (const [url, payload] of posts) {
      const res = await h.server.app.inject({ method: 'POST', url, headers: h.same({ cookie: s.cookie, 'x-csrf-token': s.csrf }), ...(payload !== undefined ? { payload: payload as object } : {}) });
      assert.equal(res.statusCode, 403, url);
    }
    assert.equal(h.model.calls.length, before);
    assert.ok(h.auditLines().some((l) => l.who === 'victor' && l.what === 'revoke' && l.outcome === 'denied'));
  });

  it('keeps admin actions, users and the audit log from operators', async () => {
    const s = await h.login('olga');
    for (const [method, url] of [['POST', '/api/workers/celeriac@alpha/shutdown'], ['GET', '/api/audit'], ['GET', '/api/users'], ['GET', '/api/audit/export']] as const) {
      const res = await h.server.app.inject({ method, url, headers: h.same({ cookie: s.cookie, 'x-csrf-token': s.csrf }) });
      assert.equal(res.statusCode, 403, url);
    }
    const a = await h.login('admin');
    const shut = await h.server.app.inject({ method: 'POST', url: '/api/workers/celeriac@alpha/shutdown', headers: h.same({ cookie: a.cookie, 'x-csrf-token': a.csrf }) });
    assert.equal(shut.statusCode, 200);
    const audit = await h.server.app.inject({ url: '/api/audit', headers: { cookie: a.cookie } });
    assert.ok((audit.json().entries as Array<{ what: string }>).some((e) => e.what === 'shutdown'));
    const exp = await h.server.app.inject({ url: '/api/audit/export', headers: { cookie: a.cookie } });
    assert.match(String(exp.headers['content-disposition']), /attachment/);
    assert.ok(exp.body.split('\n').filter(Boolean).every((l) => JSON.parse(l).at));
  });

  it('shows args redacted by default; clear text needs view-clear and is audited each time', async () => {
    const op = await h.login('olga');
    const red = await h.server.app.inject({ url: `/api/tasks/${XSS_TASK}`, headers: { cookie: op.cookie } });
    assert.equal(red.json().clear, false);
    assert.equal(red.json().args, '…');
    const refused = await h.server.app.inject({ url: `/api/tasks/${XSS_TASK}?clear=1`, headers: { cookie: op.cookie } });
    assert.equal(refused.statusCode, 403);
    const refusedList = await h.server.app.inject({ url: `/api/tasks?clear=1`, headers: { cookie: op.cookie } });
    assert.equal(refusedList.statusCode, 403);
    const c = await h.login('clara');
    const n = h.auditLines().filter((l) => l.what === 'view-clear' && l.who === 'clara').length;
    const clear = await h.server.app.inject({ url: `/api/tasks/${XSS_TASK}?clear=1`, headers: { cookie: c.cookie } });
    assert.equal(clear.statusCode, 200);
    assert.equal(clear.json().clear, true);
    await h.server.app.inject({ url: `/api/tasks/${XSS_TASK}?clear=1`, headers: { cookie: c.cookie } });
    const views = h.auditLines().filter((l) => l.what === 'view-clear' && l.who === 'clara');
    assert.equal(views.length, n + 2);
    assert.equal((views.at(-1)!.detail as { task: string }).task, XSS_TASK);
    assert.ok(h.auditLines().some((l) => l.what === 'view-clear' && l.who === 'olga' && l.outcome === 'denied'));
  });

  it('requires a session for every read', async () => {
    for (const url of ['/api/workers', '/api/tasks', `/api/tasks/${TASK}`, '/api/queues', '/api/series', '/api/events', '/api/task-names', '/api/queues/celery/dead-letters']) {
      assert.equal((await h.server.app.inject({ url })).statusCode, 401, url);
    }
  });

  it('never serves /metrics openly: bearer token or session', async () => {
    const open = await h.server.app.inject({ url: '/metrics' });
    assert.equal(open.statusCode, 401);
    assert.match(String(open.headers['www-authenticate']), /Bearer/);
    const wrong = await h.server.app.inject({ url: '/metrics', headers: { authorization: 'Bearer nope' } });
    assert.equal(wrong.statusCode, 401);
    const tok = await h.server.app.inject({ url: '/metrics', headers: { authorization: `Bearer ${'m'.repeat(8)}T0k3n-for-metrics-0123456789abcdef` } });
    assert.equal(tok.statusCode, 200);
    assert.match(tok.body, /celeriac_dashboard_up 1/);
    const s = await h.login('victor');
    assert.equal((await h.server.app.inject({ url: '/metrics', headers: { cookie: s.cookie } })).statusCode, 200);
  });

  it('/healthz and /readyz follow model.health() without details', async () => {
    assert.equal((await h.server.app.inject({ url: '/healthz' })).statusCode, 200);
    h.model.setHealth({ live: true, ready: false });
    const r = await h.server.app.inject({ url: '/readyz' });
    assert.equal(r.statusCode, 503);
    assert.doesNotMatch(r.body, /fake/);
    h.model.setHealth({ live: true, ready: true });
    assert.equal((await h.server.app.inject({ url: '/readyz' })).statusCode, 200);
  });

  it('validates action bodies (unknown fields, bad rates, zero pool delta)', async () => {
    const a = await h.login('admin');
    const hd = h.same({ cookie: a.cookie, 'x-csrf-token': a.csrf });
    assert.equal((await h.server.app.inject({ method: 'POST', url: '/api/rate-limit', headers: hd, payload: { task: 't', rate: '1/s; rm -rf' } })).statusCode, 400);
    assert.equal((await h.server.app.inject({ method: 'POST', url: '/api/rate-limit', headers: hd, payload: { task: 't', rate: '1/s', extra: 1 } })).statusCode, 400);
    assert.equal((await h.server.app.inject({ method: 'POST', url: '/api/workers/w/pool', headers: hd, payload: { delta: 0 } })).statusCode, 400);
  });

  it('lets an admin add users with the strength rule, and ends their sessions on change', async () => {
    const a = await h.login('admin');
    const hd = h.same({ cookie: a.cookie, 'x-csrf-token': a.csrf });
    const weak = await h.server.app.inject({ method: 'POST', url: '/api/users', headers: hd, payload: { name: 'newbie', password: 'passwordpassword', role: 'viewer' } });
    assert.equal(weak.statusCode, 400);
    assert.match(weak.json().error, /password refused/);
    const v = await h.login('victor');
    const { PASSWORDS } = await import('../../helpers/dashboard-server.ts');
    const ok = await h.server.app.inject({ method: 'POST', url: '/api/users', headers: hd, payload: { name: 'victor', password: PASSWORDS.victor, role: 'operator' } });
    assert.equal(ok.statusCode, 200);
    assert.equal((await h.server.app.inject({ url: '/api/me', headers: { cookie: v.cookie } })).statusCode, 401);
    const list = await h.server.app.inject({ url: '/api/users', headers: { cookie: a.cookie } });
    assert.doesNotMatch(list.body, /scrypt/);
  });

  it('streams live updates over SSE without payloads, and ends the stream at logout', async () => {
    const s = await h.login('victor');
    const { server } = h;
    const url = await server.listen();
    const { request } = await import('node:https');
    const chunks: string[] = [];
    const ended = new Promise<void>((resolve, reject) => {
      const req = request(`${url}/api/events`, { rejectUnauthorized: false, headers: { cookie: s.cookie } }, (res) => {
        assert.equal(res.headers['content-type'], 'text/event-stream; charset=utf-8');
        res.setEncoding('utf8');
        res.on('data', (d: string) => chunks.push(d));
        res.on('end', () => resolve());
      });
      req.on('error', reject);
      req.end();
    });
    await new Promise((r) => setTimeout(r, 300));
    h.model.emit({ kind: 'task', task: { id: TASK, state: 'STARTED', updated: 1, args: 'SECRET-ARGS' } });
    await new Promise((r) => setTimeout(r, 1200));
    const text = chunks.join('');
    assert.match(text, /event: batch/);
    assert.match(text, new RegExp(TASK));
    assert.doesNotMatch(text, /SECRET-ARGS/);
    await h.server.app.inject({ method: 'POST', url: '/api/logout', headers: h.same({ cookie: s.cookie, 'x-csrf-token': s.csrf }) });
    await Promise.race([ended, new Promise((_, rej) => setTimeout(() => rej(new Error('stream not ended after logout')), 5000))]);
  });
});

describe('dashboard server: limits', () => {
  it('refuses removing the last admin, over-long URLs, and too many live streams per session', async () => {
    const h = await startHarness();
    try {
      const a = await h.login('admin');
      const del = await h.server.app.inject({ method: 'DELETE', url: '/api/users/admin', headers: h.same({ cookie: a.cookie, 'x-csrf-token': a.csrf }) });
      assert.equal(del.statusCode, 409);
      assert.equal((await h.server.app.inject({ url: `/api/tasks/${'x'.repeat(5000)}`, headers: { cookie: a.cookie } })).statusCode, 414);
      const url = await h.server.listen();
      const { request } = await import('node:https');
      const open = (): Promise<{ status: number; destroy: () => void }> =>
        new Promise((resolve, reject) => {
          const req = request(`${url}/api/events`, { rejectUnauthorized: false, headers: { cookie: a.cookie } }, (res) => resolve({ status: res.statusCode ?? 0, destroy: () => req.destroy() }));
          req.on('error', reject);
          req.end();
        });
      const streams = [];
      for (let i = 0; i < 8; i++) streams.push(await open());
      assert.ok(streams.every((s) => s.status === 200));
      const ninth = await open();
      assert.equal(ninth.status, 429);
      ninth.destroy();
      streams.forEach((s) => s.destroy());
    } finally {
      await h.close();
    }
  });
});

describe('dashboard server: every action by role, audited with its outcome', () => {
  it('routes each operator and admin action to the model and audits it; a model error is a 502 with a redacted message', async () => {
    const h = await startHarness();
    try {
      const op = await h.login('olga');
      const ad = await h.login('admin');
      const post = (s: { cookie: string; csrf: string }, url: string, payload?: object) =>
        h.server.app.inject({ method: 'POST', url, headers: h.same({ cookie: s.cookie, 'x-csrf-token': s.csrf }), ...(payload ? { payload } : {}) });
      const cases: Array<[typeof op, string, object | undefined, unknown[], string]> = [
        [op, `/api/tasks/${TASK}/retry`, undefined, ['retry', TASK], 'retry'],
        [op, '/api/rate-limit', { task: 'tasks.add', rate: '10/m', worker: 'celeriac@alpha' }, ['rateLimit', 'tasks.add', '10/m', 'celeriac@alpha'], 'rate-limit'],
        [op, '/api/queues/celery/dead-letters/redrive', { ids: ['a', 'b'] }, ['redriveDeadLetters', 'celery', ['a', 'b']], 'dlq-redrive'],
        [op, '/api/queues/celery/dead-letters/drop', {}, ['dropDeadLetters', 'celery', undefined], 'dlq-drop'],
        [op, '/api/queues/celery/pause', undefined, ['pauseQueue', 'celery'], 'queue-pause'],
        [op, '/api/queues/mail/resume', undefined, ['resumeQueue', 'mail'], 'queue-resume'],
        [ad, '/api/workers/celeriac@alpha/pool', { delta: 2 }, ['poolGrow', 'celeriac@alpha', 2], 'pool-grow'],
        [ad, '/api/workers/celeriac@alpha/pool', { delta: -1 }, ['poolShrink', 'celeriac@alpha', 1], 'pool-shrink'],
        [ad, '/api/workers/celeriac@alpha/consumers', { queue: 'mail', action: 'add' }, ['addConsumer', 'celeriac@alpha', 'mail'], 'consumer-add'],
        [ad, '/api/workers/celeriac@alpha/consumers', { queue: 'mail', action: 'cancel' }, ['cancelConsumer', 'celeriac@alpha', 'mail'], 'consumer-cancel'],
      ];
      for (const [s, url, payload, call, what] of cases) {
        const res = await post(s, url, payload);
        assert.equal(res.statusCode, 200, `${url} ${res.body}`);
        assert.deepEqual(h.model.calls.at(-1), call);
        const line = h.auditLines().at(-1)!;
        assert.equal(line.what, what);
        assert.equal(line.outcome, 'ok');
      }
      const operatorShrink = await post(op, '/api/workers/celeriac@alpha/pool', { delta: -1 });
      assert.equal(operatorShrink.statusCode, 403);
      h.model.actions.retry = async () => {
        throw new Error('broker unreachable at redis://:hunter2hunter2@10.0.0.5:6379/0');
      };
      const failed = await post(op, `/api/tasks/${TASK}/retry`);
      assert.equal(failed.statusCode, 502);
      assert.doesNotMatch(failed.body, /hunter2/);
      const line = h.auditLines().at(-1)!;
      assert.equal(line.outcome, 'error');
      assert.doesNotMatch(JSON.stringify(line), /hunter2/);
    } finally {
      await h.close();
    }
  });
});
