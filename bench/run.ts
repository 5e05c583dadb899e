/**
 * One command compares Celeriac with BullMQ, bee-queue and Python Celery on
 * one private Redis, in turns, and writes results/latest.json and
 * results/latest.md. See bench/README.md for what each workload does.
 *
 *   npm run bench                 # defaults: 3 rounds, < 10 min on 2 cores
 *   npm run bench:smoke           # a few hundred tasks, one round (CI)
 *   node --import tsx bench/run.ts --help
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import type { ClientResult } from './clients/node-client.ts';
import {
  BENCH_DIR,
  cpuDelta,
  cpuMs,
  fmtDuration,
  killLiveProcesses,
  withoutRoutineLogs,
  machineBusyMs,
  median,
  OPTIONAL_SYSTEMS,
  ROOT_DIR,
  runJson,
  sleep,
  SYSTEMS,
  treeCpu,
  treeRssBytes,
  WORKLOADS,
  type QueueSystem,
  type Row,
} from './lib/common.ts';
import { EXTRA_PRODUCERS, extraRows as extraRowsFrom } from './lib/extra-rows.ts';
import { describeMachine, pythonCelery } from './lib/machine.ts';
import { startRedis } from './lib/redis-server.ts';
import { renderMarkdown, renderReadmeBlock, spliceReadme, toRow, type Diagnostic, type RssRun, type RunInfo } from './lib/report.ts';
import { envelopeShowsVariant, prepareSecurityKeys, recordShowsEncryption, securityEnv, VARIANT_WORKLOAD, type SecurityKeys, type SecurityVariant } from './lib/security.ts';
import { adapterFor, park, runNodeClient, type Adapter, type Ctx } from './lib/systems.ts';
import { renderSummary, summarizeFiles, withChildrenMerged } from './profile-summary.ts';

const USAGE = `Usage: node --import tsx bench/run.ts [options]

  --smoke               a few hundred tasks, one round (CI; asserts nothing about speed)
  --rounds N            rounds of every workload (default 3; RSS runs once)
  --systems LIST        comma-separated: ${[...SYSTEMS, ...OPTIONAL_SYSTEMS].join(', ')}
                        (default: ${SYSTEMS.join(',')}; redis-floor rows come with the floor workloads)
  --workloads LIST      workload names or groups (enqueue, drain, latency, security, rss, floor);
                        default: all
  --skip LIST           workloads or groups to leave out
  --with LIST           extra rows from the other broker benchmarks: sqlite, amqp
                        (bench/sqlite-throughput.ts, bench/amqp-throughput.ts, when present)
  --bulk-batch N        tasks per bulk call (default 1000)
  --rss-window S        most seconds to sample RSS while draining the 200k backlog (default 30)
  --no-pad              do not pad BullMQ/bee-queue job data to Celeriac's message size
  --profile             profile one Celeriac drain (default drain-c100; or e.g. --workloads
                        drain-c100-ed25519) in the worker and its children, and summarise it into
                        results/profile-summary.md; writes no latest.json
  --quiet-wait S        before each step, wait up to S seconds for other processes to leave the
                        CPUs mostly idle (< 15% of all cores), for shared machines (default 0: no wait)
  --out DIR             results directory (default bench/results; bench/results/smoke with --smoke)
  -h, --help
`;

const GROUPS: Record<string, string[]> = {
  enqueue: ['enqueue-serial', 'enqueue-100', 'enqueue-bulk'],
  drain: ['drain-c1', 'drain-c10', 'drain-c100'],
  latency: ['latency-p50', 'latency-p95', 'latency-p99'],
  security: ['drain-c100-ed25519', 'drain-c100-rsa', 'drain-c100-encrypted'],
  rss: ['rss-backlog-200k'],
  floor: ['floor-lpush-pipelined', 'floor-rtt-p50'],
};

/** The units of work the runner schedules; `latency` yields three rows. */
type Step =
  | 'enqueue-serial'
  | 'enqueue-100'
  | 'enqueue-bulk'
  | 'drain-c1'
  | 'drain-c10'
  | 'drain-c100'
  | 'latency'
  | 'drain-c100-ed25519'
  | 'drain-c100-rsa'
  | 'drain-c100-encrypted'
  | 'floor-lpush-pipelined'
  | 'floor-rtt-p50'
  | 'rss-backlog-200k';
const STEP_ORDER: Step[] = ['enqueue-serial', 'enqueue-100', 'enqueue-bulk', 'drain-c1', 'drain-c10', 'drain-c100', 'latency', 'drain-c100-ed25519', 'drain-c100-rsa', 'drain-c100-encrypted', 'floor-lpush-pipelined', 'floor-rtt-p50'];

