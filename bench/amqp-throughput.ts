/**
 * Celeriac's RabbitMQ adapter against raw amqplib on the same broker:
 * send (persistent messages, publisher confirms streamed) and drain
 * (consume at prefetch 100, ack each), with the same Celery task message
 * (headers, properties, body) in both rows.
 *
 *     node --import tsx bench/amqp-throughput.ts [--messages 20000] [--runs 3] [--url amqp://user:pw@host:5672/vhost] [--json]
 *
 * Without --url (or CELERIAC_BENCH_AMQP_URL) it creates a throwaway vhost
 * and user with a random password on the local RabbitMQ (rabbitmqctl) and
 * deletes them afterwards.
 *
 * Rows:
 * - `amqp-floor`: amqplib alone — a confirm channel, `publish` with a
 *   callback per message (confirms streamed, back-pressure honoured), then
 *   `consume` with `prefetch(100)` and `ack` per message;
 * - `celeriac-amqp`: `broker.publishMany` of the same prebuilt messages (one
 *   call for all of them) and `broker.consume({ prefetch: 100 })` acking each
 *   delivery — the adapter alone, as the client and worker use it;
 * - `celeriac-amqp (sendMany)`: for information, `app.sendMany` in batches of
 *   1,000, which also builds every message (ids, reprs, JSON body).
 *
 * Each figure is the median of `--runs` runs, rows interleaved so that drift
 * of the machine hits both alike. The last lines show where the adapter's
 * own CPU time goes (encoding properties, decoding deliveries), measured
 * without the broker.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { createApp } from '../src/client/app.ts';
import { publishOptions, wireMessageFrom } from '../src/transport/amqp/codec.ts';
import { createAmqpBroker } from '../src/transport/amqp/broker.ts';
import { JSON_SERIALIZER } from '../src/codec/serializers.ts';
import { resolveSettings } from '../src/config/options.ts';
import { createLogger } from '../src/observability/logging.ts';
import { newId } from '../src/protocol/ids.ts';
import { buildTaskMessage } from '../src/protocol/task-message.ts';
import type { WireMessage } from '../src/protocol/types.ts';
// After Celeriac's modules, so that amqplib loads with Celeriac's header-depth guard in both rows alike.
import { connect, type ChannelModel, type ConfirmChannel, type Options } from 'amqplib';

const { values: args } = parseArgs({
  options: {
    messages: { type: 'string', default: '20000' },
    runs: { type: 'string', default: '3' },
    url: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});
const N = Number(args.messages);
const RUNS = Math.max(1, Number(args.runs));
const quiet = createLogger({ level: 'error' });

/** A vhost and user for the run, removed afterwards (never guest). */
function throwawayVhost(): { url: string; cleanup(): void } {
  const tag = randomBytes(4).toString('hex');
  const vhost = `celeriac-bench-${tag}`;
  const user = `celeriac-bench-${tag}`;
  const password = randomBytes(24).toString('base64url');
  const ctl = (a: string[], input?: string): void => {
    execFileSync('rabbitmqctl', a, { input, stdio: ['pipe', 'ignore', 'inherit'] });
  };
  ctl(['add_vhost', vhost]);
  ctl(['add_user', user], password);
  ctl(['set_permissions', '-p', vhost, user, '.*', '.*', '.*']);
  return {
    url: `amqp://${user}:${password}@127.0.0.1:5672/${vhost}`,
    cleanup: () => {
      try {
        ctl(['delete_user', user]);
        ctl(['delete_vhost', vhost]);
      } catch {
        // best effort
      }
    },
  };
}

function messages(n: number): WireMessage[] {
  return Array.from({ length: n }, (_, i) => buildTaskMessage({ task: 'tasks.add', id: newId(), args: [i, i], kwargs: {} }, JSON_SERIALIZER));
}

/** The same headers and properties amqplib would get from a careful raw user (plain values, amqplib's own typing). */
function rawOptions(m: WireMessage): Options.Publish {
  return {
    contentType: m.contentType,
    contentEncoding: m.contentEncoding,
    headers: m.headers,
    deliveryMode: 2,
    priority: 0,
    correlationId: m.properties.correlation_id,
  };
}

