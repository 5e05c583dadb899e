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
import { existsSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { PASSWORDS, startHarness, type Harness } from '../helpers/dashboard-server.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SHOTS = new URL('../../docs/dashboard/', import.meta.url);
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
    document.addEventListener('securitypolicyviolation', (e) => w.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  return page;
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
      const me = await (await fetch('/api/me')).json();
      const r = await fetch(`/api/tasks/${id}/revoke`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': me.csrf }, body: '{}' });
      return { status: r.status, body: await r.json() };
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
    let last = 0;
    for (let i = 0; i < 12 && last !== 429; i++) {
      last = await page.evaluate(async (n) => (await fetch('/api/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: `guess${n}`, password: 'x'.repeat(20) }) })).status, i);
    }
    assert.equal(last, 429);
    const v = await page.evaluate(async (pw) => (await fetch('/api/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'victor', password: pw }) })).status, PASSWORDS.victor);
    assert.equal(v, 429, 'the locked address cannot log in even with a right password');
    await context.close();
  });
});
