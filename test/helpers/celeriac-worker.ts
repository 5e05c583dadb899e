/**
 * Run `celeriac worker` as a real process (the CLI, prefork pool) for
 * integration and interop tests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { sleep } from './services.ts';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = `${ROOT}bin/celeriac.mjs`;
export const TS_TASKS = `${ROOT}test/interop/apps/ts_tasks.ts`;

export interface CeleriacWorkerProcess {
  pid: number;
  /** Everything the process wrote (JSON log lines on stderr). */
  output(): string;
  /** Parsed JSON log lines. */
  logs(): Array<Record<string, unknown>>;
  stop(): Promise<number | null>;
  kill(signal?: NodeJS.Signals): void;
  exited: Promise<number | null>;
}

export async function startCeleriacWorker(options: { env: Record<string, string>; args?: string[]; module?: string }): Promise<CeleriacWorkerProcess> {
  const proc: ChildProcess = spawn(process.execPath, [CLI, 'worker', '-A', options.module ?? TS_TASKS, ...(options.args ?? [])], {
    env: { ...process.env, CELERIAC_LOG_LEVEL: 'info', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: ROOT,
  });
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const deadline = Date.now() + 30_000;
  while (!/worker \S+ ready/.test(out)) {
    if (proc.exitCode !== null) throw new Error(`celeriac worker exited early:\n${out}`);
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`celeriac worker not ready after 30 s:\n${out}`);
    }
    await sleep(50);
  }
  return {
    pid: proc.pid!,
    output: () => out,
    logs: () =>
      out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => {
          try {
            return JSON.parse(l) as Record<string, unknown>;
          } catch {
            return {};
          }
        }),
    exited,
    kill: (signal = 'SIGKILL') => proc.kill(signal),
    async stop() {
      if (proc.exitCode !== null) return proc.exitCode;
      proc.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      // A cleared timer: a pending one would keep the test process alive for 20 s after the worker exits.
      const code = await Promise.race([exited, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), 20_000)))]);
      clearTimeout(timer);
      if (code === 'timeout') {
        proc.kill('SIGKILL');
        return exited;
      }
      return code;
    },
  };
}
