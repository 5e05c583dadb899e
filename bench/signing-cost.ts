/**
 * What message signing and result encryption cost a worker, on one private
 * Redis, in one run:
 *
 *   node --import tsx bench/signing-cost.ts [--tasks 20000] [--rounds 3] [--concurrency 100] [--json]
 *
 * Drain workload: the queue is filled first (untimed, by a client with the
 * same settings), then one in-process worker (solo pool, `--concurrency`
 * tasks at once, results stored in Redis) drains it; throughput is tasks per
 * second from worker start to the last task done. Variants, interleaved in
 * every round so drift hits them alike, median of the rounds:
 *
 * | variant | client settings | worker settings |
 * | --- | --- | --- |
 * | none | — | — |
 * | ed25519 | `securitySigningKeys` (private line) | `securityVerifyKeys` (public line) |
 * | hmac | `securitySigningKeys` (hmac-sha256) | the same ring |
 * | rsa | `taskSerializer: 'auth'`, `securityKey`, `securityCertificate`, `securityCertStore` | the same (`acceptContent: ['auth']`) |
 * | encrypted | `resultEncryptionKeys` | `resultEncryptionKeys` |
 * | ed25519+enc | both | both |
 *
 * Signing variants include the replay guard (one claim and one settle per
 * message in Redis, batched per event-loop turn).
 *
 * Besides wall-clock tasks/s, each drain records the CPU time per task of
 * the worker process and of redis-server (from /proc). On a machine shared
 * with other work, wall-clock ratios swing by tens of percent between
 * rounds; CPU per task does not, and `CPU ratio` = unsigned CPU / variant
 * CPU is the throughput ratio a CPU-bound deployment would see.
 *
 * Then micro-measurements say where the time goes: per-message build+sign
 * (client), verify+decode (worker), replay claim+settle, result seal/open.
 */
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createApp, type App, type AppOptions } from '../src/client/app.ts';
import { generateResultKey } from '../src/codec/encryption.ts';
import { generateSigningKey } from '../src/codec/signing/index.ts';
import { createLogger } from '../src/observability/logging.ts';
import { buildResultMeta } from '../src/protocol/result-meta.ts';
import { parseTaskMessage } from '../src/protocol/task-message.ts';
import { createSelfSignedCertificate } from '../src/secrets/x509.ts';
import type { ConfiguredMessageSecurity } from '../src/security/message-security.ts';
import { createWorker } from '../src/worker/worker.ts';
import { startRedisServer, type RedisServer } from '../test/helpers/redis-server.ts';

const { values } = parseArgs({
  options: {
    tasks: { type: 'string', default: '20000' },
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '100' },
    json: { type: 'boolean', default: false },
  },
});
const TASKS = Number(values.tasks);
const ROUNDS = Number(values.rounds);
const CONCURRENCY = Number(values.concurrency);
const logger = createLogger({ level: 'error' });

interface Variant {
  name: string;
  client: AppOptions;
  worker: AppOptions;
}

async function variants(dir: string): Promise<Variant[]> {
  const ed = generateSigningKey('ed25519', 'bench-ed');
  const hmac = generateSigningKey('hmac-sha256', 'bench-hmac');
  const res = generateResultKey('bench-res');
  const cert = await createSelfSignedCertificate({ subject: [['O', 'Celeriac bench'], ['CN', 'bench-signer']], rsaBits: 2048, validityDays: 1 });
  const keyPath = join(dir, 'key.pem');
  const certPath = join(dir, 'cert.pem');
  const store = join(dir, 'store');
  writeFileSync(keyPath, cert.keyPem, { mode: 0o600 });
  writeFileSync(certPath, cert.certPem);
  mkdirSync(store);
  writeFileSync(join(store, 'bench.pem'), cert.certPem);
  const rsa: AppOptions = { taskSerializer: 'auth', acceptContent: ['auth'], securityKey: keyPath, securityCertificate: certPath, securityCertStore: store, securityDigest: 'sha256' };
  return [
    { name: 'none', client: {}, worker: {} },
    { name: 'ed25519', client: { securitySigningKeys: ed.signingLine }, worker: { securityVerifyKeys: ed.verifyingLine } },
    { name: 'hmac', client: { securitySigningKeys: hmac.signingLine }, worker: { securitySigningKeys: hmac.signingLine } },
    { name: 'rsa', client: rsa, worker: rsa },
    { name: 'encrypted', client: { resultEncryptionKeys: res }, worker: { resultEncryptionKeys: res } },
    { name: 'ed25519+enc', client: { securitySigningKeys: ed.signingLine, resultEncryptionKeys: res }, worker: { securityVerifyKeys: ed.verifyingLine, resultEncryptionKeys: res } },
  ];
}

