/**
 * Celeriac client → Python Celery 5.2.6 worker over RabbitMQ (a private
 * vhost and user on the shared node), results in a private Redis. Also reads
 * Celeriac-published messages back with py-amqp and compares the raw
 * content-header property bytes RabbitMQ hands to Python with the bytes
 * Python itself wrote (client_publish_calls.json).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../../src/client/app.ts';
import { createAmqpBroker } from '../../../src/transport/amqp/broker.ts';
import { JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { RemoteTaskError } from '../../../src/errors.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';
import type { WireMessage } from '../../../src/protocol/types.ts';
import { pyScript, startPythonWorker, type PythonWorker } from '../../helpers/python-celery.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery, requireService } from '../../helpers/services.ts';
import { createTestVhost, hasRabbitmq, type TestVhost } from '../../integration/amqp/support/rabbit.ts';

interface PyProps {
  priority: number;
  content_type: string;
  content_encoding: string;
  application_headers: Record<string, unknown>;
  correlation_id?: string;
  reply_to?: string;
  delivery_mode: number;
  expiration?: string;
}
const vectors = (
  JSON.parse(readFileSync(new URL('../../fixtures/celery-5.2.6/amqp/client_publish_calls.json', import.meta.url), 'utf8')) as {
    publish_calls: Array<{ exchange: string; properties: PyProps; content_header_property_bytes_hex: string; body: { utf8: string } }>;
  }
).publish_calls.filter((c) => c.exchange === '');

/** py-amqp: read every message of a queue and return the raw property bytes as RabbitMQ delivered them. */
const READ_RAW = `
import json, os, amqp
from amqp.serialization import GenericContent
orig = GenericContent._load_properties
def patched(self, class_id, buf, offset):
    end = orig(self, class_id, buf, offset)
    self._raw_props = bytes(buf[offset:end])
    return end
GenericContent._load_properties = patched
c = amqp.Connection(host=os.environ['AMQP_HOST'], userid=os.environ['AMQP_USER'], password=os.environ['AMQP_PASSWORD'], virtual_host=os.environ['AMQP_VHOST'])
c.connect()
ch = c.channel()
out = []
while True:
    m = ch.basic_get(os.environ['AMQP_QUEUE'], no_ack=True)
    if m is None:
        break
    out.append({'raw': m._raw_props.hex(), 'headers': m.properties.get('application_headers'), 'body': m.body.decode() if isinstance(m.body, bytes) else m.body})
print(json.dumps(out))
c.close()
`;

