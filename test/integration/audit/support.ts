/**
 * Deployments for the audit tests, built in temp directories: a stand-in
 * for an unauthenticated Flower on 127.0.0.1, a hardened Redis (TLS with
 * test-time certificates, a strong default password, a least-privilege ACL
 * user) on a free port, and reachability checks for the shared services.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import type { Redis } from 'ioredis';
import { createTestPki, type TestPki } from '../../helpers/pki.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';

/** A temp directory removed by `cleanup`. */
export function tempDir(prefix: string): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), `celeriac-audit-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A random password: 32 URL-safe characters. */
export function strongPassword(): string {
  return randomBytes(24).toString('base64url');
}

/** Whether something accepts TCP connections on 127.0.0.1:port. */
export function reachable(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    const t = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(t);
      s.destroy();
      resolve(true);
    });
    s.once('error', () => {
      clearTimeout(t);
      resolve(false);
    });
  });
}

/** An HTTP server on 127.0.0.1 that answers like an unauthenticated Flower: 200 everywhere, no security headers, a cookie without flags. */
export async function fakeFlower(): Promise<{ port: number; requests: string[]; close(): Promise<void> }> {
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    res.setHeader('Server', 'TornadoServer/6.3');
    res.setHeader('Set-Cookie', '_xsrf=2|abc|def; Path=/');
    res.setHeader('Access-Control-Allow-Origin', '*');
    if (req.url?.startsWith('/api') || req.url === '/metrics') {
      res.setHeader('Content-Type', 'application/json');
      res.end('{"celery@worker1": {}}');
      return;
    }
    res.setHeader('Content-Type', 'text/html');
    res.end('<html><head><title>Flower</title></head><body>Flower dashboard</body></html>');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return { port, requests, close: () => new Promise((r) => server.close(() => r())) };
}

/** A hardened Redis: TLS only for clients (the helper's plaintext port is for the admin), a strong default password, an ACL user without dangerous commands. */
export interface HardenedRedis {
  server: RedisServer;
  pki: TestPki;
  user: string;
  password: string;
  /** The password in `<dir>/secrets/redis_password`, mode 0600. */
  passwordFile: string;
  admin: Redis;
  stop(): Promise<void>;
}

export async function startHardenedRedis(dir: string): Promise<HardenedRedis> {
  const pki = await createTestPki(join(dir, 'pki'));
  const adminPassword = strongPassword();
  const server = await startRedisServer({ password: adminPassword, tls: { certFile: pki.server, keyFile: pki.serverKey, caFile: pki.ca, authClients: 'no' } });
  const admin = server.client();
  const user = 'celery';
  const password = strongPassword();
  // What `celeriac secrets generate redis-acl` grants in spirit: Celery's keys, no admin or dangerous commands.
  await admin.call('ACL', 'SETUSER', user, 'reset', 'on', `>${password}`, '~*', '&*', '+@all', '-@dangerous', '-@admin');
  const passwordFile = writeFile(join(dir, 'secrets', 'redis_password'), `${password}\n`, 0o600);
  return { server, pki, user, password, passwordFile, admin, stop: () => server.stop() };
}

/** Write a file (mode given), creating its directory. */
export function writeFile(path: string, text: string, mode = 0o644): string {
  mkdirSync(join(path, '..'), { recursive: true, mode: 0o700 });
  writeFileSync(path, text, { mode });
  chmodSync(path, mode);
  return path;
}

/**
 * For a `describe` that audits a deployment on a hardened Redis: a temp
 * directory, the server started before the tests (when redis-server exists)
 * with `setup` writing the deployment, both removed after.
 */
export function hardenedRedisSuite(prefix: string, setup: (dir: string, redis: HardenedRedis) => void | Promise<void>): { dir: string; ok: boolean; redis(): HardenedRedis } {
  const tmp = tempDir(prefix);
  const ok = hasRedisServer();
  let redis: HardenedRedis | undefined;
  before(async () => {
    if (!ok) return;
    redis = await startHardenedRedis(tmp.dir);
    await setup(tmp.dir, redis);
  });
  after(async () => {
    await redis?.stop();
    tmp.cleanup();
  });
  return { dir: tmp.dir, ok, redis: () => redis! };
}
