/**
 * Drive real Python Celery 5.2.6 (Debian's python3-celery) from tests: a
 * worker process and a one-shot client, both from test/interop/harness.
 */
import { spawn, spawnSync, execFile, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { PYTHON, sleep } from './services.ts';

export const HARNESS_DIR = fileURLToPath(new URL('../interop/harness/', import.meta.url));

export interface PythonWorker {
  pid: number;
  output(): string;
  /** Warm shutdown (SIGTERM) and wait for exit. */
  stop(): Promise<void>;
  kill(signal?: NodeJS.Signals): void;
  exited: Promise<number | null>;
}

export interface PythonWorkerOptions {
  brokerUrl: string;
  backendUrl: string;
  env?: Record<string, string>;
  args?: string[];
  name?: string;
  concurrency?: number;
}

/** Start `celery worker` for harness_tasks and wait until it is ready. */
export async function startPythonWorker(options: PythonWorkerOptions): Promise<PythonWorker> {
  const proc: ChildProcess = spawn('sh', [`${HARNESS_DIR}py_worker.sh`, options.brokerUrl, options.backendUrl, ...(options.args ?? [])], {
    env: {
      ...process.env,
      PYTHON,
      WORKER_NAME: options.name ?? 'pyworker@localhost',
      CONCURRENCY: String(options.concurrency ?? 2),
      LOGLEVEL: 'INFO',
      PYTHONUNBUFFERED: '1',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const deadline = Date.now() + 30_000;
  while (!/ready\./.test(out)) {
    if (proc.exitCode !== null) throw new Error(`python worker exited early:\n${out}`);
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`python worker not ready after 30 s:\n${out}`);
    }
    await sleep(50);
  }
  return {
    pid: proc.pid!,
    output: () => out,
    exited,
    kill: (signal = 'SIGKILL') => proc.kill(signal),
    async stop() {
      if (proc.exitCode !== null) return;
      proc.kill('SIGTERM');
      await Promise.race([exited, sleep(15_000)]);
      if (proc.exitCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
}

/** Run py_client.py and parse its JSON output. */
export function pyClient(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    execFile(PYTHON, [`${HARNESS_DIR}py_client.py`, ...args], { env: { ...process.env, ...env }, timeout: timeoutMs, cwd: HARNESS_DIR }, (err, stdout, stderr) => {
      const text = stdout.trim();
      if (!text) {
        reject(new Error(`py_client ${args.join(' ')} printed nothing: ${err?.message ?? ''}\n${stderr}`));
        return;
      }
      try {
        resolve(JSON.parse(text.split('\n').pop()!) as Record<string, unknown>);
      } catch {
        reject(new Error(`py_client output is not JSON: ${text}\n${stderr}`));
      }
    });
  });
}

/** Run a short Python script with Celery importable; returns stdout. */
export function pyScript(code: string, env: Record<string, string> = {}, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(PYTHON, ['-c', code], { env: { ...process.env, PYTHONPATH: HARNESS_DIR, ...env }, timeout: timeoutMs, cwd: HARNESS_DIR }, (err, stdout, stderr) => {
      if (err) reject(new Error(`python failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** Where scripts/setup-python-otel.sh unpacks Debian's OpenTelemetry SDK for Python. */
export const PYTHON_OTEL_SITE = fileURLToPath(new URL('../../.cache/python-otel/root/usr/lib/python3/dist-packages', import.meta.url));

let otelChecked: boolean | undefined;
/** True when Python Celery imports the OpenTelemetry SDK from {@link PYTHON_OTEL_SITE} (run scripts/setup-python-otel.sh). */
export function hasPythonOtel(): boolean {
  otelChecked ??=
    existsSync(PYTHON_OTEL_SITE) &&
    spawnSync(PYTHON, ['-c', 'import celery, opentelemetry.sdk.trace.export.in_memory_span_exporter'], { stdio: 'ignore', env: { ...process.env, PYTHONPATH: PYTHON_OTEL_SITE } }).status === 0;
  return otelChecked;
}
