/**
 * The decoding layer against real Python Celery 5.2.6 over RabbitMQ:
 *
 * - issue 20 finding 2: py-amqp writes every header int beyond ±2^31 as
 *   field type `L`, which amqplib could not decode: the frame parser threw,
 *   the connection died, RabbitMQ redelivered, and the consumer
 *   reconnect-looped on that message with everything behind it stuck.
 * - issue 17 item 6: Python's 2^63+1 and −2^63 reach a Celeriac task
 *   exactly (JSON and msgpack bodies) and come back to Python exactly.
 * - issue 17 item 3: kombu's zlib compression both ways (Python client →
 *   Celeriac worker, Celeriac client → Python worker), and a compression
 *   bomb from Python dead-lettered by the worker, the tasks behind it run.
 *
 * A private vhost, unique queues and a private Redis for results.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../../src/client/app.ts';
import { createAmqpBroker } from '../../../src/transport/amqp/broker.ts';
import { decodeJsonText } from '../../../src/codec/json.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { startCeleriacWorker, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import { pyScript, startPythonWorker, type PythonWorker } from '../../helpers/python-celery.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery, requireService } from '../../helpers/services.ts';
import { createTestVhost, hasRabbitmq, type TestVhost } from '../../integration/amqp/support/rabbit.ts';

const P63 = 2n ** 63n;

describe('Python client → Celeriac worker (AMQP): header integers and exact integers', () => {
  const ready = hasRabbitmq() && hasRedisServer() && hasPythonCelery();
  const queue = `h17-decoding-${randomBytes(4).toString('hex')}`;
  const pyQueue = `${queue}-py`;
  const logger = createLogger({ level: 'error' });
  let vh: TestVhost | undefined;
  let redis: RedisServer | undefined;
  let worker: CeleriacWorkerProcess | undefined;
  let pyWorker: PythonWorker | undefined;
  let app: App | undefined;
  let env: Record<string, string> = {};

  before(async () => {
    if (!ready) return;
    vh = await createTestVhost('decoding');
    redis = await startRedisServer();
    env = { CELERY_BROKER_URL: vh.url(), CELERY_RESULT_BACKEND: redis.url(1), CELERY_SERIALIZER: 'json', CELERY_DEFAULT_QUEUE: queue };
    worker = await startCeleriacWorker({ env: { CELERIAC_BROKER_URL: vh.url(), CELERIAC_RESULT_BACKEND: redis.url(1) }, args: ['-c', '2', '-Q', queue, '-n', 'decoding@localhost'] });
  });
  after(async () => {
    await app?.close();
    await pyWorker?.stop();
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

  it('zlib-compressed messages from Python (json and msgpack bodies) run on Celeriac', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ, redis-server and python3-celery')) return;
    const r = await py(`
import json
from harness_tasks import app
a = app.send_task('tasks.add', args=[2, 3], compression='zlib', serializer='json')
b = app.send_task('tasks.echo', args=['zoë', 2**63 + 1], kwargs={'k': [1, 2]}, compression='gzip', serializer='msgpack')
print(json.dumps({'add': a.get(timeout=30), 'echo': b.get(timeout=30)}))
`);
    assert.deepEqual(r, { add: 5, echo: { args: ['zoë', P63 + 1n], kwargs: { k: [1, 2] } } });
  });

  it('a Celeriac client sends compression: zlib; the Python worker inflates it', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ, redis-server and python3-celery')) return;
    app = createApp({ brokerUrl: vh!.url(), resultBackend: redis!.url(1), logger });
    const res = await app.sendTask<{ args: unknown[]; kwargs: Record<string, unknown> }>('tasks.echo', ['x'.repeat(10_000), 12345678901234567890n], { n: 1 }, { queue: pyQueue, compression: 'zlib' });
    // Before any worker: py-amqp reads the message as it is on the wire, and puts it back.
    const wire = JSON.parse(
      await pyScript(
        `
import amqp, json, os, zlib
c = amqp.Connection(host='127.0.0.1:5672', userid=os.environ['U'], password=os.environ['P'], virtual_host=os.environ['V'])
c.connect()
ch = c.channel()
m = ch.basic_get(os.environ['Q'], no_ack=False)
body = json.loads(zlib.decompress(m.body))
print(json.dumps({'compression': m.properties['application_headers'].get('compression'), 'size': len(m.body), 'args_len': len(body[0][0])}))
ch.basic_reject(m.delivery_tag, requeue=True)
c.close()
`,
        { U: vh!.user, P: vh!.password, V: vh!.vhost, Q: pyQueue },
      ),
    ) as { compression: string; size: number; args_len: number };
    assert.equal(wire.compression, 'application/x-gzip');
    assert.equal(wire.args_len, 10_000);
    assert.ok(wire.size < 1000, `compressed on the wire (${wire.size} bytes)`);
    pyWorker = await startPythonWorker({ brokerUrl: vh!.url(), backendUrl: redis!.url(1), name: 'pydecoding@localhost', env: { CELERY_DEFAULT_QUEUE: pyQueue }, args: ['-Q', pyQueue] });
    const value = await res.get({ timeoutMs: 30_000 });
    assert.deepEqual(value, { args: ['x'.repeat(10_000), 12345678901234567890n], kwargs: { n: 1 } });
    assert.match(pyWorker.output(), /tasks\.echo\[/);
  });

  it('a compression bomb from Python is dead-lettered without being inflated past the cap; the tasks behind it run', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ, redis-server and python3-celery')) return;
    // 64 MB of JSON text that deflates to ~64 KB: over both the 4 MiB size cap and the 200:1 ratio cap.
    const r = await py(`
import json
from harness_tasks import app
bomb = app.send_task('tasks.echo', args=['a' * 64_000_000], compression='zlib')
behind = [app.send_task('tasks.add', args=[i, 1]) for i in range(3)]
print(json.dumps({'bomb': bomb.id, 'behind': [b.get(timeout=30) for b in behind]}))
`);
    assert.deepEqual(r.behind, [1, 2, 3]);
    const broker = createAmqpBroker({ url: vh!.url(), logger, settings: resolveSettings({}) });
    try {
      const dead = await broker.deadLetters(queue);
      const mine = dead.filter((d) => d.message?.headers.id === r.bomb);
      assert.equal(mine.length, 1, `the bomb is in ${queue}.dlq`);
      assert.match(mine[0]!.reason, /compressed body of \d+ bytes inflates beyond \d+ bytes/);
    } finally {
      await broker.close();
    }
  });
});