async function freshQueue(model: ChannelModel, queue: string): Promise<void> {
  const ch = await model.createChannel();
  await ch.assertExchange(queue, 'direct', { durable: true });
  await ch.assertQueue(queue, { durable: true });
  await ch.bindQueue(queue, queue, queue);
  await ch.purgeQueue(queue);
  await ch.close();
}

async function floorSend(model: ChannelModel, queue: string, msgs: WireMessage[]): Promise<number> {
  const ch: ConfirmChannel = await model.createConfirmChannel();
  const opts = msgs.map(rawOptions);
  const t0 = performance.now();
  const confirms: Promise<void>[] = [];
  for (let i = 0; i < msgs.length; i++) {
    let ok = true;
    confirms.push(
      new Promise<void>((resolve, reject) => {
        ok = ch.publish('', queue, msgs[i]!.body, opts[i], (err) => (err ? reject(err) : resolve()));
      }),
    );
    if (!ok) await new Promise((r) => ch.once('drain', r));
  }
  await Promise.all(confirms);
  const rate = msgs.length / ((performance.now() - t0) / 1000);
  await ch.close();
  return rate;
}

async function floorDrain(model: ChannelModel, queue: string, n: number): Promise<number> {
  const ch = await model.createChannel();
  await ch.prefetch(100);
  let got = 0;
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    void ch.consume(queue, (m) => {
      if (!m) return;
      ch.ack(m);
      if (++got === n) resolve();
    });
  });
  const rate = n / ((performance.now() - t0) / 1000);
  await ch.close();
  return rate;
}

async function celeriacSend(url: string, queue: string, msgs: WireMessage[]): Promise<number> {
  const broker = createAmqpBroker({ url, logger: quiet, settings: resolveSettings({}) });
  await broker.connect();
  await broker.publish(queue, msgs[0]!); // declare outside the timing, as a long-lived client would have
  await broker.purge(queue);
  const items = msgs.map((message) => ({ queue, message }));
  const t0 = performance.now();
  await broker.publishMany(items);
  const rate = msgs.length / ((performance.now() - t0) / 1000);
  await broker.close();
  return rate;
}

async function celeriacSendApp(url: string, queue: string, n: number): Promise<number> {
  const app = createApp({ brokerUrl: url, backend: null, logger: quiet, taskDefaultQueue: queue });
  await app.broker();
  const t0 = performance.now();
  for (let i = 0; i < n; i += 1000) {
    await app.sendMany(Array.from({ length: Math.min(1000, n - i) }, (_, k) => ({ name: 'tasks.add', args: [i + k, i + k] })));
  }
  const rate = n / ((performance.now() - t0) / 1000);
  await app.close();
  return rate;
}

