/**
 * `celeriac demo` (the README's `npm start`): Celeriac end to end on a fresh
 * machine with nothing else installed. Starts real worker processes
 * (`celeriac worker -A <the demo's tasks>`, prefork pool) on the
 * embedded SQLite broker and result backend in a private temporary
 * directory, sends a batch of sample tasks (one fails on purpose, one
 * retries), shows progress on stderr, prints a summary table on stdout, and
 * stops and removes everything it started — also on Ctrl-C, and (through
 * the workers' parent watchdog) when it is killed outright.
 *
 * Security mode: production is Celeriac's default, and production refuses
 * unsigned tasks (CEL-007) and a root worker (CEL-020). The demo's tasks are
 * unsigned samples on a database in a private 0700 directory, so it asks
 * for development explicitly — `CELERIAC_ENV=development` for its own
 * processes only — and says so on screen. It does not generate keys to
 * look like production: that would hide what a real deployment needs. An
 * explicit `CELERIAC_ENV` of the user's is honoured (production: refused
 * up front, naming the fix).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { App, SendCall } from '../client/app.ts';
import type { ResultMeta } from '../protocol/result-meta.ts';
import { importModule, RUNNING_FROM_SOURCE } from '../runtime/import-module.ts';
import { sqliteUrlForPath } from '../transport/index.ts';
import { Exit, println, type CliIo } from './io.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = fileURLToPath(new URL('../../bin/celeriac.mjs', import.meta.url));
// The demo's tasks are part of the package (compiled with it), so an installed `celeriac demo` needs no TypeScript loader.
const TASKS_URL = new URL(RUNNING_FROM_SOURCE ? './demo-tasks.ts' : './demo-tasks.js', import.meta.url).href;
const TASKS = fileURLToPath(TASKS_URL);
const WATCHDOG = new URL('./demo-watchdog.mjs', import.meta.url).href;

export const DEMO_HELP = `Usage: celeriac demo [options]

See Celeriac work on this machine with nothing else installed (no Redis,
RabbitMQ or Python): starts worker processes on the embedded SQLite broker,
sends a batch of sample tasks — one fails on purpose, one retries twice —
shows their progress, and prints a summary (succeeded, failed, retried,
throughput, p50/p99 latency). Everything runs in a private temporary
directory that is removed afterwards; the processes it starts are stopped,
also on Ctrl-C.

The demo runs in development mode (CELERIAC_ENV=development for its own
processes, unless CELERIAC_ENV is already set): its sample tasks are
unsigned, which production — the default mode — refuses.

Options:
  -n, --tasks <n>          tasks to send (default 400, at least 2)
  -c, --concurrency <n>    tasks running at once in each worker (default 4)
  -w, --workers <n>        worker processes sharing the database (default 2)
      --timeout <s>        give up when the tasks are not done after s seconds (default 60)
      --keep               keep the temporary directory (database and worker logs)
  -h, --help               show this help

Exit codes: 0 every task ended as expected, 1 something did not, 2 usage
error, 4 the workers could not start. Ctrl-C stops early (exit 130).

The tasks live in the package (src/cli/demo-tasks.ts in the repository,
dist/cli/demo-tasks.js when installed). The demo prints the command that runs
a worker for them on the embedded default (.celeriac/celeriac.db in the
working directory).`;

/** Why the demo asks for development itself (see the file comment); `undefined` when it may. */
function demoModeRefusal(env: NodeJS.ProcessEnv): string | undefined {
  const own = env.CELERIAC_ENV;
  if (own === undefined || own === '' || own === 'development') return undefined;
  return `CELERIAC_ENV=${JSON.stringify(own)}: celeriac demo sends unsigned sample tasks, which only development mode accepts; ` +
    'unset CELERIAC_ENV (the demo then sets development for its own processes only) or set CELERIAC_ENV=development';
}

interface DemoOptions {
  tasks: number;
  concurrency: number;
  workers: number;
  timeoutS: number;
  keep: boolean;
}