function mkApp(redis: RedisServer, options: AppOptions): App {
  const app = createApp({ brokerUrl: redis.url(0), resultBackend: redis.url(1), logger, env: { CELERIAC_ENV: 'development' }, ...options }); // loopback Redis without a password: development, asked for
  app.task('bench.noop', (i: number) => i);
  return app;
}

async function fill(redis: RedisServer, v: Variant): Promise<void> {
  const client = mkApp(redis, v.client);
  for (let i = 0; i < TASKS; i += 500) {
    await client.sendMany(Array.from({ length: Math.min(500, TASKS - i) }, (_, j) => ({ name: 'bench.noop', args: [i + j] })));
  }
  await client.close();
}

/** CPU time (user + system) of a process, µs, from /proc (Linux). */
function procCpuUs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return (ticks * 1_000_000) / 100; // USER_HZ is 100 on Linux
  } catch {
    return Number.NaN;
  }
}

interface DrainResult {
  /** Tasks per second, wall clock. */
  tps: number;
  /** CPU µs per task of the worker process. */
  workerCpuUs: number;
  /** CPU µs per task of redis-server. */
  redisCpuUs: number;
}

/** One drain: wall-clock throughput and CPU per task (the CPU figures hold up on a busy, shared machine; wall clock does not). */
async function drain(redis: RedisServer, v: Variant): Promise<DrainResult> {
  await redis.client(0).flushall();
  await fill(redis, v);
  const app = mkApp(redis, v.worker);
  await app.broker();
  await app.resultStore();
  const worker = createWorker({ app, pool: 'solo', concurrency: CONCURRENCY, prefetchMultiplier: 2, shutdownTimeoutMs: 10_000 });
  const cpu0 = process.cpuUsage();
  const redis0 = procCpuUs(redis.pid);
  const t0 = performance.now();
  await worker.start();
  while (worker.stats().succeeded < TASKS) {
    const s = worker.stats();
    if (s.failed + s.rejected > 0) throw new Error(`variant ${v.name}: ${s.failed} failed, ${s.rejected} rejected`);
    await new Promise((r) => setTimeout(r, 2));
  }
  const took = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const redisCpu = procCpuUs(redis.pid) - redis0;
  await worker.stop();
  await app.close();
  return { tps: TASKS / (took / 1000), workerCpuUs: (cpu.user + cpu.system) / TASKS, redisCpuUs: redisCpu / TASKS };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** µs per call of `fn`, over `n` calls. */
async function perCall(n: number, fn: (i: number) => unknown, warmup = 200): Promise<number> {
  for (let i = 0; i < Math.min(warmup, n); i++) await fn(i);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await fn(i);
  return ((performance.now() - t0) * 1000) / n;
}

async function micro(redis: RedisServer, list: Variant[]): Promise<Record<string, Record<string, number>>> {
  const out: Record<string, Record<string, number>> = {};
  const N = 2000;
  for (const v of list) {
    const client = mkApp(redis, v.client);
    const worker = mkApp(redis, v.worker);
    const input = (i: number) => ({ task: 'bench.noop', id: `m-${v.name}-${i}-${Math.random()}`, args: [i], kwargs: {} });
    const row: Record<string, number> = {};
    row.buildAndSign = await perCall(N, (i) => client.buildMessage(input(i)));
    const msgs = Array.from({ length: N }, (_, i) => client.buildMessage(input(i)));
    row.verifyAndDecode = await perCall(N, (i) => parseTaskMessage(msgs[i % N]!, worker.decodeBody));
    const sec = worker.security as ConfiguredMessageSecurity;
    if (sec.admit) {
      // Fresh messages so every claim succeeds; settle afterwards (the worker does both per message).
      const fresh = Array.from({ length: N }, (_, i) => client.buildMessage(input(i)));
      const reqs = fresh.map((m) => parseTaskMessage(m, worker.decodeBody));
      // No warm-up: every message may be claimed once only.
      row.replayClaimAndSettle = await perCall(
        N,
        async (i) => {
          const m = fresh[i]!;
          await sec.admit!(m, reqs[i]!, { redelivered: false, deliveryTag: `t${i}` });
          sec.settled!(m);
        },
        0,
      );
    }
    const store = await worker.resultStore();
    if (store) {
      const meta = buildResultMeta({ taskId: 'bench-result-1', status: 'SUCCESS', result: { value: 42, list: [1, 2, 3] } });
      row.resultEncode = await perCall(N, () => store.encode(meta));
      const payload = store.encode(meta).payload;
      row.resultDecode = await perCall(N, () => store.decode(payload, 'bench-result-1'));
    }
    out[v.name] = row;
    await client.close();
    await worker.close();
  }
  return out;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-signing-cost-'));
  const redis = await startRedisServer();
  try {
    const list = await variants(dir);
    const results: Record<string, DrainResult[]> = Object.fromEntries(list.map((v) => [v.name, []]));
    for (let round = 0; round < ROUNDS; round++) {
      // Rotate the order each round so no variant always runs first (cold) or last.
      const order = list.map((_, i) => list[(i + round) % list.length]!);
      for (const v of order) {
        const r = await drain(redis, v);
        results[v.name]!.push(r);
        if (!values.json) process.stderr.write(`round ${round + 1} ${v.name.padEnd(12)} ${r.tps.toFixed(0)} tasks/s, worker ${r.workerCpuUs.toFixed(1)} µs/task, redis ${r.redisCpuUs.toFixed(1)} µs/task\n`);
      }
    }
    const med = (name: string, f: (r: DrainResult) => number): number => median(results[name]!.map(f));
    const base = med('none', (r) => r.tps);
    const baseCpu = med('none', (r) => r.workerCpuUs + r.redisCpuUs);
    const summary = list.map((v) => {
      const m = med(v.name, (r) => r.tps);
      const worker = med(v.name, (r) => r.workerCpuUs);
      const redisCpu = med(v.name, (r) => r.redisCpuUs);
      const cpu = med(v.name, (r) => r.workerCpuUs + r.redisCpuUs);
      return {
        variant: v.name,
        tasksPerSecond: Math.round(m),
        ratio: Number((m / base).toFixed(3)),
        lossPercent: Number(((1 - m / base) * 100).toFixed(1)),
        workerCpuUsPerTask: Number(worker.toFixed(1)),
        redisCpuUsPerTask: Number(redisCpu.toFixed(1)),
        // Throughput ratio when CPU-bound (worker + Redis on the same cores): base CPU / variant CPU.
        cpuRatio: Number((baseCpu / cpu).toFixed(3)),
        runs: results[v.name]!.map((x) => Math.round(x.tps)),
      };
    });
    const costs = await micro(redis, list);
    if (values.json) {
      console.log(JSON.stringify({ tasks: TASKS, rounds: ROUNDS, concurrency: CONCURRENCY, summary, microsecondsPerMessage: costs }, null, 2));
      return;
    }
    console.log(`\ndrain of ${TASKS} tasks, solo worker with concurrency ${CONCURRENCY}, results in Redis; median of ${ROUNDS} rounds`);
    console.log('variant       tasks/s   ratio   loss | worker µs/task  redis µs/task  CPU ratio  CPU loss');
    for (const s of summary) {
      console.log(
        `${s.variant.padEnd(12)} ${String(s.tasksPerSecond).padStart(8)}   ${s.ratio.toFixed(3)} ${`${s.lossPercent.toFixed(1)}%`.padStart(6)} | ${s.workerCpuUsPerTask.toFixed(1).padStart(14)} ${s.redisCpuUsPerTask.toFixed(1).padStart(14)} ${s.cpuRatio.toFixed(3).padStart(10)} ${`${((1 - s.cpuRatio) * 100).toFixed(1)}%`.padStart(9)}`,
      );
    }
    console.log('\nµs per message (single-threaded, one at a time)');
    const cols = ['buildAndSign', 'verifyAndDecode', 'replayClaimAndSettle', 'resultEncode', 'resultDecode'];
    console.log(`variant      ${cols.map((c) => c.padStart(21)).join('')}`);
    for (const [name, row] of Object.entries(costs)) {
      console.log(`${name.padEnd(12)} ${cols.map((c) => (row[c] === undefined ? '-' : row[c]!.toFixed(1)).padStart(21)).join('')}`);
    }
    console.log('\n(replayClaimAndSettle is sequential round trips to Redis; the worker overlaps them across its concurrency.)');
  } finally {
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
