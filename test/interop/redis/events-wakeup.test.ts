/**
 * The receiver's wake-up reaches Python Celery 5.2.6: a Python worker whose
 * heartbeat comes every 60 s answers the `heartbeat` broadcast of a
 * Celeriac event receiver with a `worker-heartbeat` at once.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../../src/client/app.ts';
import { createEventReceiver } from '../../../src/client/events/receiver.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { startPythonWorker, type PythonWorker } from '../../helpers/python-celery.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery, requireService, sleep, waitFor } from '../../helpers/services.ts';

const ready = hasRedisServer() && hasPythonCelery();
const pyNode = `py-${randomUUID().slice(0, 8)}@wake`;

describe('event receiver wake-up with a Python worker (Redis)', () => {
  let redis: RedisServer | undefined;
  let py: PythonWorker | undefined;
  let app: App | undefined;
  before(async () => {
    if (!ready) return;
    redis = await startRedisServer();
    app = createApp({ brokerUrl: redis.url(0), resultBackend: redis.url(1), logger: createLogger({ level: 'silent' }) });
    py = await startPythonWorker({ brokerUrl: redis.url(0), backendUrl: redis.url(1), name: pyNode, concurrency: 1, args: ['--heartbeat-interval', '60'] });
  });
  after(async () => {
    await py?.stop();
    await app?.close();
    await redis?.stop();
  });

  it('the Python worker sends a heartbeat at once when a receiver starts, not otherwise', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    await sleep(2000); // past the worker-online / first heartbeat of the Python worker's start
    const watch = async (wakeup: boolean, ms: number): Promise<number> => {
      const ac = new AbortController();
      const receiver = createEventReceiver({ app: app!, signal: ac.signal, bindingKeys: ['worker.#'], wakeup });
      let n = 0;
      const reading = (async () => {
        for await (const ev of receiver) if (ev.type === 'worker-heartbeat' && ev.hostname === pyNode) n++;
      })();
      await receiver.ready;
      await waitFor(() => n > 0, ms, 'a heartbeat').catch(() => undefined);
      ac.abort();
      await reading;
      return n;
    };
    assert.equal(await watch(false, 2500), 0, 'no heartbeat within 2.5 s without the wake-up');
    assert.ok((await watch(true, 5000)) >= 1, 'a heartbeat at once with it');
  });
});
