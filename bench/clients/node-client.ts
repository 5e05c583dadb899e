/**
 * The client side of one measurement, in its own process so that its CPU
 * is never counted in a worker's and no system's heap or JIT state leaks
 * into another's. Usage: node-client.ts <system> '<job JSON>'; prints one
 * JSON line with the result.
 *
 * Systems: celeriac (also fills the queue for Python Celery: same wire
 * format, same task name), bullmq, bee-queue, redis-floor.
 */
import { Redis } from 'ioredis';
import type { SendCall } from '../../dist/index.js';
import { BEE_QUEUE_NAME, BULL_QUEUE, loadBeeQueue, loadBullmq, type BeeJob } from '../lib/anchors.ts';
import { percentile, round, sleep } from '../lib/common.ts';
import { securityHooksActive, type SecurityVariant } from '../lib/security.ts';

export interface ClientJob {
  op: 'enqueue' | 'fill' | 'latency' | 'calibrate' | 'floor-lpush' | 'floor-rtt' | 'sample-envelope';
  /** enqueue: serial (one awaited at a time), inflight (k awaited at once), bulk (batches). */
  mode?: 'serial' | 'inflight' | 'bulk';
  n?: number;
  inflight?: number;
  batch?: number;
  warmup?: number;
  /** Anchors: length of the padding string in each job's data. */
  pad?: number;
  /** Calibration: the record size to match (Celeriac's envelope length). */
  target?: number;
  /** Floor: the message to push. */
  message?: string;
}

export interface ClientResult {
  seconds?: number;
  n?: number;
  cpuMs?: number;
  p50?: number;
  p95?: number;
  p99?: number;
  mean?: number;
  pad?: number;
  overhead?: number;
  envelope?: string;
  securityActive?: boolean;
  error?: string;
}

const port = Number(process.env.BENCH_REDIS_PORT);

interface Sender {
  one(): Promise<void>;
  bulk(count: number): Promise<void>;
  roundTrip(): Promise<void>;
  close(): Promise<void>;
  securityActive?: boolean;
}

async function celeriacSender(needResults: boolean): Promise<Sender> {
  const { app, noop } = await import('../apps/celeriac-app.mjs');
  await app.broker();
  if (needResults) await app.resultStore();
  const variant = (process.env.BENCH_SECURITY ?? 'plain') as SecurityVariant;
  return {
    securityActive: securityHooksActive(app.security, variant),
    one: async () => {
      await noop.delay();
    },
    bulk: async (count) => {
      const calls: SendCall[] = new Array(count);
      for (let i = 0; i < count; i++) calls[i] = { name: 'bench.noop' };
      await app.sendMany(calls);
    },
    roundTrip: async () => {
      const r = await noop.delay();
      await r.get({ timeoutMs: 30_000 });
    },
    close: () => app.close(),
  };
}

async function bullmqSender(pad: number, needEvents: boolean): Promise<Sender> {
  const { Queue, QueueEvents } = await loadBullmq();
  const connection = { host: '127.0.0.1', port, maxRetriesPerRequest: null };
  const queue = new Queue(BULL_QUEUE, { connection });
  await queue.waitUntilReady();
  const events = needEvents ? new QueueEvents(BULL_QUEUE, { connection }) : undefined;
  if (events) await events.waitUntilReady();
  const data = { pad: 'x'.repeat(pad) };
  return {
    one: async () => {
      await queue.add('noop', data);
    },
    bulk: async (count) => {
      await queue.addBulk(Array.from({ length: count }, () => ({ name: 'noop', data })));
    },
    roundTrip: async () => {
      const job = await queue.add('noop', data);
      await job.waitUntilFinished(events!, 30_000);
    },
    close: async () => {
      await events?.close();
      await queue.close();
    },
  };
}

