/**
 * Shared vocabulary of the benchmark: system and workload names, the row
 * shape of results/latest.json, statistics, and small process helpers.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = fileURLToPath(new URL('../', import.meta.url));
export const ROOT_DIR = fileURLToPath(new URL('../../', import.meta.url));

/** The systems compared (plus optional variants for diagnosis). */
export const SYSTEMS = ['celeriac', 'bullmq', 'bee-queue', 'celery'] as const;
export const OPTIONAL_SYSTEMS = ['celeriac-solo'] as const;
export type QueueSystem = (typeof SYSTEMS)[number] | (typeof OPTIONAL_SYSTEMS)[number];
export type SystemName = QueueSystem | 'redis-floor';

/** Workload names exactly as issue 7 lists them, in report order. */
export const WORKLOADS = [
  'enqueue-serial',
  'enqueue-100',
  'enqueue-bulk',
  'drain-c1',
  'drain-c10',
  'drain-c100',
  'latency-p50',
  'latency-p95',
  'latency-p99',
  'drain-c100-ed25519',
  'drain-c100-rsa',
  'drain-c100-encrypted',
  'rss-backlog-200k',
  'floor-lpush-pipelined',
  'floor-rtt-p50',
] as const;
export type Workload = (typeof WORKLOADS)[number];

/** Higher is better for throughput rows; lower for latency and memory. */
export function higherIsBetter(workload: string): boolean {
  return !(workload.startsWith('latency') || workload.startsWith('rss') || workload === 'floor-rtt-p50');
}

/** One row of results/latest.json (the shape, nothing else). */
export interface Row {
  system: string;
  workload: string;
  median: number;
  min: number;
  max: number;
  unit: string;
}

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Nearest-rank percentile (p in 0..100) of unsorted values. */
export function percentile(values: readonly number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const rank = Math.min(s.length, Math.max(1, Math.ceil((p / 100) * s.length)));
  return s[rank - 1]!;
}

