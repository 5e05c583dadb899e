/**
 * Test prerequisites. A missing service skips the test locally but FAILS it
 * under CI=true, so CI can never pass by skipping what it should run.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import type { TestContext } from 'node:test';

export const IN_CI = process.env.CI === 'true' || process.env.CI === '1';

/** Skip (locally) or fail (in CI) when `ok` is false. Returns `ok`. */
export function requireService(t: TestContext, ok: boolean, what: string): boolean {
  if (ok) return true;
  if (IN_CI) throw new Error(`required service missing in CI: ${what}`);
  t.skip(`${what} not available`);
  return false;
}

/** True when `cmd` is on PATH. */
export function hasCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** Debian's Python with Celery 5.2.6 (never the pyenv python first on PATH). */
export const PYTHON = process.env.CELERIAC_TEST_PYTHON ?? '/usr/bin/python3';

let celeryChecked: boolean | undefined;
/** True when Python Celery is importable. */
export function hasPythonCelery(): boolean {
  if (celeryChecked === undefined) {
    celeryChecked = existsSync(PYTHON) && spawnSync(PYTHON, ['-c', 'import celery, redis'], { stdio: 'ignore' }).status === 0;
  }
  return celeryChecked;
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Poll `check` until it returns true or `timeoutMs` passes. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(25);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** Version string of a command, for test logs. */
export function commandVersion(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}
