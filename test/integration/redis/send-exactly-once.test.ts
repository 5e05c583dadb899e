/**
 * A Redis crash mid-send stores no message twice and loses none that was
 * confirmed (issue 21 #5): ioredis re-sends unanswered commands after a
 * reconnect, so an LPUSH that had landed (and was persisted with
 * appendfsync always) used to be stored twice. The broker's send
 * connection never re-sends; an unanswered send is verified and completed.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { createRedisBroker } from '../../../src/transport/redis/broker.ts';
import { JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';
import { hasRedisServer, startAofRedis, type AofRedis } from '../../helpers/redis-server.ts';
import { requireService, sleep } from '../../helpers/services.ts';

const ok = hasRedisServer();

describe('redis sends survive a server crash exactly once', () => {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-aof-'));
  let server: AofRedis | undefined;

  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('no duplicate and no confirmed send lost across SIGKILLs of redis-server during a burst', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    server = await startAofRedis(dir);
    const port = server.port;
    const broker = createRedisBroker({ url: `redis://127.0.0.1:${port}/0`, settings: resolveSettings({}), logger: createLogger({ level: 'silent' }) });
    await broker.connect();
    const confirmed = new Set<string>();
    let n = 0;
    for (let round = 0; round < 4; round++) {
      const sends: Promise<void>[] = [];
      let stop = false;
      const producer = (async () => {
        while (!stop) {
          const batch: Promise<void>[] = [];
          for (let i = 0; i < 50; i++) {
            const id = `m-${n++}`;
            const p = broker.publish('eo-q', buildTaskMessage({ task: 't.n', id, args: [i], kwargs: {} }, JSON_SERIALIZER)).then(() => void confirmed.add(id));
            batch.push(p.catch(() => undefined));
          }
          sends.push(...batch);
          await Promise.all(batch);
        }
      })();
      await sleep(150 + Math.random() * 150);
      await server.restart();
      await sleep(300);
      stop = true;
      await producer;
      await Promise.all(sends);
    }
    const raw = new Redis({ port, host: '127.0.0.1' });
    const items = await raw.lrange('eo-q', 0, -1);
    raw.disconnect();
    const ids = items.map((e) => (JSON.parse(e) as { headers: { id: string } }).headers.id);
    const seen = new Map<string, number>();
    for (const id of ids) seen.set(id, (seen.get(id) ?? 0) + 1);
    const dups = [...seen].filter(([, c]) => c > 1).length;
    const missing = [...confirmed].filter((id) => !seen.has(id)).length;
    await broker.close();
    assert.equal(dups, 0, `${dups} messages stored twice (of ${ids.length}, ${n} sent)`);
    assert.equal(missing, 0, `${missing} confirmed sends missing`);
  });
});
