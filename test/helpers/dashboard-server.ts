/**
 * Builds a dashboard server over the fake model with one account per role
 * (plus `clara`, a viewer with view-clear) in a temporary users file, and
 * logs in through `inject` (no socket) for HTTP-level tests.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDashboardServer, openUserStore, type DashboardServer, type DashboardServerOptions } from '../../src/dashboard/server/index.ts';
import { createFakeModel, type FakeModel } from './dashboard-fake-model.ts';

export const PASSWORDS = {
  admin: `A-${randomBytes(18).toString('base64url')}`,
  olga: `O-${randomBytes(18).toString('base64url')}`,
  victor: `V-${randomBytes(18).toString('base64url')}`,
  clara: `C-${randomBytes(18).toString('base64url')}`,
};

export interface Harness {
  server: DashboardServer;
  model: FakeModel;
  dir: string;
  auditPath: string;
  usersPath: string;
  /** Log in (password) and return the cookie header and CSRF token. */
  login(user: keyof typeof PASSWORDS, opts?: { ip?: string }): Promise<{ cookie: string; csrf: string }>;
  /** Headers of a same-origin browser request. */
  same(extra?: Record<string, string>): Record<string, string>;
  auditLines(): Array<Record<string, unknown>>;
  close(): Promise<void>;
}

export const HOST = '127.0.0.1:5555';

let usersTemplate: { dir: string; path: string } | undefined;

/** The users file is built once per process (scrypt is deliberately slow) and copied. */
async function usersFile(): Promise<string> {
  if (!usersTemplate) {
    const dir = mkdtempSync(join(tmpdir(), 'celeriac-dash-users-'));
    const path = join(dir, 'users.json');
    const store = openUserStore(path);
    await store.add('admin', PASSWORDS.admin, 'admin');
    await store.add('olga', PASSWORDS.olga, 'operator');
    await store.add('victor', PASSWORDS.victor, 'viewer');
    await store.add('clara', PASSWORDS.clara, 'viewer', { viewClear: true });
    usersTemplate = { dir, path };
  }
  return usersTemplate.path;
}

export async function startHarness(overrides: Partial<DashboardServerOptions> = {}): Promise<Harness> {
  const { copyFileSync, readFileSync } = await import('node:fs');
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-dash-'));
  const usersPath = join(dir, 'users.json');
  copyFileSync(await usersFile(), usersPath);
  const auditPath = join(dir, 'audit.jsonl');
  const model = createFakeModel();
  const server = await createDashboardServer({ model, users: openUserStore(usersPath), auditLog: auditPath, port: 0, warn: () => {}, ...overrides });
  const same = (extra: Record<string, string> = {}): Record<string, string> => ({ host: HOST, origin: `https://${HOST}`, 'sec-fetch-site': 'same-origin', ...extra });
  return {
    server,
    model,
    dir,
    auditPath,
    usersPath,
    same,
    async login(user, opts = {}) {
      const res = await server.app.inject({ method: 'POST', url: '/api/login', headers: same(), payload: { username: user, password: PASSWORDS[user] }, remoteAddress: opts.ip ?? '127.0.0.1' });
      if (res.statusCode !== 200) throw new Error(`login ${user}: ${res.statusCode} ${res.body}`);
      const c = res.cookies.find((x) => x.name === '__Host-celeriac-session');
      if (!c) throw new Error('no session cookie');
      return { cookie: `${c.name}=${c.value}`, csrf: (res.json() as { csrf: string }).csrf };
    },
    auditLines: () => readFileSync(auditPath, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>),
    async close() {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
