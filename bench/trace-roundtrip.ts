/**
 * Where does one Celeriac round trip's time go? Starts a private Redis and a
 * Celeriac worker (concurrency 10, as in the latency workload), sends
 * warm-up round trips, then traces a few more with Redis MONITOR: every
 * command on the way (client publish, worker reserve, result store and
 * publish, ack, client subscribe/get) with its time since the send.
 *
 *   node --import tsx bench/trace-roundtrip.ts [--pool prefork|solo] [--traced 3]
 *
 * MONITOR slows Redis a little; read the gaps between commands, not the total.
 */
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { ROOT_DIR, sleep, spawnLines, killLiveProcesses } from './lib/common.ts';
import { startRedis } from './lib/redis-server.ts';

const { values } = parseArgs({ options: { pool: { type: 'string' }, traced: { type: 'string' }, warmup: { type: 'string' } } });
const pool = values.pool === 'solo' ? 'solo' : 'prefork';
const traced = Number(values.traced ?? 3);
const redis = await startRedis();
const env = {
  ...(process.env as Record<string, string>),
  BENCH_REDIS_PORT: String(redis.port),
  BENCH_BROKER_URL: redis.url(0),
  BENCH_BACKEND_URL: redis.url(1),
  CELERIAC_LOG_LEVEL: 'warn',
  // Private loopback services without passwords: development mode, asked for (production is the default, src/config/mode.ts).
  CELERIAC_ENV: 'development',
};
Object.assign(process.env, env);
const worker = spawnLines(process.execPath, [new URL('./workers/celeriac-worker.mjs', import.meta.url).pathname, '10', pool], { cwd: ROOT_DIR, env });
try {
  await worker.waitForLine(/^READY /, 60_000, 'celeriac worker');
  const { app, noop } = await import('./apps/celeriac-app.mjs');
  const roundTrip = async (): Promise<void> => {
    await (await noop.delay()).get({ timeoutMs: 10_000 });
  };
  for (let i = 0; i < Number(values.warmup ?? 200); i++) await roundTrip();

  const names = new Map<string, string>();
  const admin = new Redis({ host: '127.0.0.1', port: redis.port });
  for (const line of (await admin.client('LIST') as string).split('\n')) {
    const addr = /addr=(\S+)/.exec(line)?.[1];
    const name = /name=(\S*)/.exec(line)?.[1];
    if (addr) names.set(addr, name || '?');
  }
  const mon = await admin.monitor();
  const events: Array<{ t: number; addr: string; cmd: string }> = [];
  mon.on('monitor', (time: string, args: string[], source: string) => {
    events.push({ t: Number(time) * 1000, addr: source.replace(/^\d+ /, ''), cmd: args.map((a) => (a.length > 40 ? `${a.slice(0, 37)}…` : a)).slice(0, 6).join(' ') });
  });
  await sleep(100);
  const totals: number[] = [];
  const marks: number[] = [];
  for (let i = 0; i < traced; i++) {
    await sleep(50);
    marks.push(events.length);
    const t0 = performance.now();
    await roundTrip();
    totals.push(performance.now() - t0);
  }
  await sleep(100);
  mon.disconnect();
  admin.disconnect();
  for (let i = 0; i < traced; i++) {
    const slice = events.slice(marks[i], marks[i + 1] ?? events.length);
    const first = slice.find((e) => e.cmd.startsWith('lpush') || e.cmd.startsWith('evalsha'))?.t ?? slice[0]?.t ?? 0;
    process.stdout.write(`\nround trip ${i + 1}: ${totals[i]!.toFixed(3)} ms measured by the client\n`);
    for (const e of slice) process.stdout.write(`  +${(e.t - first).toFixed(3).padStart(8)} ms  ${(names.get(e.addr) ?? e.addr).padEnd(26)} ${e.cmd}\n`);
  }
  await app.close();
} finally {
  await worker.stop(5000);
  killLiveProcesses();
  await redis.stop();
}
process.exit(0);