async function celeriacDrain(url: string, queue: string, n: number): Promise<number> {
  const broker = createAmqpBroker({ url, logger: quiet, settings: resolveSettings({}) });
  await broker.connect();
  let got = 0;
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const t0 = performance.now();
  const consumer = await broker.consume([queue], { prefetch: 100 }, (d) => {
    void d.ack();
    if (++got === n) done();
  });
  await finished;
  const rate = n / ((performance.now() - t0) / 1000);
  await consumer.cancel();
  await broker.close();
  return rate;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** CPU cost of the adapter's own work per message, without the broker (µs). */
function cpuCosts(msgs: WireMessage[]): { encodeUs: number; decodeUs: number } {
  const reps = Math.min(msgs.length, 20_000);
  let t0 = performance.now();
  const encoded = [];
  for (let i = 0; i < reps; i++) encoded.push(publishOptions(msgs[i]!, undefined, true));
  const encodeUs = ((performance.now() - t0) * 1000) / reps;
  // Decoding input: headers as amqplib hands them over (plain values).
  const props = msgs.slice(0, reps).map((m) => ({ headers: m.headers, contentType: m.contentType, contentEncoding: m.contentEncoding, deliveryMode: 2, priority: 0, correlationId: m.properties.correlation_id }));
  t0 = performance.now();
  for (let i = 0; i < reps; i++) wireMessageFrom(props[i] as never, msgs[i]!.body);
  const decodeUs = ((performance.now() - t0) * 1000) / reps;
  return { encodeUs, decodeUs };
}

async function main(): Promise<void> {
  // Loopback RabbitMQ without TLS: development, asked for (production is the default, src/config/mode.ts).
  process.env.CELERIAC_ENV ||= 'development';
  const given = args.url ?? process.env.CELERIAC_BENCH_AMQP_URL;
  const env = given ? { url: given, cleanup: () => undefined } : throwawayVhost();
  const model = await connect(env.url);
  const results = { floor: { send: [] as number[], drain: [] as number[] }, celeriac: { send: [] as number[], drain: [] as number[] }, app: { send: [] as number[] } };
  try {
    const msgs = messages(N);
    for (let r = 0; r < RUNS; r++) {
      const q1 = `bench-floor-${r}`;
      await freshQueue(model, q1);
      results.floor.send.push(await floorSend(model, q1, msgs));
      results.floor.drain.push(await floorDrain(model, q1, N));

      const q2 = `bench-celeriac-${r}`;
      results.celeriac.send.push(await celeriacSend(env.url, q2, msgs));
      results.celeriac.drain.push(await celeriacDrain(env.url, q2, N));

      const q3 = `bench-app-${r}`;
      await freshQueue(model, q3);
      results.app.send.push(await celeriacSendApp(env.url, q3, N));
      await freshQueue(model, q3);
      process.stderr.write(`run ${r + 1}/${RUNS} done\n`);
    }
    const cpu = cpuCosts(msgs);
    const floor = { send: median(results.floor.send), drain: median(results.floor.drain) };
    const cel = { send: median(results.celeriac.send), drain: median(results.celeriac.drain) };
    const appSend = median(results.app.send);
    const server = (model.connection.serverProperties as { product?: string; version?: string });
    const fmt = (x: number): string => `${Math.round(x).toLocaleString('en-US')}/s`.padStart(10);
    const ratio = (x: number, f: number): string => `${(x / f).toFixed(2)}×`.padStart(6);
    console.log(`\nAMQP throughput: ${N.toLocaleString('en-US')} persistent Celery task messages, confirms on, prefetch 100, acks on; median of ${RUNS}`);
    console.log(`${server.product ?? 'broker'} ${server.version ?? ''} · node ${process.version} · ${cpus().length} CPU(s) ${cpus()[0]?.model ?? ''}\n`);
    console.log(`${'row'.padEnd(26)} ${'send'.padStart(10)} ${'× floor'.padStart(7)} ${'drain'.padStart(10)} ${'× floor'.padStart(7)}`);
    console.log(`${'amqp-floor'.padEnd(26)} ${fmt(floor.send)} ${ratio(floor.send, floor.send).padStart(7)} ${fmt(floor.drain)} ${ratio(floor.drain, floor.drain).padStart(7)}`);
    console.log(`${'celeriac-amqp'.padEnd(26)} ${fmt(cel.send)} ${ratio(cel.send, floor.send).padStart(7)} ${fmt(cel.drain)} ${ratio(cel.drain, floor.drain).padStart(7)}`);
    console.log(`${'celeriac-amqp (sendMany)'.padEnd(26)} ${fmt(appSend)} ${ratio(appSend, floor.send).padStart(7)} ${'—'.padStart(10)} ${''.padStart(7)}`);
    console.log(`\nadapter CPU per message: ${cpu.encodeUs.toFixed(1)} µs encoding properties (py-amqp typing), ${cpu.decodeUs.toFixed(1)} µs decoding a delivery`);
    console.log(`runs: floor send ${results.floor.send.map(Math.round).join(', ')}; celeriac send ${results.celeriac.send.map(Math.round).join(', ')}; floor drain ${results.floor.drain.map(Math.round).join(', ')}; celeriac drain ${results.celeriac.drain.map(Math.round).join(', ')}`);
    if (args.json) console.log(JSON.stringify({ messages: N, runs: RUNS, floor, celeriac: cel, appSend, cpu, raw: results }));
  } finally {
    await model.close().catch(() => undefined);
    env.cleanup();
  }
}

await main();
