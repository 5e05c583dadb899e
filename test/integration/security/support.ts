/**
 * Shared set-up of the security integration tests: a throwaway PKI, TLS
 * Redis servers, loggers that keep every line, CLI runs with captured
 * output, and security event counting. Everything binds to 127.0.0.1 and
 * every process is stopped by its PID.
 */
import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { createLogger, type Logger } from '../../../src/observability/logging.ts';
import { securityCounters, type SecurityEventKind } from '../../../src/observability/security-events.ts';
import { CLI, ROOT } from '../../helpers/celeriac-worker.ts';
import { createTestPki, type TestPki } from '../../helpers/pki.ts';
import { startRedisServer, type RedisServer, type RedisServerOptions } from '../../helpers/redis-server.ts';
import { sleep } from '../../helpers/services.ts';

/** A temporary directory, removed by `cleanup`. */
export function tempDir(prefix: string): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), `celeriac-sec-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The test PKI in a fresh directory. */
export async function testPki(dir: string): Promise<TestPki> {
  return createTestPki(join(dir, 'pki'));
}

/**
 * A random password of `length` characters from a CSPRNG that mixes
 * letters and digits with characters a URL must percent-encode, so that
 * the raw and the percent-encoded forms differ.
 */
export function awkwardPassword(length = 32): string {
  const plain = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';
  const special = '@:/?#%+&=!*';
  const chars = Array.from({ length }, (_, i) => (i % 4 === 1 ? special : plain)[randomInt(i % 4 === 1 ? special.length : plain.length)]!);
  // Always the characters that change a URL's structure when left unencoded.
  for (const [i, c] of [[1, '@'], [5, '/'], [9, '%'], [13, '?'], [17, ':'], [21, '#'], [25, '&']] as const) if (i < length) chars[i] = c;
  return chars.join('');
}

/** A Redis server with a password and a TLS port (plaintext port stays open for the test's own admin client). */
export async function startTlsRedis(pki: TestPki, options: { password: string; cert?: string; key?: string; authClients?: 'yes' | 'no' | 'optional'; args?: string[] }): Promise<RedisServer> {
  const o: RedisServerOptions = {
    password: options.password,
    tls: { certFile: options.cert ?? pki.server, keyFile: options.key ?? pki.serverKey, caFile: pki.ca, authClients: options.authClients ?? 'no' },
  };
  if (options.args) o.args = options.args;
  return startRedisServer(o);
}

/** `rediss://[user]:pass@127.0.0.1:<tlsPort>/<db>[?query]` with the password percent-encoded. */
export function tlsUrl(server: RedisServer, auth: { user?: string; password: string }, db = 0, query = ''): string {
  const userinfo = `${auth.user ? encodeURIComponent(auth.user) : ''}:${encodeURIComponent(auth.password)}@`;
  return `rediss://${userinfo}127.0.0.1:${server.tlsPort!}/${db}${query ? `?${query}` : ''}`;
}

/** A logger that keeps every line (raw JSON text and parsed). */
export function memoryLogger(level: 'debug' | 'info' | 'warn' = 'debug'): { logger: Logger; lines: string[]; logs(): Array<Record<string, unknown>> } {
  const lines: string[] = [];
  const logger = createLogger({ level, destination: { write: (line: string) => void lines.push(line) } as never });
  return { logger, lines, logs: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

/** Count security events of `kind` recorded while `fn` runs. */
export async function countEvents<T>(kind: SecurityEventKind, fn: () => Promise<T>): Promise<{ value: T | undefined; error: unknown; count: number }> {
  const before = securityCounters()[kind] ?? 0;
  let value: T | undefined;
  let error: unknown;
  try {
    value = await fn();
  } catch (err) {
    error = err;
  }
  return { value, error, count: (securityCounters()[kind] ?? 0) - before };
}

/** Output and status of one CLI run. */
export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  timedOut: boolean;
}

/**
 * Run `node bin/celeriac.mjs <args>` with `env` added to (or, with `clean`,
 * instead of) the test's environment; SIGKILL by PID after `timeoutMs`.
 */
export function runCli(args: readonly string[], env: Record<string, string | undefined>, options: { timeoutMs?: number; cwd?: string } = {}): Promise<CliRun> {
  const t0 = performance.now();
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...env })) if (v !== undefined) childEnv[k] = v;
  const proc = spawn(process.execPath, [CLI, ...args], { env: childEnv, cwd: options.cwd ?? ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill('SIGKILL');
  }, options.timeoutMs ?? 30_000);
  return new Promise((resolve) => {
    proc.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - t0, timedOut });
    });
  });
}

/** JSON log lines of a CLI run's stderr. */
export function jsonLines(text: string): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not a log line
    }
  }
  return out;
}

/** Connections of `user` (CLIENT LIST), as maps of their fields. */
export async function clientList(admin: Redis, user?: string): Promise<Array<Record<string, string>>> {
  const text = (await admin.client('LIST')) as string;
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => Object.fromEntries(line.split(' ').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])))
    .filter((c) => user === undefined || c.user === user);
}

/** Wait until `check` holds, polling; throws naming `what`. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}
