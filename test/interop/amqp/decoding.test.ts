/**
 * The decoding layer against real Python Celery 5.2.6 over RabbitMQ:
 *
 * - issue 20 finding 2: py-amqp writes every header int beyond ±2^31 as
 *   field type `L`, which amqplib could not decode: the frame parser threw,
 *   the connection died, RabbitMQ redelivered, and the consumer
 *   reconnect-looped on that message with everything behind it stuck.
 * - issue 17 item 6: Python's 2^63+1 and −2^63 reach a Celeriac task
 *   exactly (JSON and msgpack bodies) and come back to Python exactly.
 *
 * A private vhost, a unique queue and a private Redis for results.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { decodeJsonText } from '../../../src/codec/json.ts';
import { startCeleriacWorker, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import { pyScript } from '../../helpers/python-celery.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery, requireService } from '../../helpers/services.ts';
import { createTestVhost, hasRabbitmq, type TestVhost } from '../../integration/amqp/support/rabbit.ts';

const P63 = 2n ** 63n;

describe('Python client → Celeriac worker (AMQP): header integers and exact integers', () => {
  const ready = hasRabbitmq() && hasRedisServer() && hasPythonCelery();
  const queue = `h17-decoding-${randomBytes(4).toString('hex')}`;
  let vh: TestVhost | undefined;
  let redis: RedisServer | undefined;
  let worker: CeleriacWorkerProcess | undefined;
  let env: Record<string, string> = {};

  before(async () => {
    if (!ready) return;
    vh = await createTestVhost('decoding');
    redis = await startRedisServer();
    env = { CELERY_BROKER_URL: vh.url(), CELERY_RESULT_BACKEND: redis.url(1), CELERY_SERIALIZER: 'json', CELERY_DEFAULT_QUEUE: queue };
    worker = await startCeleriacWorker({ env: { CELERIAC_BROKER_URL: vh.url(), CELERIAC_RESULT_BACKEND: redis.url(1) }, args: ['-c', '2', '-Q', queue, '-n', 'decoding@localhost'] });
  });
  after(async () => {
    await worker?.stop();
    await redis?.stop();
    await vh?.delete();
  });

  /** Run Python; its last stdout line is JSON, read here with exact integers. */
  const py = async (code: string): Promise<Record<string, unknown>> => {
    const out = await pyScript(code, env, 90_000);
    return decodeJsonText(out.trim().split('\n').pop()!) as Record<string, unknown>;
  };

  it("a task whose headers hold ints beyond 2^31 (py-amqp's L) runs, the connection holds, and the tasks behind it run", async (t) => {
    if (!requireService(t, ready, 'RabbitMQ, redis-server and python3-celery')) return;
    const r = await py(`
import json
from harness_tasks import app
big = app.send_task('tasks.echo', args=['hdr'], headers={'big': 2**40, 'neg': -(2**40), 'max': 2**63 - 1}, serializer='json')
behind = [app.send_task('tasks.add', args=[i, i], serializer='json') for i in range(3)]
out = {'echo': big.get(timeout=30), 'behind': [b.get(timeout=30) for b in behind]}
print(json.dumps(out))
`);
    assert.deepEqual(r, { echo: { args: ['hdr'], kwargs: {} }, behind: [0, 2, 4] });
    const lost = worker!.logs().filter((l) => /connection .* lost|reconnect/i.test(String(l.msg)));
    assert.deepEqual(lost, [], 'the consumer connection was never lost');
  });

  for (const serializer of ['json', 'msgpack'] as const) {
    it(`2^63+1 and −2^63 round-trip exactly Python → Node → Python (${serializer} body, JSON result)`, async (t) => {
      if (!requireService(t, ready, 'RabbitMQ, redis-server and python3-celery')) return;
      const r = await py(`
import json
from harness_tasks import app
args = [2**63 + 1, -2**63, 2**53 + 1, 7]
res = app.send_task('tasks.echo', args=args, kwargs={'k': 2**64 - 1}, serializer='${serializer}').get(timeout=30)
assert res == {'args': args, 'kwargs': {'k': 2**64 - 1}}, res
assert all(type(x) is int for x in res['args']), res
print(json.dumps(res))
`);
      assert.deepEqual(r, { args: [P63 + 1n, -P63, 2n ** 53n + 1n, 7], kwargs: { k: 2n ** 64n - 1n } });
    });
  }
});