async function beeSender(pad: number, needEvents: boolean): Promise<Sender> {
  const Queue = await loadBeeQueue();
  // A producer: no worker role. Results are awaited through the queue-level
  // 'job succeeded' event: bee-queue's per-job events are looked up in a map
  // filled when save() resolves, so a worker faster than the save reply
  // makes a per-job listener miss its event and wait forever.
  const queue = new Queue(BEE_QUEUE_NAME, {
    redis: { host: '127.0.0.1', port },
    isWorker: false,
    getEvents: needEvents,
    sendEvents: false,
    storeJobs: false,
  });
  queue.on('error', () => undefined);
  const waiting = new Map<string, () => void>();
  const early = new Set<string>();
  queue.on('job succeeded', (id) => {
    const w = waiting.get(id as string);
    if (w) {
      waiting.delete(id as string);
      w();
    } else early.add(id as string);
  });
  await queue.ready();
  const data = { pad: 'x'.repeat(pad) };
  return {
    one: async () => {
      await queue.createJob(data).save();
    },
    bulk: async (count) => {
      const jobs: BeeJob[] = Array.from({ length: count }, () => queue.createJob(data));
      const errors = await queue.saveAll(jobs);
      if (errors.size > 0) throw new Error(`saveAll: ${errors.size} jobs failed`);
    },
    roundTrip: async () => {
      const job = await queue.createJob(data).save();
      if (early.delete(job.id)) return;
      await new Promise<void>((resolve) => waiting.set(job.id, resolve));
    },
    close: () => queue.close(5000),
  };
}

async function makeSender(system: string, job: ClientJob, needResults: boolean): Promise<Sender> {
  switch (system) {
    case 'celeriac':
    case 'celeriac-solo':
      return celeriacSender(needResults);
    case 'bullmq':
      return bullmqSender(job.pad ?? 0, needResults);
    case 'bee-queue':
      return beeSender(job.pad ?? 0, needResults);
    default:
      throw new Error(`no client for ${system}`);
  }
}

async function runMode(sender: Sender, mode: ClientJob['mode'], n: number, inflight: number, batch: number): Promise<void> {
  if (mode === 'serial') {
    for (let i = 0; i < n; i++) await sender.one();
  } else if (mode === 'inflight') {
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < n) {
        next++;
        await sender.one();
      }
    };
    await Promise.all(Array.from({ length: Math.min(inflight, n) }, lane));
  } else {
    for (let done = 0; done < n; done += batch) await sender.bulk(Math.min(batch, n - done));
  }
}

async function enqueue(system: string, job: ClientJob): Promise<ClientResult> {
  const sender = await makeSender(system, job, false);
  const n = job.n ?? 1000;
  const inflight = job.inflight ?? 100;
  const batch = job.batch ?? 1000;
  if (job.warmup) await runMode(sender, job.mode, job.warmup, inflight, batch);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await runMode(sender, job.mode, n, inflight, batch);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  await sender.close();
  return { seconds, n, cpuMs: (cpu.user + cpu.system) / 1000, securityActive: sender.securityActive };
}

async function fill(system: string, job: ClientJob): Promise<ClientResult> {
  const sender = await makeSender(system, job, false);
  const t0 = performance.now();
  await runMode(sender, 'bulk', job.n ?? 1000, 0, job.batch ?? 1000);
  const seconds = (performance.now() - t0) / 1000;
  await sender.close();
  return { seconds, n: job.n, securityActive: sender.securityActive };
}

async function latency(system: string, job: ClientJob): Promise<ClientResult> {
  const sender = await makeSender(system, job, true);
  const roundTrip = async (i: number): Promise<void> => {
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`round trip ${i} got no result within 30 s`)), 30_000);
    });
    try {
      await Promise.race([sender.roundTrip(), limit]);
    } finally {
      clearTimeout(timer);
    }
  };
  for (let i = 0; i < (job.warmup ?? 0); i++) await roundTrip(i);
  const n = job.n ?? 1000;
  const samples: number[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await roundTrip(i);
    samples[i] = performance.now() - t0;
  }
  await sender.close();
  return {
    n,
    p50: round(percentile(samples, 50), 4),
    p95: round(percentile(samples, 95), 4),
    p99: round(percentile(samples, 99), 4),
    mean: round(samples.reduce((a, b) => a + b, 0) / n, 4),
  };
}

