/**
 * Shared send-rate buckets on PostgreSQL (CEL-019 `shared` limits): a take
 * is all or nothing across buckets, racing takes never spend one token
 * twice, and two client processes with one shared limit are admitted, in
 * total, at that limit (not twice it).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { resolveSettings } from '../../../src/config/options.ts';
import { createApp } from '../../../src/client/app.ts';
import { openSharedTokenBuckets } from '../../../src/transport/index.ts';
import type { SharedTokenBuckets } from '../../../src/core/token-buckets.ts';
import { dropPgSchema, hasPostgres, pgAdmin, pgSchemaUrl } from '../../helpers/postgres.ts';
import { IN_CI } from '../../helpers/services.ts';

const available = await hasPostgres();
if (!available && IN_CI) throw new Error('PostgreSQL is required in CI');
const logger = pino({ level: 'silent' });
const SRC = fileURLToPath(new URL('../../../src/index.ts', import.meta.url));

describe('shared token buckets on PostgreSQL', { skip: available ? false : 'PostgreSQL not reachable' }, () => {
  const schemas: string[] = [];
  const fresh = (): string => {
    const { url, schema } = pgSchemaUrl('buckets');
    schemas.push(schema);
    return url;
  };
  after(async () => {
    for (const s of schemas) await dropPgSchema(s);
  });

  async function open(url: string): Promise<SharedTokenBuckets> {
    // A worker would have made the tables (its broker connects first); here the buckets' own migration does.
    return openSharedTokenBuckets(url, 'broker', 'rate-limit', { settings: resolveSettings({}), logger });
  }

  it('takes from every bucket or from none, and says how long to wait', async (t) => {
    const buckets = await open(fresh());
    t.after(() => buckets.close());
    const slow = { rate: 0.01, capacity: 5 };
    const tiny = { rate: 0.01, capacity: 2 };
    assert.equal(await buckets.take(['a', 'b'], 2, [slow, tiny]), 0, 'both have 2');
    const wait = await buckets.take(['a', 'b'], 1, [slow, tiny]);
    assert.ok(wait > 90_000 && wait <= 100_000, `b is empty: about one token's time at 0.01/s (${wait} ms)`);
    assert.equal(await buckets.take(['a'], 3, [slow]), 0, 'a kept its 3 tokens: the refused take spent none');
    assert.ok((await buckets.take(['a'], 1, [slow])) > 0, 'a is empty now');
    const fast = { rate: 1000, capacity: 1 };
    assert.equal(await buckets.take(['f'], 1, [fast]), 0);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(await buckets.take(['f'], 1, [fast]), 0, 'refilled on the server clock');
  });

  it('racing takes from two pools spend each token once', async (t) => {
    const url = fresh();
    const one = await open(url);
    const two = await open(url);
    t.after(async () => {
      await one.close();
      await two.close();
    });
    const limit = { rate: 0.001, capacity: 25 };
    const results = await Promise.all(Array.from({ length: 80 }, (_, i) => (i % 2 ? one : two).take(['x', 'y'], 1, [limit, { rate: 0.001, capacity: 40 }])));
    assert.equal(results.filter((w) => w === 0).length, 25, 'exactly the capacity of the smaller bucket was admitted');
    const rows = (await pgAdmin<{ name: string; tokens: number }>(`SELECT name, tokens FROM "${schemas.at(-1)}".rate_buckets ORDER BY name`)).rows;
    assert.deepEqual(
      rows.map((r) => [r.name, Math.round(r.tokens)]),
      [
        ['x', 0],
        ['y', 15],
      ],
    );
  });

  it('two client processes share one limit: the total admitted matches it', async (t) => {
    const url = fresh();
    // Make the tables first, as a worker would; both clients then only use them.
    await (await open(url)).close();
    const rate = 20;
    const burst = 5;
    const windowMs = 2000;
    const start = Date.now() + 2500;
    // Each process sends one by one, waiting for tokens, and counts the sends admitted inside the window.
    const child = `
      import { createApp } from ${JSON.stringify(SRC)};
      import pino from 'pino';
      const app = createApp({ brokerUrl: process.env.URL, env: { NODE_ENV: 'test' }, logger: pino({ level: 'silent' }), sendRateLimit: { rate: '${rate}/s', burst: ${burst}, shared: 'producers' }, sendRateLimitWait: true });
      await (await app.broker()).queueLength('celery');
      const start = Number(process.env.START), end = start + ${windowMs};
      await new Promise((r) => setTimeout(r, start - Date.now()));
      let n = 0, sent = 0;
      while (Date.now() < end) {
        await app.sendTask('tasks.x', [], {}, { queue: 'limited' });
        sent++;
        if (Date.now() <= end) n++;
      }
      console.log(JSON.stringify([n, sent]));
      await app.close();
    `;
    const run = (): Promise<[inWindow: number, sent: number]> =>
      new Promise((resolve, reject) => {
        const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', child], { env: { ...process.env, URL: url, START: String(start) }, stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        p.stdout.on('data', (d: Buffer) => (out += d.toString()));
        p.on('error', reject);
        p.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim()) as [number, number]) : reject(new Error(`sender exited ${code}: ${out}`))));
      });
    const [[a, sentA], [b, sentB]] = await Promise.all([run(), run()]);
    const expected = burst + (rate * windowMs) / 1000; // a full bucket, then the refill
    t.diagnostic(`admitted in ${windowMs} ms: ${a} + ${b} = ${a + b} (one shared limit: ${expected})`);
    assert.ok(a > 5 && b > 5, `both processes were admitted (${a}, ${b})`);
    assert.ok(Math.abs(a + b - expected) <= 4, `admitted ${a} + ${b} = ${a + b} in ${windowMs} ms; one shared limit allows ${expected} (two per-process ones ${2 * expected})`);
    const app = createApp({ brokerUrl: url, env: { NODE_ENV: 'test' }, logger });
    assert.equal(await (await app.broker()).queueLength('limited'), sentA + sentB, 'every admitted send is in the queue');
    await app.close();
  });
});

