/**
 * A reserve whose reply is lost (the connection drops after Redis ran the
 * script): ioredis resends unanswered commands after a reconnect, so the
 * script may run twice with the same tag numbers, or the call fails after
 * it ran. Either way no message may be lost or overwritten, and what the
 * first run took is delivered at once from unacked instead of waiting for
 * the visibility timeout (an hour by default).
 *
 * The lost reply is simulated by wrapping the consumer's reserve command
 * (its connections are internal, hence the casts).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { Redis } from 'ioredis';
import { createRedisBroker, type RedisBroker } from '../../../src/transport/redis/broker.ts';
import { scriptCommand } from '../../../src/transport/redis/scripts.ts';
import type { Consumer, Delivery } from '../../../src/core/broker.ts';
import { JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService, waitFor } from '../../helpers/services.ts';

const ok = hasRedisServer();
const logger = createLogger({ level: 'silent' });
const message = (i: number) => buildTaskMessage({ task: 't.n', id: `id-${i}`, args: [i], kwargs: {} }, JSON_SERIALIZER);

type Reserve = (...args: (string | number)[]) => Promise<Array<number | string>>;

/** Wrap every connection the consumer may reserve on; `lose` decides what happens to the first reserve that takes something. */
function loseFirstReply(broker: RedisBroker, consumer: Consumer, lose: (real: Reserve, args: (string | number)[]) => Promise<Array<number | string>>): { lost: () => boolean } {
  let done = false;
  const watch = (consumer as unknown as { watch?: { reserver: Redis } }).watch;
  for (const client of [broker.client, watch?.reserver]) {
    if (!client) continue;
    const commands = client as unknown as Record<string, Reserve>;
    const name = scriptCommand(client, 'reserve');
    const real = commands[name]!.bind(client);
    commands[name] = async (...args) => {
      if (done) return real(...args);
      const reply = await real(...args);
      // Counts are numbers, envelopes strings: only a call that took something loses its reply.
      if (!reply.some((x) => typeof x === 'string')) return reply;
      done = true;
      return lose(real, args);
    };
  }
  return { lost: () => done };
}

describe('redis broker: a reserve reply lost in a reconnect', () => {
  let server: RedisServer | undefined;
  before(async () => {
    if (ok) server = await startRedisServer();
  });
  after(async () => server?.stop());

  async function run(t: TestContext, queue: string, lose: (real: Reserve, args: (string | number)[]) => Promise<Array<number | string>>): Promise<void> {
    if (!requireService(t, ok, 'redis-server')) return;
    const broker = createRedisBroker({ url: server!.url(0), logger, settings: resolveSettings({}) });
    await broker.connect();
    const got: Delivery[] = [];
    const consumer = await broker.consume([queue], { prefetch: 10 }, (d) => {
      got.push(d);
      void d.ack();
    });
    const spy = loseFirstReply(broker, consumer, lose);
    const n = 50;
    for (let i = 0; i < n; i++) await broker.publish(queue, message(i));
    // Well inside the visibility timeout (3600 s): recovery, not restore.
    await waitFor(() => got.length >= n, 5_000, `all ${n} delivered (got ${got.length})`);
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(spy.lost(), 'a reply was lost');
    const ids = got.map((d) => d.message.headers.id).sort();
    assert.deepEqual(ids, Array.from({ length: n }, (_, i) => `id-${i}`).sort(), 'each message exactly once');
    const raw = server!.client(0);
    await waitFor(async () => (await raw.hlen('unacked')) === 0, 2_000, 'every delivery acked');
    await consumer.cancel();
    await broker.close();
    raw.disconnect();
  }

  it('resent after a reconnect: the replay takes nothing and overwrites nothing; the first run is delivered from unacked', async (t) => {
    await run(t, 'lost-replay', async (real, args) => real(...args));
  });

  it('failed after it ran: what it took is delivered from unacked on the next turn', async (t) => {
    await run(t, 'lost-error', async () => {
      throw new Error('Connection is closed.');
    });
  });
});