/** Anchors: how long the padding must be so that one stored job record is as long as Celeriac's message. */
async function calibrate(system: string, job: ClientJob): Promise<ClientResult> {
  const target = job.target ?? 0;
  const r = new Redis({ host: '127.0.0.1', port, lazyConnect: false });
  try {
    let overhead = 0;
    if (system === 'bullmq') {
      const { Queue } = await loadBullmq();
      const q = new Queue('bench-probe', { connection: { host: '127.0.0.1', port, maxRetriesPerRequest: null } });
      const added = await q.add('noop', { pad: '' });
      const h = await r.hgetall(`bull:bench-probe:${added.id}`);
      for (const [k, v] of Object.entries(h)) overhead += k.length + v.length;
      await q.close();
    } else if (system === 'bee-queue') {
      const Queue = await loadBeeQueue();
      const q = new Queue('bench-probe', { redis: { host: '127.0.0.1', port }, isWorker: false, getEvents: false, sendEvents: false, storeJobs: false });
      await q.ready();
      const saved = await q.createJob({ pad: '' }).save();
      overhead = (await r.hget(`bq:bench-probe:jobs`, saved.id))?.length ?? 0;
      await q.close(1000);
    }
    const keys = await r.keys('*bench-probe*');
    if (keys.length) await r.del(...keys);
    return { overhead, pad: Math.max(0, target - overhead) };
  } finally {
    r.disconnect();
  }
}

/** One ordinary Celeriac task message as it sits in the queue list. */
async function sampleEnvelope(): Promise<ClientResult> {
  const { app, noop } = await import('../apps/celeriac-app.mjs');
  const r = new Redis({ host: '127.0.0.1', port, lazyConnect: false });
  await noop.applyAsync([], {}, { queue: 'bench-sample' });
  const envelope = (await r.lindex('bench-sample', 0)) ?? '';
  await r.del('bench-sample');
  r.disconnect();
  await app.close();
  return { envelope };
}

async function floorLpush(job: ClientJob): Promise<ClientResult> {
  const r = new Redis({ host: '127.0.0.1', port, lazyConnect: false, enableAutoPipelining: false });
  const msg = job.message ?? 'x'.repeat(860);
  const push = async (n: number): Promise<void> => {
    const p = r.pipeline();
    for (let i = 0; i < n; i++) p.lpush('floor', msg);
    await p.exec();
  };
  await push(1000);
  await r.del('floor');
  const n = job.n ?? 20_000;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await push(n);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const len = await r.llen('floor');
  r.disconnect();
  if (len !== n) throw new Error(`floor list holds ${len}, expected ${n}`);
  return { seconds, n, cpuMs: (cpu.user + cpu.system) / 1000 };
}

async function floorRtt(job: ClientJob): Promise<ClientResult> {
  const producer = new Redis({ host: '127.0.0.1', port, lazyConnect: false, enableAutoPipelining: false });
  const consumer = new Redis({ host: '127.0.0.1', port, lazyConnect: false, enableAutoPipelining: false });
  await Promise.all([producer.ping(), consumer.ping()]);
  const msg = job.message ?? 'x'.repeat(860);
  const once = async (): Promise<number> => {
    const popped = consumer.brpop('floor-rtt', 0);
    await sleep(0);
    const t0 = performance.now();
    await producer.lpush('floor-rtt', msg);
    await popped;
    return performance.now() - t0;
  };
  for (let i = 0; i < (job.warmup ?? 0); i++) await once();
  const n = job.n ?? 2000;
  const samples: number[] = [];
  for (let i = 0; i < n; i++) samples.push(await once());
  producer.disconnect();
  consumer.disconnect();
  return { n, p50: round(percentile(samples, 50), 4), p95: round(percentile(samples, 95), 4), p99: round(percentile(samples, 99), 4) };
}

async function main(): Promise<void> {
  const system = process.argv[2] ?? '';
  const job = JSON.parse(process.argv[3] ?? '{}') as ClientJob;
  let result: ClientResult;
  switch (job.op) {
    case 'enqueue':
      result = await enqueue(system, job);
      break;
    case 'fill':
      result = await fill(system, job);
      break;
    case 'latency':
      result = await latency(system, job);
      break;
    case 'calibrate':
      result = await calibrate(system, job);
      break;
    case 'sample-envelope':
      result = await sampleEnvelope();
      break;
    case 'floor-lpush':
      result = await floorLpush(job);
      break;
    case 'floor-rtt':
      result = await floorRtt(job);
      break;
    default:
      throw new Error(`unknown op ${String(job.op)}`);
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stdout.write(`${JSON.stringify({ error: err instanceof Error ? err.stack ?? err.message : String(err) })}\n`);
    process.exit(1);
  },
);