describe('Celeriac client → Python worker (AMQP)', () => {
  const ready = hasRabbitmq() && hasRedisServer() && hasPythonCelery();
  const logger = createLogger({ level: 'error' });
  let vh: TestVhost | undefined;
  let redis: RedisServer | undefined;
  let py: PythonWorker | undefined;
  let app: App | undefined;

  before(async () => {
    if (!ready) return;
    vh = await createTestVhost('ts2py');
    redis = await startRedisServer();
    py = await startPythonWorker({ brokerUrl: vh.url(), backendUrl: redis.url(1), name: 'pyamqp@localhost' });
    app = createApp({ brokerUrl: vh.url(), resultBackend: redis.url(1), logger });
  });
  after(async () => {
    await app?.close();
    await py?.stop();
    await redis?.stop();
    await vh?.delete();
  });

  it('RabbitMQ hands Python the very property bytes Python writes, for messages Celeriac publishes', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ, redis-server and python3-celery')) return;
    const broker = createAmqpBroker({ url: vh!.url(), logger, settings: resolveSettings({}) });
    try {
      const queue = 'probe';
      // Built by Celeriac's own message builder with the ids of add.delay(2, 3) from the capture…
      const h = vectors[0]!.properties.application_headers;
      const built = buildTaskMessage({ task: String(h.task), id: String(h.id), args: [2, 3], kwargs: {}, origin: String(h.origin), replyTo: vectors[0]!.properties.reply_to }, JSON_SERIALIZER);
      // …and every captured task publish replayed from its decoded form (eta/expires, priority 5, groups).
      const replayed: WireMessage[] = vectors.map((v) => ({
        headers: v.properties.application_headers,
        properties: { correlation_id: v.properties.correlation_id, reply_to: v.properties.reply_to, delivery_mode: v.properties.delivery_mode, priority: v.properties.priority, ...(v.properties.expiration ? { expiration: v.properties.expiration } : {}) },
        contentType: v.properties.content_type,
        contentEncoding: v.properties.content_encoding,
        body: Buffer.from(v.body.utf8),
      }));
      await broker.publishMany([built, ...replayed].map((message) => ({ queue, message, options: { priority: message.properties.priority } })));
      const out = JSON.parse(await pyScript(READ_RAW, { AMQP_HOST: '127.0.0.1:5672', AMQP_USER: vh!.user, AMQP_PASSWORD: vh!.password, AMQP_VHOST: vh!.vhost, AMQP_QUEUE: queue })) as Array<{ raw: string; headers: unknown; body: string }>;
      assert.equal(out.length, 1 + vectors.length);
      assert.equal(out[0]!.raw, vectors[0]!.content_header_property_bytes_hex, 'Celeriac-built add(2, 3)');
      assert.deepEqual(JSON.parse(out[0]!.body), JSON.parse(vectors[0]!.body.utf8), 'same body value (JSON spacing may differ)');
      for (let i = 0; i < vectors.length; i++) {
        assert.equal(out[i + 1]!.raw, vectors[i]!.content_header_property_bytes_hex, `captured publish ${i}`);
        assert.deepEqual(out[i + 1]!.headers, vectors[i]!.properties.application_headers);
      }
      t.diagnostic(`${out.length} messages: property bytes identical to Python's own`);
    } finally {
      await broker.close();
    }
  });

  it('add(2, 3) through a typed remote task handle', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ, redis-server and python3-celery')) return;
    const add = app!.remoteTask<(x: number, y: number) => number>('tasks.add');
    const r = await add.delay(2, 3);
    assert.equal(await r.get({ timeoutMs: 20_000 }), 5);
  });

  it('kwargs, unicode, nested values, null and large integers', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ, redis-server and python3-celery')) return;
    const kwargs = { name: 'Zoë', emoji: '🚀', nested: { list: [1, [2, { k: null }]] }, big: 9007199254740991 };
    const r = await app!.sendTask('tasks.echo', ['héllo', '日本語', 1.5, null, true], kwargs);
    assert.deepEqual(await r.get({ timeoutMs: 20_000 }), { args: ['héllo', '日本語', 1.5, null, true], kwargs });
  });

  it("Python's ValueError surfaces as RemoteTaskError with type ValueError", async (t) => {
    if (!requireService(t, ready, 'RabbitMQ, redis-server and python3-celery')) return;
    const r = await app!.sendTask('tasks.fail', ['bad value']);
    await assert.rejects(r.get({ timeoutMs: 20_000 }), (e: unknown) => e instanceof RemoteTaskError && e.excType === 'ValueError');
  });

  it('countdown and expires (AMQP expiration property) are honoured by Python', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ, redis-server and python3-celery')) return;
    const t0 = Date.now();
    const r = await app!.sendTask('tasks.add', [1, 2], {}, { countdown: 1.5 });
    assert.equal(await r.get({ timeoutMs: 20_000 }), 3);
    assert.ok(Date.now() - t0 >= 1400);
    const expired = await app!.sendTask('tasks.add', [1, 2], {}, { countdown: 3, expires: 1 });
    await assert.rejects(expired.get({ timeoutMs: 20_000 }), { state: 'REVOKED', excType: 'TaskRevokedError' });
  });

  it('bulk send: 500 tasks with streamed confirms, all answered', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ, redis-server and python3-celery')) return;
    const rs = await app!.sendMany(Array.from({ length: 500 }, (_, i) => ({ name: 'tasks.add', args: [i, i] })));
    const values = await Promise.all(rs.map((r) => r.get({ timeoutMs: 60_000 })));
    assert.deepEqual(values, Array.from({ length: 500 }, (_, i) => 2 * i));
  });
});