interface Counts {
  enqueue: number;
  drain: number;
  latency: number;
  latencyWarmup: number;
  rss: number;
  floorLpush: number;
  floorRtt: number;
}

class Unavailable extends Error {}

function expand(list: string | undefined): Set<string> | undefined {
  if (!list) return undefined;
  const out = new Set<string>();
  for (const x of list.split(',').map((s) => s.trim()).filter(Boolean)) {
    const g = GROUPS[x];
    if (g) g.forEach((w) => out.add(w));
    else if ((WORKLOADS as readonly string[]).includes(x) || x === 'latency') out.add(x);
    else throw new Error(`unknown workload ${JSON.stringify(x)}; use ${[...Object.keys(GROUPS), ...WORKLOADS].join(', ')}`);
  }
  return out;
}

function commandLine(): string {
  const args = process.argv.slice(2);
  const ev = process.env.npm_lifecycle_event;
  if (ev === 'bench' || ev === 'bench:smoke') {
    // `npm run bench:smoke -- X` runs `run.ts --smoke X`: show what was typed.
    const extra = ev === 'bench:smoke' && args[0] === '--smoke' ? args.slice(1) : args;
    return `npm run ${ev}${extra.length ? ` -- ${extra.join(' ')}` : ''}`;
  }
  return `node --import tsx ${relative(ROOT_DIR, process.argv[1] ?? 'bench/run.ts')}${args.length ? ` ${args.join(' ')}` : ''}`;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      smoke: { type: 'boolean' },
      rounds: { type: 'string' },
      systems: { type: 'string' },
      workloads: { type: 'string' },
      skip: { type: 'string' },
      with: { type: 'string' },
      'bulk-batch': { type: 'string' },
      'rss-window': { type: 'string' },
      'no-pad': { type: 'boolean' },
      profile: { type: 'boolean' },
      out: { type: 'string' },
      'quiet-wait': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const smoke = values.smoke ?? false;
  const profile = values.profile ?? false;
  const rounds = profile ? 1 : values.rounds ? Math.max(1, Number(values.rounds)) : smoke ? 1 : 3;
  const bulkBatch = values['bulk-batch'] ? Number(values['bulk-batch']) : 1000;
  const rssWindowS = values['rss-window'] ? Number(values['rss-window']) : smoke ? 15 : 30;
  // A smoke run never replaces the published results.
  const outDir = values.out ?? join(BENCH_DIR, 'results', ...(smoke ? ['smoke'] : []));
  mkdirSync(outDir, { recursive: true });

  const requested = (values.systems ? values.systems.split(',').map((s) => s.trim()) : profile ? ['celeriac'] : [...SYSTEMS]) as QueueSystem[];
  for (const s of requested) if (![...SYSTEMS, ...OPTIONAL_SYSTEMS].includes(s as never)) throw new Error(`unknown system ${s}`);
  let wanted = expand(values.workloads) ?? new Set<string>(profile ? ['drain-c100'] : [...WORKLOADS]);
  const skip = expand(values.skip);
  if (skip) wanted = new Set([...wanted].filter((w) => !skip.has(w)));
  if (profile) {
    // One drain, one worker: its profiles and its time window.
    const drains = [...wanted].filter((w) => w.startsWith('drain-'));
    if (drains.length !== 1 || requested.length !== 1 || !requested[0]!.startsWith('celeriac')) {
      throw new Error('--profile runs one drain workload of one Celeriac system, e.g. --profile --workloads drain-c100-ed25519 (default: drain-c100, celeriac)');
    }
    wanted = new Set(drains);
  }

  const counts: Counts = smoke
    ? { enqueue: 300, drain: 300, latency: 100, latencyWarmup: 20, rss: 3000, floorLpush: 2000, floorRtt: 200 }
    : { enqueue: 20_000, drain: 20_000, latency: 2000, latencyWarmup: 100, rss: 200_000, floorLpush: 20_000, floorRtt: 2000 };
  // Python Celery is ~15× slower; a tenth of the tasks gives the same rates within the time budget.
  const celeryCounts: Counts = smoke
    ? { ...counts, enqueue: 100, drain: 100, latency: 50 }
    : { ...counts, enqueue: 2000, drain: 2000, latency: 500, latencyWarmup: 20 };
  const countsFor = (s: QueueSystem): Counts => (s === 'celery' ? celeryCounts : counts);

  const started = Date.now();
  const load0 = loadavg()[0]!;
  if (load0 > cpus().length * 0.5) process.stderr.write(`warning: the machine is busy (1-min load average ${load0.toFixed(2)} on ${cpus().length} cores); results will be noisy\n`);
  const notes: string[] = [];
  const unavailable: RunInfo['unavailable'] = [];
  const failures: string[] = [];

  const py = pythonCelery();
  let systems = requested;
  if (systems.includes('celery') && !py.ok) {
    systems = systems.filter((s) => s !== 'celery');
    notes.push(`Python Celery skipped: ${py.reason}.`);
    for (const w of wanted) if (!w.startsWith('floor') && !w.includes('-ed25519') && !w.includes('-rsa') && !w.includes('-encrypted')) unavailable.push({ system: 'celery', workload: w, reason: py.reason ?? 'absent' });
  }
  const adapters = new Map<QueueSystem, Adapter>(systems.map((s) => [s, adapterFor(s)]));

  // ── plan ──────────────────────────────────────────────────────────────
  const wantStep = (s: Step): boolean => (s === 'latency' ? ['latency-p50', 'latency-p95', 'latency-p99', 'latency'].some((w) => wanted.has(w)) : wanted.has(s));
  const systemsForStep = (s: Step): string[] => {
    if (s.startsWith('floor')) return ['redis-floor'];
    if (s === 'drain-c100-ed25519' || s === 'drain-c100-rsa' || s === 'drain-c100-encrypted') return systems.filter((x) => x.startsWith('celeriac'));
    return systems;
  };
  const plan: Array<{ round: number; step: Step; system: string }> = [];
  for (let r = 1; r <= rounds; r++) {
    for (const step of STEP_ORDER) if (wantStep(step)) for (const system of systemsForStep(step)) plan.push({ round: r, step, system });
  }
  if (wanted.has('rss-backlog-200k')) for (const system of systems) plan.push({ round: 1, step: 'rss-backlog-200k', system });

  // ── progress line ────────────────────────────────────────────────────
  const tty = process.stderr.isTTY;
  let current = '';
  const progress = (text: string): void => {
    current = text;
    if (tty) process.stderr.write(`\r\x1b[K${text}`);
    else process.stderr.write(`${text}\n`);
  };
  const log = (text: string): void => {
    if (tty) process.stderr.write(`\r\x1b[K${text}\n${current}`);
    else process.stderr.write(`${text}\n`);
  };
  let ticker: NodeJS.Timeout | undefined;

  // ── services ─────────────────────────────────────────────────────────
  const redis = await startRedis();
  const ctx: Ctx = {
    redis,
    db0: redis.client(0),
    db1: redis.client(1),
    env: {
      ...(process.env as Record<string, string>),
      BENCH_REDIS_PORT: String(redis.port),
      BENCH_BROKER_URL: redis.url(0),
      BENCH_BACKEND_URL: redis.url(1),
      CELERIAC_LOG_LEVEL: process.env.CELERIAC_LOG_LEVEL ?? 'warn',
      // Private loopback services without passwords: development mode, asked for (production is the default, src/config/mode.ts).
      CELERIAC_ENV: 'development',
    },
  };
  let profileDir: string | undefined;
  if (profile) {
    profileDir = join(outDir, 'profiles', new Date().toISOString().replace(/[:.]/g, '-'));
    mkdirSync(profileDir, { recursive: true });
    // Node refuses --cpu-prof in NODE_OPTIONS; a preloaded module profiles the worker and every child it forks.
    const preload = new URL('./lib/cpu-profile-preload.mjs', import.meta.url).href;
    ctx.workerEnv = { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${preload}`.trim(), BENCH_CPU_PROF_DIR: profileDir };
  }
  let keys: SecurityKeys | undefined;
  const cleanups: Array<() => Promise<void> | void> = [
    () => ctx.db0.disconnect(),
    () => ctx.db1.disconnect(),
    () => redis.stop(),
  ];
  const cleanup = async (): Promise<void> => {
    if (ticker) clearInterval(ticker);
    killLiveProcesses();
    for (const c of cleanups.splice(0).reverse()) await Promise.resolve(c()).catch(() => undefined);
  };
  process.once('SIGINT', () => {
    void cleanup().then(() => process.exit(130));
  });

  try {
    const machine = await describeMachine(redis.version);
    const flush = async (): Promise<void> => {
      await ctx.db0.flushall('SYNC');
    };

    // Celeriac's ordinary message (the size every system's message is matched to).
    const sample = await runNodeClient('celeriac', { op: 'sample-envelope' }, { ...ctx.env, BENCH_SECURITY: 'plain' });
    const envelope = sample.envelope ?? '';
    const pads: Record<string, number> = {};
    for (const s of ['bullmq', 'bee-queue'] as const) {
      if (!adapters.has(s)) continue;
      if (values['no-pad']) {
        pads[s] = 0;
        continue;
      }
      const c = await runNodeClient(s, { op: 'calibrate', target: envelope.length }, ctx.env);
      pads[s] = c.pad ?? 0;
      notes.push(`${s}: job data padded with ${c.pad} bytes so one stored job record (${c.overhead} bytes of its own fields with empty data) matches Celeriac's ${envelope.length}-byte message.`);
    }
    notes.unshift(`Message size: Celeriac's ordinary no-op task message is ${envelope.length} bytes in the queue list; Python Celery's own client writes 860 bytes for the same call; the floor pushes Celeriac's message.`);
    if (wanted.has('drain-c100-ed25519') || wanted.has('drain-c100-rsa') || wanted.has('drain-c100-encrypted')) {
      keys = await prepareSecurityKeys();
      const dir = keys.dir;
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    }

    // ── results ─────────────────────────────────────────────────────────
    const values_ = new Map<string, number[]>();
    const units = new Map<string, string>();
    const diag = new Map<string, { worker: number[]; redis: number[]; client: number[]; foreign: number[] }>();
    const key = (s: string, w: string): string => `${s}\u0000${w}`;
    const record = (s: string, w: string, v: number, unit: string): void => {
      const k = key(s, w);
      if (!values_.has(k)) values_.set(k, []);
      values_.get(k)!.push(v);
      units.set(k, unit);
    };
    const recordDiag = (s: string, w: string, d: { worker?: number; redis?: number; client?: number; foreign?: number }): void => {
      const k = key(s, w);
      if (!diag.has(k)) diag.set(k, { worker: [], redis: [], client: [], foreign: [] });
      const e = diag.get(k)!;
      if (d.foreign !== undefined) e.foreign.push(d.foreign);
      if (d.worker !== undefined) e.worker.push(d.worker);
      if (d.redis !== undefined) e.redis.push(d.redis);
      if (d.client !== undefined) e.client.push(d.client);
    };
    const rssRuns: RssRun[] = [];
    const skipKeys = new Set<string>();
    let window: { fromUs: number; toUs: number } | undefined;

    // ── measurements ────────────────────────────────────────────────────
    const envFor = (variant: SecurityVariant): Record<string, string> => ({ ...ctx.env, ...securityEnv(variant, keys) });

    const enqueue = async (a: Adapter, mode: 'serial' | 'inflight' | 'bulk', workload: string): Promise<void> => {
      const c = countsFor(a.name);
      await flush();
      const warmup = mode === 'serial' ? Math.min(200, c.enqueue) : mode === 'inflight' ? Math.min(1000, c.enqueue) : Math.min(2 * bulkBatch, c.enqueue);
      const res = await a.client(ctx, { op: 'enqueue', mode, n: c.enqueue, inflight: 100, batch: bulkBatch, warmup, pad: pads[a.name] ?? 0 }, envFor('plain'));
      const queued = await a.backlog(ctx);
      if (queued !== c.enqueue + warmup) throw new Error(`${a.name} ${workload}: ${queued} messages queued, expected ${c.enqueue + warmup}`);
      record(a.name, workload, c.enqueue / res.seconds!, 'tasks/s');
      if (res.cpuMs !== undefined) recordDiag(a.name, workload, { client: (res.cpuMs / c.enqueue) * 1000 });
    };

    const drain = async (a: Adapter, concurrency: number, workload: string, variant: SecurityVariant): Promise<void> => {
      // RSA signing (two RSA-PSS signatures per message, on the client) makes the untimed fill slow: a quarter of the tasks.
      const n = variant === 'rsa' ? Math.max(100, Math.round(countsFor(a.name).drain / 4)) : countsFor(a.name).drain;
      if (variant !== 'plain' && keys?.problems[variant]) throw new Unavailable(keys.problems[variant]!);
      await flush();
      const env = envFor(variant);
      const filled: ClientResult = await a.fill(ctx, n, env, pads[a.name] ?? 0);
      if (variant !== 'plain' && !filled.securityActive) {
        throw new Unavailable(`the app does not turn ${variant} on with the expected options (bench/lib/security.ts): app.security hooks not set`);
      }
      const queued = await a.backlog(ctx);
      if (queued !== n) throw new Error(`${a.name} ${workload}: ${queued} queued after the fill, expected ${n}`);
      if (variant === 'ed25519' || variant === 'rsa') {
        const env0 = (await ctx.db0.lindex('celery', 0)) ?? '';
        if (!envelopeShowsVariant(env0, variant)) throw new Unavailable(`hooks are set but queued messages carry no ${variant} signature`);
      }
      // Kombu layout: hide the backlog while the worker starts; release() puts it back in one step.
      if (a.kombu) await park(ctx);
      const h = await a.startWorker(ctx, concurrency, env);
      h.parked = a.kombu;
      try {
        if (variant !== 'plain' && h.info.security === false) throw new Unavailable(`the worker's app does not turn ${variant} on`);
        await sleep(300);
        const before = await a.progress(ctx);
        if (before.done + before.failed > 0) throw new Error(`${a.name} ${workload}: the worker ran ${before.done + before.failed} tasks before its release`);
        const w0 = treeCpu(h.pid);
        const r0 = cpuMs(redis.pid);
        const m0 = machineBusyMs();
        const self0 = process.cpuUsage();
        const t0 = performance.now();
        const us0 = process.hrtime.bigint() / 1000n;
        await a.release(ctx, h);
        let last = -1;
        let lastChange = performance.now();
        let p = { done: 0, failed: 0 };
        for (;;) {
          p = await a.progress(ctx);
          const seen = p.done + p.failed;
          if (seen >= n) break;
          const now = performance.now();
          if (seen !== last) {
            last = seen;
            lastChange = now;
          } else if (now - lastChange > 30_000) {
            throw new Error(`${a.name} ${workload}: stalled at ${seen}/${n}\n${withoutRoutineLogs(h.lp.output()).slice(-3000)}`);
          }
          if (h.lp.proc.exitCode !== null) throw new Error(`${a.name} worker exited during the drain:\n${withoutRoutineLogs(h.lp.output()).slice(-3000)}`);
          await sleep(2);
        }
        const t1 = performance.now();
        const us1 = process.hrtime.bigint() / 1000n;
        const workerCpu = cpuDelta(w0, treeCpu(h.pid));
        const redisCpu = cpuMs(redis.pid) - r0;
        const selfCpu = process.cpuUsage(self0);
        // CPU used on the machine by anything but this measurement (other users, stray processes), % of all cores.
        const foreignMs = machineBusyMs() - m0 - workerCpu - redisCpu - (selfCpu.user + selfCpu.system) / 1000;
        const foreignPct = Math.max(0, (foreignMs / ((t1 - t0) * cpus().length)) * 100);
        if (p.failed > 0) throw new Error(`${a.name} ${workload}: ${p.failed} tasks failed`);
        const seconds = (t1 - t0) / 1000;
        if (profile) window = { fromUs: Number(us0), toUs: Number(us1) };
        await h.lp.stop();
        await a.verify(ctx, n);
        if (variant === 'encrypted') {
          // A record key (Celeriac keeps a state key beside each record, so a random key may be that).
          let k: string | undefined;
          let cursor = '0';
          do {
            const [next, keys] = await ctx.db1.scan(cursor, 'MATCH', 'celery-task-meta-*', 'COUNT', 100);
            cursor = next;
            k = keys[0];
          } while (k === undefined && cursor !== '0');
          const rec = k ? ((await ctx.db1.get(k)) ?? '') : '';
          if (!recordShowsEncryption(rec)) throw new Unavailable('the worker stored plaintext results (no celeriac_encrypted field)');
        }
        record(a.name, workload, n / seconds, 'tasks/s');
        recordDiag(a.name, workload, { worker: (workerCpu / n) * 1000, redis: (redisCpu / n) * 1000, foreign: foreignPct });
      } finally {
        await h.lp.stop();
      }
    };

    const latency = async (a: Adapter): Promise<void> => {
      const c = countsFor(a.name);
      await flush();
      const h = await a.startWorker(ctx, 10, envFor('plain'));
      try {
        await a.release(ctx, h);
        await sleep(300);
        const res = await a.client(ctx, { op: 'latency', n: c.latency, warmup: c.latencyWarmup, pad: pads[a.name] ?? 0 }, envFor('plain'));
        record(a.name, 'latency-p50', res.p50!, 'ms');
        record(a.name, 'latency-p95', res.p95!, 'ms');
        record(a.name, 'latency-p99', res.p99!, 'ms');
      } finally {
        await h.lp.stop();
      }
    };

    const rss = async (a: Adapter): Promise<void> => {
      const n = countsFor(a.name).rss;
      await flush();
      await a.fill(ctx, n, envFor('plain'), pads[a.name] ?? 0);
      if (a.kombu) await park(ctx);
      const h = await a.startWorker(ctx, 100, envFor('plain'));
      h.parked = a.kombu;
      try {
        await sleep(500);
        const idle = treeRssBytes(h.pid);
        const samples: number[] = [];
        const t0 = performance.now();
        await a.release(ctx, h);
        let p = { done: 0, failed: 0 };
        let nextSample = 0;
        for (;;) {
          const now = performance.now();
          if (now >= nextSample) {
            samples.push(treeRssBytes(h.pid));
            nextSample = now + 250;
            p = await a.progress(ctx);
            if (p.done + p.failed >= n || now - t0 > rssWindowS * 1000) break;
            if (h.lp.proc.exitCode !== null) throw new Error(`${a.name} worker exited during the RSS run:\n${withoutRoutineLogs(h.lp.output()).slice(-3000)}`);
          }
          await sleep(20);
        }
        const seconds = (performance.now() - t0) / 1000;
        const MiB = 2 ** 20;
        const body = samples.slice(Math.floor(samples.length * 0.1));
        const third = Math.max(1, Math.floor(body.length / 3));
        const firstMax = Math.max(...body.slice(0, third));
        const lastMax = Math.max(...body.slice(-third));
        const growthPct = firstMax > 0 ? ((lastMax - firstMax) / firstMax) * 100 : 0;
        const run: RssRun = {
          system: a.name,
          idleMiB: idle / MiB,
          maxMiB: Math.max(...samples) / MiB,
          lastMiB: samples[samples.length - 1]! / MiB,
          growthPct,
          flat: growthPct <= 10,
          seconds,
          drained: p.done,
          backlog: n,
          samples: samples.map((s) => Math.round((s / MiB) * 10) / 10),
        };
        rssRuns.push(run);
        record(a.name, 'rss-backlog-200k', run.maxMiB, 'MiB');
        if (p.done + p.failed >= n) await a.verify(ctx, n, 1000);
      } finally {
        await h.lp.stop();
      }
    };

    const floorLpush = async (): Promise<void> => {
      await flush();
      const res = await runNodeClient('redis-floor', { op: 'floor-lpush', n: counts.floorLpush, message: envelope }, ctx.env);
      record('redis-floor', 'floor-lpush-pipelined', counts.floorLpush / res.seconds!, 'msgs/s');
      if (res.cpuMs !== undefined) recordDiag('redis-floor', 'floor-lpush-pipelined', { client: (res.cpuMs / counts.floorLpush) * 1000 });
    };
    const floorRtt = async (): Promise<void> => {
      await flush();
      const res = await runNodeClient('redis-floor', { op: 'floor-rtt', n: counts.floorRtt, warmup: 100, message: envelope }, ctx.env);
      record('redis-floor', 'floor-rtt-p50', res.p50!, 'ms');
    };

    /** Wait (up to quietWaitS) until processes outside the benchmark use < 15% of the machine. Returns seconds waited. */
    const quietWaitS = values['quiet-wait'] ? Number(values['quiet-wait']) : 0;
    let waitedS = 0;
    const waitQuiet = async (): Promise<void> => {
      if (quietWaitS <= 0) return;
      const deadline = Date.now() + quietWaitS * 1000;
      const t0 = Date.now();
      for (;;) {
        const m0 = machineBusyMs();
        const s0 = process.cpuUsage();
        const r0 = cpuMs(redis.pid);
        await sleep(500);
        const self = process.cpuUsage(s0);
        const foreign = machineBusyMs() - m0 - (self.user + self.system) / 1000 - (cpuMs(redis.pid) - r0);
        if (foreign / (500 * cpus().length) < 0.15 || Date.now() > deadline) break;
      }
      waitedS += (Date.now() - t0) / 1000;
    };

    // ── run ─────────────────────────────────────────────────────────────
    let i = 0;
    let label = '';
    ticker = tty ? setInterval(() => progress(`${label} · ${fmtDuration(Date.now() - started)} elapsed`), 1000) : undefined;
    ticker?.unref();
    for (const item of plan) {
      i++;
      const skipKey = key(item.system, item.step);
      if (skipKeys.has(skipKey)) continue;
      label = `[${i}/${plan.length}] round ${item.round}/${item.step === 'rss-backlog-200k' ? 1 : rounds} · ${item.step} · ${item.system}`;
      progress(`${label} · ${fmtDuration(Date.now() - started)} elapsed`);
      await waitQuiet();
      const a = adapters.get(item.system as QueueSystem);
      try {
        switch (item.step) {
          case 'enqueue-serial':
            await enqueue(a!, 'serial', item.step);
            break;
          case 'enqueue-100':
            await enqueue(a!, 'inflight', item.step);
            break;
          case 'enqueue-bulk':
            await enqueue(a!, 'bulk', item.step);
            break;
          case 'drain-c1':
            await drain(a!, 1, item.step, 'plain');
            break;
          case 'drain-c10':
            await drain(a!, 10, item.step, 'plain');
            break;
          case 'drain-c100':
            await drain(a!, 100, item.step, 'plain');
            break;
          case 'drain-c100-ed25519':
            await drain(a!, 100, item.step, 'ed25519');
            break;
          case 'drain-c100-rsa':
            await drain(a!, 100, item.step, 'rsa');
            break;
          case 'drain-c100-encrypted':
            await drain(a!, 100, item.step, 'encrypted');
            break;
          case 'latency':
            await latency(a!);
            break;
          case 'rss-backlog-200k':
            await rss(a!);
            break;
          case 'floor-lpush-pipelined':
            await floorLpush();
            break;
          case 'floor-rtt-p50':
            await floorRtt();
            break;
        }
      } catch (err) {
        const msg = err instanceof Error ? err.message : String(err);
        if (err instanceof Unavailable) {
          skipKeys.add(skipKey);
          unavailable.push({ system: item.system, workload: item.step, reason: msg });
          log(`not available: ${item.system} ${item.step}: ${msg}`);
        } else {
          failures.push(`${item.system} ${item.step} (round ${item.round}): ${msg}`);
          log(`FAILED: ${item.system} ${item.step} (round ${item.round}): ${msg.split('\n').slice(0, 12).join('\n')}`);
        }
      }
    }
    if (ticker) clearInterval(ticker);
    if (tty) process.stderr.write('\r\x1b[K');

    // ── extra rows from other benchmarks ───────────────────────────────
    const extraRows: Row[] = [];
    for (const name of (values.with ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
      const producer = EXTRA_PRODUCERS[name];
      const file = join(BENCH_DIR, producer?.file ?? `${name}-throughput.ts`);
      if (!existsSync(file)) {
        notes.push(`--with ${name}: ${relative(ROOT_DIR, file)} is not present.`);
        continue;
      }
      progress(`extra rows · ${name} · ${fmtDuration(Date.now() - started)} elapsed`);
      try {
        const args = producer ? producer.args(smoke, rounds) : ['--json', ...(smoke ? ['--smoke'] : []), '--rounds', String(rounds)];
        const out = await runJson<Record<string, unknown>>(process.execPath, ['--import', 'tsx', file, ...args], {
          cwd: ROOT_DIR,
          env: { ...ctx.env },
          timeoutMs: 900_000,
          what: `${relative(ROOT_DIR, file)} ${args.join(' ')}`,
        });
        extraRows.push(...extraRowsFrom(name, out));
      } catch (err) {
        // Their own services (RabbitMQ, …) may be missing here: a note, not a failure of this harness.
        notes.push(`--with ${name}: no rows (${(err as Error).message.split('\n').slice(0, 3).join(' ')})`);
        log(`--with ${name}: no rows: ${(err as Error).message.split('\n').slice(0, 6).join('\n')}`);
      }
      if (tty) process.stderr.write('\r\x1b[K');
    }

    // ── report ───────────────────────────────────────────────────────────
    const rows: Row[] = [];
    const systemOrder = ['celeriac', 'celeriac-solo', 'bullmq', 'bee-queue', 'celery', 'redis-floor'];
    for (const w of WORKLOADS) {
      for (const s of systemOrder) {
        const v = values_.get(key(s, w));
        if (v && v.length > 0) rows.push(toRow(s, w, v, units.get(key(s, w))!, w.startsWith('latency') || w === 'floor-rtt-p50' ? 4 : 1));
      }
    }
    const diagnostics: Diagnostic[] = [];
    for (const w of WORKLOADS) {
      for (const s of systemOrder) {
        const d = diag.get(key(s, w));
        if (!d) continue;
        const m = (xs: number[]): number | undefined => (xs.length ? median(xs) : undefined);
        diagnostics.push({ system: s, workload: w, workerCpuPer1k: m(d.worker), redisCpuPer1k: m(d.redis), clientCpuPer1k: m(d.client), foreignCpuPct: d.foreign.length ? Math.max(...d.foreign) : undefined });
      }
    }
    const countTable: Record<string, Record<string, number>> = {};
    for (const s of systems) {
      const c = countsFor(s);
      countTable[s] = { 'enqueue tasks': c.enqueue, 'drain tasks': c.drain, 'latency round trips': c.latency, 'RSS backlog': c.rss };
    }
    countTable['redis-floor'] = { 'pipelined LPUSH': counts.floorLpush, 'round trips': counts.floorRtt };
    notes.push(`Bulk enqueue: ${bulkBatch} tasks per call — Celeriac app.sendMany, BullMQ addBulk, bee-queue saveAll, Celery group(...).apply_async() (which publishes one message at a time).`);
    notes.push('Drain: the backlog is written first (untimed); the worker starts, connects and reports ready; the clock runs from its release (kombu layout: RENAME of the parked list back to `celery`; BullMQ: Worker.run(); bee-queue: queue.process()) until the last result is counted (polled every ~2 ms: DBSIZE of the results db, ZCARD completed, SCARD succeeded).');
    notes.push('Latency: worker at concurrency 10 (Celery: threads ×10); each task is sent and awaited to its result before the next; warm-up round trips are not counted.');
    if (wanted.has('drain-c100-rsa')) notes.push(`drain-c100-rsa drains ${Math.max(100, Math.round(counts.drain / 4)).toLocaleString('en-US')} tasks (RSA-2048: the client signs each message twice, Celery's body signature and Celeriac's header, which makes the untimed fill slow); the other security rows drain ${counts.drain.toLocaleString('en-US')} like drain-c100. Signed rows include replay protection (each message's nonce is claimed in Redis).`);
    notes.push('RSS: worker at concurrency 100 (Celery: prefork ×2); the backlog is written first and sampling stops when it is drained or after the RSS window.');
    for (const s of systems) {
      const a = adapters.get(s)!;
      notes.push(`Concurrency for ${s}: c1 → ${a.concurrencyMeaning(1)}; c10 → ${a.concurrencyMeaning(10)}; c100 → ${a.concurrencyMeaning(100)}.`);
    }
    if (quietWaitS > 0) notes.push(`--quiet-wait ${quietWaitS}: waited ${waitedS.toFixed(0)} s in all for other processes to go quiet before steps.`);
    notes.push(`Machine load (1-min average) ${load0.toFixed(2)} at the start and ${loadavg()[0]!.toFixed(2)} at the end of the run, on ${cpus().length} cores (the benchmark itself keeps it near 1–2; see "other load" above for load from outside the measurement).`);
    for (const f of failures) notes.push(`FAILED: ${f.split('\n')[0]}`);

    const info: RunInfo = {
      rows,
      machine,
      date: new Date().toISOString(),
      command: commandLine(),
      rounds,
      durationMs: Date.now() - started,
      counts: countTable,
      unavailable,
      notes,
      diagnostics,
      rss: rssRuns,
      extraRows,
    };

    if (profile && profileDir) {
      if (window) writeFileSync(join(profileDir, 'window.json'), `${JSON.stringify(window)}\n`);
      await sleep(500);
      const files = readdirSync(profileDir).filter((f) => f.endsWith('.cpuprofile'));
      const summaries = withChildrenMerged(summarizeFiles([profileDir], { top: 100 }), 25).map((x) => ({ ...x, top: x.top.slice(0, 25) }));
      const workload = [...wanted][0]!;
      const system = requested[0]!;
      const rate = rows.find((r) => r.system === system && r.workload === workload)?.median;
      const md = [
        `# Profile: ${system} ${workload}`,
        '',
        `- ${info.date}, ${machine.cpu}, ${machine.cores} cores; \`${info.command}\``,
        `- drain rate in this run: ${rate === undefined ? 'not measured (see the errors above)' : `${Math.round(rate).toLocaleString('en-US')} tasks/s`} (profiling slows it down)`,
        `- profiles: ${relative(ROOT_DIR, profileDir)} (${files.length} files: main-<pid> is the worker process (the prefork supervisor), child-<pid> its pool children)`,
        `- only samples inside the drain window are counted (window.json)`,
        '',
        ...summaries.map(renderSummary),
      ].join('\n');
      writeFileSync(join(outDir, 'profile-summary.md'), md);
      process.stdout.write(`${md}\n`);
      process.stderr.write(`profile summary written to ${relative(process.cwd(), join(outDir, 'profile-summary.md'))}\n`);
    } else {
      const json = { rows: [...rows, ...extraRows], machine, date: info.date, command: info.command };
      writeFileSync(join(outDir, 'latest.json'), `${JSON.stringify(json, null, 2)}\n`);
      writeFileSync(join(outDir, 'latest.md'), renderMarkdown(info));
      // A full run into the default place also refreshes the table in bench/README.md.
      if (!smoke && !values.out && !values.systems && !values.workloads && !values.skip && failures.length === 0) {
        const readmePath = join(BENCH_DIR, 'README.md');
        if (existsSync(readmePath)) writeFileSync(readmePath, spliceReadme(readFileSync(readmePath, 'utf8'), renderReadmeBlock(info)));
      }
      const raw = { ...info, values: Object.fromEntries([...values_].map(([k, v]) => [k.replace('\u0000', ' '), v])), pads, envelopeBytes: envelope.length };
      writeFileSync(join(outDir, 'latest-raw.json'), `${JSON.stringify(raw, null, 2)}\n`);
      process.stdout.write(renderMarkdown(info));
      process.stderr.write(`\nwrote ${relative(process.cwd(), join(outDir, 'latest.json'))} and latest.md in ${fmtDuration(Date.now() - started)}\n`);
    }
    if (failures.length > 0) {
      process.stderr.write(`\n${failures.length} measurement(s) failed:\n${failures.map((f) => `- ${f.split('\n').slice(0, 6).join('\n  ')}`).join('\n')}\n`);
      return 1;
    }
    return 0;
  } finally {
    await cleanup();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`\nbench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  },
);

