/**
 * The dashboard in a real browser: Debian's Chromium (/usr/bin/chromium)
 * driven by playwright-core, against the server over the FAKE model
 * (test/helpers/dashboard-fake-model.ts). Logs in, refuses a viewer's revoke
 * (UI and direct POST), refuses a cross-origin form POST and a request
 * without the CSRF token, renders XSS payloads inert, checks headers and
 * cookie flags, locks out brute force, invalidates the session at logout,
 * and logs in through OIDC against a test identity provider (oidc-provider).
 * Screenshots of the main views go to docs/dashboard/*.png.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { PASSWORDS, startHarness, type Harness } from '../helpers/dashboard-server.ts';

// Code passed to page.evaluate runs in the browser; this file is type-checked without the DOM library.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
declare const window: any, document: any;
type HTMLElement = { blur(): void; textContent: string | null };

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// The screenshots in docs/ are refreshed only on request (CELERIAC_SCREENSHOTS=1), so a test run leaves the tree clean.
const SHOTS = process.env.CELERIAC_SCREENSHOTS === '1'
  ? new URL('../../docs/dashboard/', import.meta.url)
  : pathToFileURL(`${mkdtempSync(join(tmpdir(), 'celeriac-shots-'))}/`);
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} not installed (scripts/setup-test-services.sh installs Debian's chromium)`;
const XSS_TASK = '33333333-3333-4333-8333-333333333333';
const RUNNING_TASK = '22222222-2222-4222-8222-222222222222';

/** A page that counts any script that should not have run (payloads set window.__xss or call alert). */
async function guardedPage(context: BrowserContext): Promise<Page> {
  const page = await context.newPage();
  await page.addInitScript(() => {
    const w = window as unknown as { __xss: number; __alerts: number; __cspViolations: string[] };
    w.__xss = 0;
    w.__alerts = 0;
    w.__cspViolations = [];
    window.alert = () => void w.__alerts++;
    document.addEventListener('securitypolicyviolation', (e: { violatedDirective: string; blockedURI: string }) => w.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  return page;
}

/** GET outside the browser with a given cookie (as a thief replaying it would). */
async function rawGet(base: string, path: string, cookie: string): Promise<number> {
  const { request } = await import('node:https');
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { rejectUnauthorized: false, headers: { cookie } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

async function freePort(): Promise<number> {
  const { createServer: net } = await import('node:net');
  return new Promise((resolve) => {
    const srv = net().listen(0, '127.0.0.1', () => {
      const port = (srv.address() as AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

async function uiLogin(page: Page, base: string, user: keyof typeof PASSWORDS, password = PASSWORDS[user]): Promise<void> {
  await page.goto(`${base}/`);
  await page.fill('#username', user);
  await page.fill('#password', password);
  await page.click('#login');
}

describe('dashboard in headless Chromium', { skip }, () => {
  let h: Harness;
  let base: string;
  let browser: Browser;

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    h = await startHarness({ lockout: { account: { maxFailures: 4 }, ip: { maxFailures: 12 } } });
    base = await h.server.listen();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  });
  after(async () => {
    await browser?.close();
    await h?.close();
  });

  it('logs in, shows every main view (screenshots), and sets the security headers and cookie flags', async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
    const page = await guardedPage(context);
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const first = await page.goto(`${base}/`);
    const headers = first!.headers();
    assert.match(headers['content-security-policy']!, /script-src 'self' 'nonce-/);
    assert.match(headers['content-security-policy']!, /frame-ancestors 'none'/);
    assert.match(headers['strict-transport-security']!, /max-age=31536000/);
    assert.equal(headers['x-content-type-options'], 'nosniff');
    assert.equal(headers['referrer-policy'], 'no-referrer');
    await page.screenshot({ path: new URL('login.png', SHOTS).pathname });
    await uiLogin(page, base, 'admin');
    await page.waitForSelector('table[aria-label="Workers"]');
    const cookie = (await context.cookies()).find((c) => c.name === '__Host-celeriac-session');
    assert.ok(cookie);
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.secure, true);
    assert.equal(cookie.sameSite, 'Strict');
    assert.equal(await page.evaluate(() => document.cookie.includes('celeriac-session')), false, 'not readable from script');
    await page.click('text=celeriac@alpha');
    await page.screenshot({ path: new URL('workers.png', SHOTS).pathname, fullPage: true });
    await page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur());
    await page.keyboard.press('t');
    await page.waitForSelector('table[aria-label="Tasks"] tbody tr');
    await page.screenshot({ path: new URL('tasks.png', SHOTS).pathname, fullPage: true });
    await page.goto(`${base}/#/task/${RUNNING_TASK}`);
    await page.waitForSelector('table[aria-label="Timeline"]');
    await page.screenshot({ path: new URL('task-detail.png', SHOTS).pathname, fullPage: true });
    await page.goto(`${base}/#/queues`);
    await page.waitForSelector('table[aria-label="Queues"]');
    await page.click('table[aria-label="Queues"] button.link');
    await page.waitForSelector('table[aria-label="Dead letters"]');
    await page.screenshot({ path: new URL('queues.png', SHOTS).pathname, fullPage: true });
    await page.goto(`${base}/#/charts`);
    await page.waitForSelector('svg.chart polyline');
    await page.screenshot({ path: new URL('charts.png', SHOTS).pathname, fullPage: true });
    await page.goto(`${base}/#/beat`);
    await page.waitForSelector('table[aria-label="Beat entries"] tbody tr');
    assert.match((await page.textContent('#beat-leader')) ?? '', /beat-1@host · fencing token 7/);
    assert.equal(await page.textContent('table[aria-label="Beat entries"] tbody td'), 'nightly <b>report</b>', 'the entry name is text');
    assert.equal(await page.locator('table[aria-label="Beat entries"] b').count(), 0);
    await page.screenshot({ path: new URL('beat.png', SHOTS).pathname, fullPage: true });
    await page.goto(`${base}/#/audit`);
    await page.waitForSelector('table[aria-label="Audit log"] tbody tr');
    await page.screenshot({ path: new URL('audit.png', SHOTS).pathname, fullPage: true });
    await page.goto(`${base}/#/users`);
    await page.waitForSelector('table[aria-label="Users"] tbody tr');
    await page.screenshot({ path: new URL('users.png', SHOTS).pathname, fullPage: true });
    assert.deepEqual(errors, []);
    assert.deepEqual(await page.evaluate(() => (window as unknown as { __cspViolations: string[] }).__cspViolations), []);
    await context.close();
  });

  it('renders <img onerror>, </script> and <svg onload> payloads in names, args, exceptions and tracebacks inert', async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await guardedPage(context);
    await uiLogin(page, base, 'clara');
    await page.waitForSelector('table[aria-label="Workers"]');
    await page.goto(`${base}/#/tasks`);
    await page.waitForSelector('table[aria-label="Tasks"] tbody tr');
    await page.goto(`${base}/#/task/${XSS_TASK}`);
    await page.waitForSelector('#toggle-clear');
    await page.click('#toggle-clear');
    await page.waitForSelector('text=Shown in clear text');
    const text = await page.locator('main').innerText();
    assert.match(text, /<img src=x onerror="window.__xss=1">/, 'payload shown as text');
    assert.match(text, /<\/script><script>window.__xss=2<\/script>/);
    assert.equal(await page.locator('main img, main script, main svg:not(.chart) [onload], main b').count(), 0, 'no element made from a payload');
    await page.waitForTimeout(300);
    const state = await page.evaluate(() => {
      const w = window as unknown as { __xss: number; __alerts: number };
      return { xss: w.__xss, alerts: w.__alerts };
    });
    assert.deepEqual(state, { xss: 0, alerts: 0 });
    // CSP would stop an injected handler too, so no violation either: the payloads never became markup at all.
    assert.deepEqual(await page.evaluate(() => (window as unknown as { __cspViolations: string[] }).__cspViolations), []);
    assert.ok(h.auditLines().some((l) => l.what === 'view-clear' && l.who === 'clara' && (l.detail as { task?: string }).task === XSS_TASK));
    await context.close();
  });

  it('offers a viewer no revoke, and refuses the direct POST', async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await guardedPage(context);
    await uiLogin(page, base, 'victor');
    await page.waitForSelector('table[aria-label="Workers"]');
    await page.goto(`${base}/#/task/${RUNNING_TASK}`);
    await page.waitForSelector('table[aria-label="Timeline"]');
    assert.equal(await page.locator('#revoke').count(), 0);
    const calls = h.model.calls.length;
    const res = await page.evaluate(async (id) => {
      const me = (await (await fetch('/api/me')).json()) as { csrf: string };
      const r = await fetch(`/api/tasks/${id}/revoke`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': me.csrf }, body: '{}' });
      return { status: r.status, body: (await r.json()) as { error: string } };
    }, RUNNING_TASK);
    assert.equal(res.status, 403);
    assert.match(res.body.error, /viewer/);
    assert.equal(h.model.calls.length, calls);
    await context.close();
  });

  it('lets an operator revoke from the UI', async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await guardedPage(context);
    await uiLogin(page, base, 'olga');
    await page.waitForSelector('table[aria-label="Workers"]');
    await page.goto(`${base}/#/task/${RUNNING_TASK}`);
    await page.click('#revoke');
    await page.waitForSelector('#toast.show');
    assert.deepEqual(h.model.calls.at(-1), ['revoke', RUNNING_TASK, { terminate: false, signal: undefined }]);
    assert.ok(h.auditLines().some((l) => l.who === 'olga' && l.what === 'revoke' && l.outcome === 'ok'));
    await context.close();
  });

  it('refuses a cross-origin form POST and a same-origin request without the CSRF token', async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await guardedPage(context);
    await uiLogin(page, base, 'olga');
    await page.waitForSelector('table[aria-label="Workers"]');
    const calls = h.model.calls.length;
    // An attacker's page on another origin with a self-submitting form.
    const evil: Server = createServer((_req, res) => {
      res.setHeader('content-type', 'text/html');
      res.end(`<form id=f method=POST action="${base}/api/tasks/${RUNNING_TASK}/revoke" enctype="text/plain"><input name='{"terminate":true,"x":"' value='"}'></form><script>document.getElementById('f').submit()</script>`);
    });
    await new Promise<void>((r) => evil.listen(0, '127.0.0.1', r));
    try {
      const evilUrl = `http://127.0.0.1:${(evil.address() as AddressInfo).port}/`;
      const response = page.waitForResponse((r) => r.url().includes('/revoke'));
      await page.goto(evilUrl);
      const r = await response;
      assert.equal(r.status(), 403);
      assert.equal(h.model.calls.length, calls);
      assert.ok(h.auditLines().some((l) => (l.detail as { reason?: string })?.reason === 'cross-origin request'));
    } finally {
      evil.close();
    }
    await page.goto(`${base}/`);
    await page.waitForSelector('table[aria-label="Workers"]');
    const status = await page.evaluate(async (id) => (await fetch(`/api/tasks/${id}/revoke`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status, RUNNING_TASK);
    assert.equal(status, 403);
    assert.equal(h.model.calls.length, calls);
    await context.close();
  });

  it('updates the tasks table live (SSE) when the model reports a new task', async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await guardedPage(context);
    await uiLogin(page, base, 'victor');
    await page.waitForSelector('table[aria-label="Workers"]');
    await page.goto(`${base}/#/tasks`);
    await page.waitForSelector('table[aria-label="Tasks"] tbody tr');
    await page.waitForFunction(() => document.getElementById('live')?.textContent?.includes('live'));
    const id = '55555555-5555-4555-8555-555555555555';
    const now = Math.floor(Date.now() / 1000);
    h.model.tasksById.set(id, { id, name: 'tasks.live', state: 'RECEIVED', worker: 'celeriac@alpha', updated: now, received: now, children: [], timeline: [], clear: false });
    h.model.emit({ kind: 'task', task: { id, name: 'tasks.live', state: 'RECEIVED', updated: now } });
    await page.waitForSelector(`a[title="${id}"]`, { timeout: 10_000 });
    await context.close();
  });

  it('logout invalidates the session: the old cookie no longer works anywhere', async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await guardedPage(context);
    await uiLogin(page, base, 'victor');
    await page.waitForSelector('table[aria-label="Workers"]');
    const cookie = (await context.cookies()).find((c) => c.name === '__Host-celeriac-session')!;
    assert.equal(await rawGet(base, '/api/workers', `${cookie.name}=${cookie.value}`), 200);
    await page.click('#logout');
    await page.waitForSelector('#login-form');
    assert.equal(await rawGet(base, '/api/workers', `${cookie.name}=${cookie.value}`), 401, 'a copied cookie is dead after logout');
    await page.goto(`${base}/#/tasks`);
    await page.waitForSelector('#login-form');
    await context.close();
  });

  it('locks the account after repeated wrong passwords, then the address', async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await guardedPage(context);
    await page.goto(`${base}/`);
    for (let i = 0; i < 4; i++) {
      await page.fill('#username', 'admin');
      await page.fill('#password', `wrong-${i}`);
      await page.click('#login');
      await page.waitForFunction(() => document.getElementById('login-error')?.textContent !== '');
      await page.evaluate(() => (document.getElementById('login-error')!.textContent = ''));
    }
    await page.fill('#username', 'admin');
    await page.fill('#password', PASSWORDS.admin);
    await page.click('#login');
    await page.waitForFunction(() => /too many failed logins/.test(document.getElementById('login-error')?.textContent ?? ''));
    await page.screenshot({ path: new URL('lockout.png', SHOTS).pathname });
    // The address: other accounts from the same client, until it is locked too.
    const attempt = (username: string, password: string): Promise<{ status: number; error: string }> =>
      page.evaluate(async ([u, p]) => {
        const r = await fetch('/api/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: u, password: p }) });
        return { status: r.status, error: ((await r.json()) as { error: string }).error };
      }, [username, password] as const);
    let last = { status: 0, error: '' };
    for (let i = 0; i < 12 && last.status !== 429; i++) last = await attempt(`guess${i}`, 'x'.repeat(20));
    // The lockout's answer, not the request-rate limiter's.
    assert.equal(last.status, 429);
    assert.match(last.error, /too many failed logins/);
    const v = await attempt('victor', PASSWORDS.victor);
    assert.equal(v.status, 429, 'the locked address cannot log in even with a right password');
    assert.match(v.error, /too many failed logins/);
    await context.close();
  });
});

describe('dashboard OIDC login in headless Chromium (test identity provider: oidc-provider)', { skip }, () => {
  let h: Harness;
  let base: string;
  let browser: Browser;
  let idp: Server;

  before(async () => {
    // A dev-only package without type declarations: loaded through a variable specifier.
    const spec = 'oidc-provider';
    const { default: Provider } = await import(spec);
    const [dashPort, idpPort] = [await freePort(), await freePort()];
    const issuer = `http://127.0.0.1:${idpPort}`;
    const redirectUri = `https://127.0.0.1:${dashPort}/auth/oidc/callback`;
    const groups: Record<string, string[]> = { olivia: ['staff', 'celeriac-operators'], mallory: ['staff'] };
    const provider = new Provider(issuer, {
      clients: [{ client_id: 'celeriac-dashboard', client_secret: 'test-client-secret-0123456789abcdef', redirect_uris: [redirectUri], grant_types: ['authorization_code'], response_types: ['code'], token_endpoint_auth_method: 'client_secret_post' }],
      claims: { openid: ['sub'], profile: ['preferred_username', 'groups'] },
      findAccount: async (_ctx: unknown, id: string) => ({ accountId: id, claims: async () => ({ sub: id, preferred_username: id, groups: groups[id] ?? [] }) }),
      cookies: { keys: ['test-cookie-key-0123456789'] },
    });
    idp = createServer(provider.callback());
    await new Promise<void>((r) => idp.listen(idpPort, '127.0.0.1', r));
    h = await startHarness({
      port: dashPort,
      oidc: { issuer, clientId: 'celeriac-dashboard', clientSecret: 'test-client-secret-0123456789abcdef', redirectUri, roleClaim: 'groups', roleMap: { 'celeriac-operators': 'operator', 'celeriac-admins': 'admin' }, allowInsecureIssuer: true },
    });
    base = await h.server.listen();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  });
  after(async () => {
    await browser?.close();
    await h?.close();
    idp?.close();
  });

  async function ssoLogin(page: Page, login: string): Promise<void> {
    await page.goto(`${base}/`);
    await page.click('#sso');
    await page.fill('input[name=login]', login);
    await page.fill('input[name=password]', 'anything');
    await page.click('button[type=submit]');
    await page.click('button[type=submit]'); // consent
  }

  it('logs in through the provider (PKCE, state, nonce) with the role mapped from the groups claim', async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await guardedPage(context);
    const issuer = `http://127.0.0.1:${(idp.address() as AddressInfo).port}/`;
    const authorize = page.waitForRequest((r) => r.url().startsWith(`${issuer}auth?`));
    await page.goto(`${base}/`);
    await page.click('#sso');
    const url = new URL((await authorize).url());
    assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
    assert.ok(url.searchParams.get('state'));
    assert.ok(url.searchParams.get('nonce'));
    await page.fill('input[name=login]', 'olivia');
    await page.fill('input[name=password]', 'anything');
    await page.click('button[type=submit]');
    await page.click('button[type=submit]');
    await page.waitForSelector('table[aria-label="Workers"]');
    assert.match(await page.locator('#whoami').innerText(), /oidc:olivia \(operator\)/);
    const cookie = (await context.cookies()).find((c) => c.name === '__Host-celeriac-session');
    assert.equal(cookie?.sameSite, 'Strict');
    assert.ok(h.auditLines().some((l) => l.what === 'login' && l.who === 'oidc:olivia' && (l.detail as { method?: string }).method === 'oidc'));
    await context.close();
  });

  it('refuses a user whose claims map to no role, and a forged callback', async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await guardedPage(context);
    await ssoLogin(page, 'mallory');
    await page.waitForSelector('text=Single sign-on failed');
    assert.ok(h.auditLines().some((l) => l.what === 'login-failed' && /no dashboard role/.test(String((l.detail as { reason?: string }).reason))));
    const forged = await page.goto(`${base}/auth/oidc/callback?code=abc&state=forged`);
    assert.equal(forged?.status(), 401);
    assert.equal((await context.cookies()).some((c) => c.name === '__Host-celeriac-session'), false);
    await context.close();
  });
});