export function round(v: number, digits = 3): number {
  if (!Number.isFinite(v)) return v;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
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

/** A spawned helper process whose stdout is read line by line. */
export interface LineProcess {
  proc: ChildProcess;
  pid: number;
  /** Everything written to stdout and stderr (last 64 KiB). */
  output(): string;
  /** Resolves with the first stdout line matching `re`. */
  waitForLine(re: RegExp, timeoutMs: number, what: string): Promise<string>;
  /** Resolves with the exit code (or signal name). */
  exited: Promise<number | string | null>;
  write(line: string): void;
  /** `signal` (default SIGTERM), then SIGKILL after `graceMs`. */
  stop(graceMs?: number, signal?: NodeJS.Signals): Promise<void>;
}

/** Output without routine JSON log records (pino levels below error), so that failures show what matters. */
export function withoutRoutineLogs(text: string): string {
  return text
    .split('\n')
    .filter((l) => !/^\s*\{"level":(10|20|30|40),/.test(l))
    .join('\n');
}

/** Every helper process still running, so that an interrupted run can stop them (by PID). */
export const liveProcesses = new Set<ChildProcess>();

process.once('exit', () => killLiveProcesses());

export function killLiveProcesses(): void {
  for (const p of liveProcesses) {
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  }
  liveProcesses.clear();
}

export function spawnLines(cmd: string, args: string[], options: SpawnOptions = {}): LineProcess {
  const proc = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], ...options });
  liveProcesses.add(proc);
  proc.once('exit', () => liveProcesses.delete(proc));
  let out = '';
  let lineBuf = '';
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  const keep = (s: string): void => {
    out += s;
    if (out.length > 65536) out = out.slice(-65536);
  };
  proc.stdout?.on('data', (d: Buffer) => {
    const s = d.toString();
    keep(s);
    lineBuf += s;
    let i: number;
    while ((i = lineBuf.indexOf('\n')) >= 0) {
      lines.push(lineBuf.slice(0, i));
      lineBuf = lineBuf.slice(i + 1);
    }
    for (const w of [...waiters]) w();
  });
  proc.stderr?.on('data', (d: Buffer) => keep(d.toString()));
  proc.stdin?.on('error', () => undefined);
  const exited = new Promise<number | string | null>((resolve) => {
    proc.once('exit', (code, sig) => {
      resolve(code ?? sig);
      for (const w of [...waiters]) w();
    });
    proc.once('error', (err) => {
      keep(`spawn error: ${err.message}\n`);
      resolve(`error: ${err.message}`);
      for (const w of [...waiters]) w();
    });
  });
  let scanned = 0;
  return {
    proc,
    pid: proc.pid ?? -1,
    output: () => out,
    exited,
    write: (line: string) => {
      proc.stdin?.write(`${line}\n`);
    },
    waitForLine(re, timeoutMs, what) {
      return new Promise<string>((resolve, reject) => {
        const check = (): void => {
          for (; scanned < lines.length; scanned++) {
            const l = lines[scanned]!;
            if (re.test(l)) {
              scanned++;
              done();
              resolve(l);
              return;
            }
          }
          if (proc.exitCode !== null || proc.signalCode !== null) {
            done();
            reject(new Error(`${what}: process exited (${proc.exitCode ?? proc.signalCode}) before it was ready:\n${withoutRoutineLogs(out).slice(-4000)}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`${what}: not ready after ${timeoutMs} ms:\n${withoutRoutineLogs(out).slice(-4000)}`));
        }, timeoutMs);
        const done = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    async stop(graceMs = 10_000, signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Run a helper to completion and parse the last stdout line as JSON. */
export async function runJson<T>(cmd: string, args: string[], options: SpawnOptions & { timeoutMs: number; what: string }): Promise<T> {
  const p = spawnLines(cmd, args, options);
  const timer = setTimeout(() => p.proc.kill('SIGKILL'), options.timeoutMs);
  const code = await p.exited;
  clearTimeout(timer);
  const lines = p.output().split('\n').filter((l) => l.startsWith('{'));
  const last = lines[lines.length - 1];
  if (code !== 0 || !last) throw new Error(`${options.what} failed (exit ${code}):\n${withoutRoutineLogs(p.output()).slice(-4000)}`);
  const parsed = JSON.parse(last) as T & { error?: string };
  if (parsed.error) throw new Error(`${options.what}: ${parsed.error}`);
  return parsed;
}

// ── /proc sampling (Linux) ───────────────────────────────────────────────

/** The pid and all its descendants. */
export function processTree(pid: number): number[] {
  const out: number[] = [];
  const visit = (p: number): void => {
    out.push(p);
    let tids: string[] = [];
    try {
      tids = readdirSync(`/proc/${p}/task`);
    } catch {
      return;
    }
    for (const tid of tids) {
      let children = '';
      try {
        children = readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8');
      } catch {
        continue;
      }
      for (const c of children.split(' ')) if (c.trim()) visit(Number(c));
    }
  };
  visit(pid);
  return out;
}

/** Resident set size of one process, bytes (0 when gone). */
export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** RSS of a process and its descendants, bytes. */
export function treeRssBytes(pid: number): number {
  return processTree(pid).reduce((a, p) => a + rssBytes(p), 0);
}

const CLK_TCK = 100;

/** User+system CPU time of one process, ms. */
export function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[11] = utime, fields[12] = stime (0-based after the command name)
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** CPU time of a process tree, ms, per pid (so that exited children are not lost between two samples). */
export function treeCpu(pid: number): Map<number, number> {
  const m = new Map<number, number>();
  for (const p of processTree(pid)) m.set(p, cpuMs(p));
  return m;
}

export function cpuDelta(before: Map<number, number>, after: Map<number, number>): number {
  let total = 0;
  for (const [p, v] of after) total += v - (before.get(p) ?? 0);
  return total;
}

/** Busy CPU time of the whole machine (all cores), ms, from /proc/stat. */
export function machineBusyMs(): number {
  try {
    const first = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    const f = first.trim().split(/\s+/).slice(1).map(Number);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    return ((total - idle) * 1000) / CLK_TCK;
  } catch {
    return 0;
  }
}

export function fmtDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}