function parseDemoArgs(argv: string[]): DemoOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      tasks: { type: 'string', short: 'n' },
      concurrency: { type: 'string', short: 'c' },
      workers: { type: 'string', short: 'w' },
      timeout: { type: 'string' },
      keep: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return 'help';
  const int = (v: string | undefined, name: string, def: number, min: number, max: number): number => {
    if (v === undefined) return def;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be a whole number from ${min} to ${max}`);
    return n;
  };
  return {
    tasks: int(values.tasks, '--tasks', 400, 2, 1_000_000),
    concurrency: int(values.concurrency, '--concurrency', 4, 1, 1000),
    workers: int(values.workers, '--workers', 2, 1, 64),
    timeoutS: int(values.timeout, '--timeout', 60, 1, 86_400),
    keep: values.keep ?? false,
  };
}

/** One worker process the demo started. */
interface WorkerProc {
  name: string;
  proc: ChildProcess;
  output: string[];
  exited: Promise<number | null>;
}

function startWorker(name: string, url: string, concurrency: number): WorkerProc {
  const processes = Math.max(1, Math.min(concurrency, availableParallelism()));
  const proc = spawn(
    process.execPath,
    ['--import', WATCHDOG, CLI, 'worker', '-A', TASKS, '-c', String(concurrency), '--processes', String(processes), '-n', `${name}@%h`, '--shutdown-timeout', '5'],
    {
      cwd: ROOT,
      env: { ...process.env, CELERIAC_BROKER_URL: url, CELERIAC_RESULT_BACKEND: url, CELERIAC_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    },
  );
  const output: string[] = [];
  const keep = (d: Buffer): void => {
    output.push(d.toString());
    if (output.length > 2000) output.splice(0, 1000);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return { name, proc, output, exited };
}

async function waitReady(w: WorkerProc, signal: AbortSignal, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!/worker \S+ ready/.test(w.output.join(''))) {
    if (w.proc.exitCode !== null || w.proc.signalCode !== null) throw new Error(`worker ${w.name} exited during start-up`);
    if (signal.aborted) throw new Error('interrupted');
    if (Date.now() > deadline) throw new Error(`worker ${w.name} not ready after ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Warm shutdown (SIGTERM), then SIGKILL after the grace period. */
async function stopWorkers(workers: WorkerProc[], graceMs: number): Promise<void> {
  await Promise.all(
    workers.map(async (w) => {
      if (w.proc.exitCode !== null || w.proc.signalCode !== null) return;
      w.proc.kill('SIGTERM');
      const timer = setTimeout(() => w.proc.kill('SIGKILL'), graceMs);
      await w.exited;
      clearTimeout(timer);
    }),
  );
}

/** The sample batch: mostly quick tasks of three kinds, one failure, one task that retries. */
function sampleCalls(n: number): SendCall[] {
  const calls: SendCall[] = [
    { name: 'demo.fail', args: [] },
    { name: 'demo.flaky', args: [2] },
  ];
  for (let i = 0; calls.length < n; i++) {
    switch (i % 5) {
      case 0:
      case 1:
        calls.push({ name: 'demo.add', args: [i, i + 1] });
        break;
      case 2:
      case 3:
        calls.push({ name: 'demo.io', args: [2 + (i % 6) * 2] });
        break;
      default:
        calls.push({ name: 'demo.hash', args: [`task ${i}`, 2000] });
    }
  }
  // The interesting two go in the middle of the batch, not first.
  const mid = Math.floor(calls.length / 2);
  if (mid >= 2 && mid + 1 < calls.length) {
    [calls[0], calls[mid]] = [calls[mid]!, calls[0]!];
    [calls[1], calls[mid + 1]] = [calls[mid + 1]!, calls[1]!];
  }
  return calls;
}

interface Tally {
  total: number;
  done: number;
  succeeded: number;
  failed: number;
  retried: number;
  unexpected: string[];
  latencies: number[];
}

/** Live progress on stderr: a redrawn bar on a terminal, plain lines once a second otherwise (CI logs). */
class Progress {
  private readonly tty: boolean;
  private timer: NodeJS.Timeout | undefined;
  private lastDraw = 0;
  private readonly started = performance.now();

  constructor(
    private readonly stream: NodeJS.WritableStream,
    private readonly tally: Tally,
  ) {
    this.tty = (stream as NodeJS.WriteStream).isTTY === true;
  }

  start(): void {
    this.timer = setInterval(() => this.render(false), this.tty ? 80 : 1000);
    this.timer.unref();
  }

  private line(): string {
    const t = this.tally;
    const secs = (performance.now() - this.started) / 1000;
    const rate = secs > 0 ? Math.round(t.done / secs) : 0;
    return `${t.done}/${t.total} done · ${t.succeeded} succeeded · ${t.failed} failed · ${t.retried} retries · ${rate} tasks/s`;
  }

  render(final: boolean): void {
    const t = this.tally;
    const now = performance.now();
    // A terminal redraws at most ~20 times a second; a log gets a line a second.
    if (!final && now - this.lastDraw < (this.tty ? 50 : 1000)) return;
    this.lastDraw = now;
    if (this.tty) {
      const width = 28;
      const filled = Math.round((t.done / t.total) * width);
      this.stream.write(`\r\x1b[2K  [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${this.line()}${final ? '\n' : ''}`);
    } else {
      this.stream.write(`progress: ${this.line()}\n`);
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.render(true);
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

function table(rows: Array<[string, string, string?]>): string {
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  const w2 = Math.max(0, ...rows.map((r) => (r[2] ?? '').length));
  const line = (l: string, m: string, r: string): string => `  ${l}${'─'.repeat(w0 + 2)}${m}${'─'.repeat(w1 + 2)}${w2 ? m + '─'.repeat(w2 + 2) : ''}${r}`;
  const out = [line('┌', '┬', '┐')];
  for (const [a, b, c] of rows) out.push(`  │ ${a.padEnd(w0)} │ ${b.padStart(w1)} │${w2 ? ` ${(c ?? '').padEnd(w2)} │` : ''}`);
  out.push(line('└', '┴', '┘'));
  return out.join('\n');
}

/** Run the demo; returns the exit code. */
export async function runDemoCommand(argv: string[], io: CliIo): Promise<number> {
  let opts: DemoOptions | 'help';
  try {
    opts = parseDemoArgs(argv);
  } catch (err) {
    println(io.stderr, `error: ${(err as Error).message}\n\n${DEMO_HELP}`);
    return Exit.USAGE;
  }
  if (opts === 'help') {
    println(io.stdout, DEMO_HELP);
    return Exit.OK;
  }
  const o = opts;
  const refusal = demoModeRefusal(process.env);
  if (refusal) {
    println(io.stderr, `error: ${refusal}`);
    return Exit.USAGE;
  }
  const modeNote = process.env.CELERIAC_ENV === 'development' ? 'CELERIAC_ENV=development' : 'set by the demo for its own processes';
  // Workers inherit it; the in-process client below reads it too.
  process.env.CELERIAC_ENV = 'development';
  const controller = new AbortController();
  let interrupts = 0;
  const workers: WorkerProc[] = [];
  const onInt = (): void => {
    if (++interrupts === 1) {
      println(io.stderr, '\ninterrupted: stopping the workers…');
      controller.abort();
    } else {
      for (const w of workers) w.proc.kill('SIGKILL');
    }
  };
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onInt);

  // A private directory (mode 0700) that nobody else can plant files in.
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-demo-'));
  const dbPath = join(dir, 'demo.db');
  const url = sqliteUrlForPath(dbPath);
  let app: App | undefined;
  let code: number = Exit.ERROR;
  try {
    println(io.stderr, `Celeriac demo: ${o.workers} worker process${o.workers === 1 ? '' : 'es'} × concurrency ${o.concurrency} on the embedded SQLite broker`);
    println(io.stderr, `  database ${dbPath} (temporary)`);
    println(io.stderr, `  security mode: development (${modeNote}): unsigned sample tasks; your own workers run in production unless CELERIAC_ENV=development`);
    println(io.stderr, `  each worker runs: celeriac worker -A ${relative(process.cwd(), TASKS)} -c ${o.concurrency}`);
    const bootStart = performance.now();
    for (let i = 1; i <= o.workers; i++) workers.push(startWorker(`demo${i}`, url, o.concurrency));
    try {
      await Promise.all(workers.map((w) => waitReady(w, controller.signal, 30_000)));
    } catch (err) {
      if (controller.signal.aborted) return (code = 130);
      println(io.stderr, `error: ${(err as Error).message}`);
      for (const w of workers) {
        const tail = w.output.join('').split('\n').slice(-15).join('\n');
        if (tail.trim()) println(io.stderr, `--- ${w.name} output ---\n${tail}`);
      }
      return (code = Exit.ERROR);
    }
    println(io.stderr, `  workers ready in ${((performance.now() - bootStart) / 1000).toFixed(1)} s; sending ${o.tasks} tasks`);

    // The client side: the same task module, pointed at the demo's database.
    process.env.CELERIAC_BROKER_URL = url;
    process.env.CELERIAC_RESULT_BACKEND = url;
    process.env.CELERIAC_LOG_LEVEL ??= 'warn';
    const mod = (await importModule(TASKS_URL)) as unknown as { app: App };
    app = mod.app;
    const store = await app.resultStore();
    if (!store) throw new Error('the demo app has no result backend');

    const tally: Tally = { total: o.tasks, done: 0, succeeded: 0, failed: 0, retried: 0, unexpected: [], latencies: [] };
    const progress = new Progress(io.stderr, tally);
    const calls = sampleCalls(o.tasks);
    const started = performance.now();
    progress.start();
    const waits: Array<Promise<void>> = [];
    const onDone = (call: SendCall, sentAt: number, meta: ResultMeta): void => {
      tally.done++;
      tally.latencies.push(performance.now() - sentAt);
      const expectFailure = call.name === 'demo.fail';
      if (meta.status === 'SUCCESS') {
        tally.succeeded++;
        if (call.name === 'demo.flaky') tally.retried += Number((meta.result as { retries?: number } | null)?.retries ?? 0);
        if (expectFailure) tally.unexpected.push('demo.fail succeeded');
      } else {
        tally.failed++;
        if (!expectFailure) tally.unexpected.push(`${call.name} ended ${meta.status}`);
      }
      progress.render(false);
    };
    // Batches of 100: one transaction each; results are awaited as they land.
    for (let i = 0; i < calls.length && !controller.signal.aborted; i += 100) {
      const batch = calls.slice(i, i + 100);
      const sentAt = performance.now();
      const results = await app.sendMany(batch);
      results.forEach((r, k) => {
        // No per-wait abort signal: thousands of listeners on one signal cost O(n²); Ctrl-C is raced below.
        waits.push(store.wait(r.id).then((meta) => onDone(batch[k]!, sentAt, meta)));
      });
    }
    const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), o.timeoutS * 1000).unref());
    const interrupted = new Promise<'interrupted'>((r) => {
      if (controller.signal.aborted) r('interrupted');
      controller.signal.addEventListener('abort', () => r('interrupted'), { once: true });
    });
    const outcome = await Promise.race([Promise.allSettled(waits).then(() => 'done' as const), timeout, interrupted]);
    const elapsed = (performance.now() - started) / 1000;
    progress.stop();
    if (controller.signal.aborted) return (code = 130);
    if (outcome === 'timeout') {
      println(io.stderr, `error: only ${tally.done} of ${o.tasks} tasks finished within ${o.timeoutS} s`);
      return (code = Exit.TASK_FAILED);
    }

    const lat = [...tally.latencies].sort((a, b) => a - b);
    println(io.stdout);
    println(
      io.stdout,
      table([
        ['succeeded', String(tally.succeeded)],
        ['failed', String(tally.failed), 'demo.fail, on purpose'],
        ['retried', String(tally.retried), 'demo.flaky: 2 retries, then success'],
        ['throughput', `${Math.round(o.tasks / elapsed)}/s`, `${o.tasks} tasks in ${elapsed.toFixed(2)} s`],
        ['latency p50', `${percentile(lat, 50).toFixed(1)} ms`, 'send → result seen by the client'],
        ['latency p99', `${percentile(lat, 99).toFixed(1)} ms`],
      ]),
    );
    const expected = tally.succeeded === o.tasks - 1 && tally.failed === 1 && tally.retried === 2 && tally.unexpected.length === 0;
    if (!expected) {
      println(io.stderr, `error: the demo did not go as expected: ${tally.unexpected.join('; ') || `succeeded ${tally.succeeded}, failed ${tally.failed}, retried ${tally.retried}`}`);
      return (code = Exit.TASK_FAILED);
    }
    println(io.stdout);
    println(io.stdout, 'Every task ended as expected. Next steps:');
    println(io.stdout, `  export CELERIAC_ENV=development                   # these samples are unsigned: development mode, asked for`);
    println(io.stdout, `  npx celeriac worker -A ${relative(process.cwd(), TASKS)}     # a worker on .celeriac/celeriac.db`);
    println(io.stdout, `  npx celeriac send demo.add '[2, 3]' --wait        # send it a task from another terminal (same export)`);
    println(io.stdout, '  In production (the default) a worker needs signing keys: celeriac secrets generate ed25519; see README, Security.');
    return (code = Exit.OK);
  } catch (err) {
    if (controller.signal.aborted) return (code = 130);
    println(io.stderr, `error: ${(err as Error).message}`);
    return (code = Exit.ERROR);
  } finally {
    await app?.close().catch(() => undefined);
    await stopWorkers(workers, 8000);
    if (code !== Exit.OK && code !== 130) {
      for (const w of workers) {
        const tail = w.output.join('').split('\n').filter((l) => /"level":(40|50|60)/.test(l)).slice(-10).join('\n');
        if (tail.trim()) println(io.stderr, `--- ${w.name} warnings and errors ---\n${tail}`);
      }
    }
    if (o.keep) {
      for (const w of workers) writeFileSync(join(dir, `${w.name}.log`), w.output.join(''), { mode: 0o600 });
      println(io.stderr, `kept ${dir} (database and worker logs)`);
    } else {
      rmSync(dir, { recursive: true, force: true });
    }
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onInt);
  }
}
