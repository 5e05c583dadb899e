/**
 * The cost of Redis Sentinel and of its safe mode (issue 22), side by side
 * with plain Redis, on one group started here (one primary, one replica,
 * three sentinels on loopback; test/helpers/redis-sentinel.ts):
 *
 *     node --import tsx bench/sentinel-throughput.ts [--tasks 20000] [--json]
 *
 * Modes, on the same primary:
 * - `redis`: `redis://` straight to the primary (the baseline);
 * - `sentinel`: `sentinel://…` with `master_name` (the primary found through the sentinels);
 * - `sentinel+wait`: the same with `waitForReplicas: 1` (every send and store waits for the replica).
 *
 * Rows: sends (`publish`, 100 in flight, and one at a time: the latency
 * of WAIT shows there) and result stores (100 in flight),
 * tasks/s (median of `--rounds`, default 3, after a warm-up round), and the ratio to the baseline. In-process adapters only (no
 * worker), so the numbers are the transport's.
 */
import { parseArgs } from 'node:util';
import { createRedisBroker } from '../src/transport/redis/broker.ts';
import { createRedisBackend } from '../src/transport/redis/backend.ts';
import { JSON_SERIALIZER } from '../src/codec/serializers.ts';
import { resolveSettings } from '../src/config/options.ts';
import { createLogger } from '../src/observability/logging.ts';
import { buildTaskMessage } from '../src/protocol/task-message.ts';
import { startSentinelGroup } from '../test/helpers/redis-sentinel.ts';

const { values } = parseArgs({ options: { tasks: { type: 'string', default: '20000' }, rounds: { type: 'string', default: '3' }, json: { type: 'boolean', default: false } } });
const N = Number(values.tasks);
const ROUNDS = Number(values.rounds);
const IN_FLIGHT = 100;
const logger = createLogger({ level: 'warn' });

async function inFlight(n: number, op: (i: number) => Promise<unknown>, width = IN_FLIGHT): Promise<number> {
  let next = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < n) await op(next++);
  }));
  return n / (Number(process.hrtime.bigint() - t0) / 1e9);
}

const group = await startSentinelGroup();
const samples: Record<string, { send: number[]; serial: number[]; store: number[] }> = {};
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
try {
  const primary = await group.primaryPort();
  const modes: Record<string, { url: (db: number) => string; wait: number }> = {
    redis: { url: (db) => `redis://${group.user}:${encodeURIComponent(group.password)}@127.0.0.1:${primary}/${db}`, wait: 0 },
    sentinel: { url: (db) => group.url(db), wait: 0 },
    'sentinel+wait': { url: (db) => group.url(db), wait: 1 },
  };
  // Modes in turns within each round (a warm-up round first, not counted), medians reported.
  for (let round = 0; round <= ROUNDS; round++) for (const [name, m] of Object.entries(modes)) {
    const ha = { masterName: group.masterName, sentinelKwargs: { password: group.sentinelPassword }, waitForReplicas: m.wait };
    const settings = resolveSettings({ brokerTransportOptions: ha, resultBackendTransportOptions: ha });
    const broker = createRedisBroker({ url: m.url(0), settings, logger });
    const backend = createRedisBackend({ url: m.url(1), settings, logger });
    await broker.connect();
    await backend.connect();
    const queue = `bench-${name}`;
    const msg = buildTaskMessage({ task: 'bench.noop', id: 'x', args: [1], kwargs: {} }, JSON_SERIALIZER);
    const payload = Buffer.from(JSON.stringify({ status: 'SUCCESS', result: 1 }));
    const send = await inFlight(N, () => broker.publish(queue, msg));
    const serial = await inFlight(Math.ceil(N / 10), () => broker.publish(queue, msg), 1);
    const store = await inFlight(N, (i) => backend.store([{ taskId: `${name}-${i}`, state: 'SUCCESS', payload }], { expiresSeconds: 600 }));
    if (round > 0) {
      const r = (samples[name] ??= { send: [], serial: [], store: [] });
      r.send.push(send);
      r.serial.push(serial);
      r.store.push(store);
    }
    await broker.purge(queue);
    await broker.close();
    await backend.close();
  }
} finally {
  await group.stop();
}
const rows = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, { send: median(v.send), serial: median(v.serial), store: median(v.store) }]));
const base = rows.redis!;
const fmt = (x: number): string => Math.round(x).toLocaleString('en-US');
console.log(`sentinel-throughput: ${N} tasks, ${IN_FLIGHT} in flight, median of ${ROUNDS} rounds, one primary + one replica + three sentinels on loopback`);
console.log('| mode | sends/s (100 in flight) | × redis | sends/s (one at a time) | × redis | result stores/s (100 in flight) | × redis |');
console.log('| --- | --- | --- | --- | --- | --- | --- |');
for (const [name, r] of Object.entries(rows)) {
  console.log(`| ${name} | ${fmt(r.send)} | ×${(r.send / base.send).toFixed(2)} | ${fmt(r.serial)} | ×${(r.serial / base.serial).toFixed(2)} | ${fmt(r.store)} | ×${(r.store / base.store).toFixed(2)} |`);
}
if (values.json) console.log(JSON.stringify(rows));
