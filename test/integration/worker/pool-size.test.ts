/**
 * The prefork pool holds its size (issue 21 #1): a replacement child that
 * fails to start is retried with backoff instead of losing its slot, and a
 * supervisor left with no child for longer than its bound gives up (its
 * `done` rejects, so the CLI exits non-zero).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CeleriacError } from '../../../src/errors.ts';
import { createWorker, type WorkerHandle } from '../../../src/worker/worker.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService, sleep, waitFor } from '../../helpers/services.ts';

const MODULE = new URL('./apps/flaky-start-tasks.ts', import.meta.url).href;
const ok = hasRedisServer();

describe('prefork pool size', () => {
  let redis: RedisServer | undefined;
  let mod: typeof import('./apps/flaky-start-tasks.ts');
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-pool-'));
  const marker = join(dir, 'fail');
  const workers: WorkerHandle[] = [];

  before(async () => {
    if (!ok) return;
    redis = await startRedisServer();
    process.env.CELERIAC_BROKER_URL = redis.url(0);
    process.env.CELERIAC_RESULT_BACKEND = redis.url(1);
    process.env.CELERIAC_LOG_LEVEL = 'fatal';
    process.env.TEST_FAIL_START_FILE = marker;
    mod = await import('./apps/flaky-start-tasks.ts');
  });
  after(async () => {
    rmSync(marker, { force: true });
    for (const w of workers) await w.stop().catch(() => undefined);
    await mod?.app.close();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Pids of the children, read from tasks they ran. */
  async function childPids(n: number): Promise<Set<number>> {
    const pids = new Set<number>();
    const deadline = Date.now() + 15_000;
    while (pids.size < n && Date.now() < deadline) {
      const rs = await Promise.all(Array.from({ length: 20 }, () => mod.pid.delay()));
      for (const r of rs) pids.add(await r.get({ timeoutMs: 10_000 }));
    }
    return pids;
  }

  it('a replacement that fails to start is retried until the pool is back to its size', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const w = createWorker({ app: mod.app, appModule: MODULE, concurrency: 2, processes: 2, maxEmptyPoolMs: 120_000 });
    workers.push(w);
    await w.start();
    assert.deepEqual(w.stats().pool, { target: 2, live: 2 });
    const pids = await childPids(2);
    assert.equal(pids.size, 2);
    writeFileSync(marker, '');
    process.kill([...pids][0]!, 'SIGKILL');
    // Replacements die during start-up while the marker exists (several attempts with backoff).
    await sleep(2500);
    assert.equal(w.stats().pool!.live, 1);
    rmSync(marker);
    await waitFor(() => w.stats().pool!.live === 2, 20_000, 'the pool back to 2 children');
    // And the new child works.
    assert.ok((await childPids(2)).size >= 1);
    await w.stop();
  });

  it('a supervisor with no child for longer than maxEmptyPoolMs stops and done rejects', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const w = createWorker({ app: mod.app, appModule: MODULE, concurrency: 1, processes: 1, maxEmptyPoolMs: 1500 });
    workers.push(w);
    await w.start();
    const [pid] = await childPids(1);
    writeFileSync(marker, '');
    process.kill(pid!, 'SIGKILL');
    const t0 = Date.now();
    await assert.rejects(w.done, (e: unknown) => e instanceof CeleriacError && e.code === 'ERR_POOL_EMPTY');
    assert.ok(Date.now() - t0 < 15_000);
    rmSync(marker);
  });
});
