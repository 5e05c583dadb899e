/**
 * The Redis engine (`redis://`, `rediss://`): broker, result backend and a
 * replay store shared by every worker on the server.
 */
import type { Redis } from 'ioredis';
import type { AdapterContext } from '../../core/adapter-context.ts';
import type { Engine } from '../../core/engine.ts';
import { ENGINES } from '../../core/schemes.ts';
import { ConfigError } from '../../errors.ts';
import { createRedisBackend } from './backend.ts';
import { createRedisBroker } from './broker.ts';
import { connectClient, createRedisClient } from './connection.ts';
import { RedisReplayStore, warnIfEvicting } from './replay-store.ts';
import { createRedisBeatStore } from './beat-store.ts';
import { redisHaOptions } from '../../config/ha-settings.ts';
import { redisTargetId } from './outbox.ts';
import { openRedisDashboardState } from './dashboard-state.ts';
import { redactUrl } from '../../config/redact.ts';

/** A connected ioredis client for Celeriac's own keys (replay guard, shared rate limits), named `celeriac:<role>`. */
export async function openRedisClient(url: string, side: 'broker' | 'backend', role: string, ctx: AdapterContext): Promise<Redis> {
  const client = createRedisClient({ url, settings: ctx.settings, logger: ctx.logger, role, side });
  await connectClient(client, url, role);
  return client;
}

export const engine: Engine = {
  ...ENGINES.redis,
  createBroker: (url, ctx) => createRedisBroker({ url, ...ctx }),
  createBackend: (url, ctx) => createRedisBackend({ url, ...ctx }),
  createReplayStore: async ({ url, side, keyPrefix, settings, logger }) => {
    if (url === undefined) throw new ConfigError('the Redis replay store needs a Redis URL', { hint: 'use a redis:// or rediss:// broker or result backend' });
    const client = await openRedisClient(url, side, 'replay-guard', { settings, logger });
    await warnIfEvicting(client, logger);
    return new RedisReplayStore(client, { keyPrefix });
  },
  createBeatStore: async ({ url, side, keyPrefix, namespace, settings, logger }) => {
    const ha = redisHaOptions(settings, side);
    return createRedisBeatStore(await openRedisClient(url, side, 'beat', { settings, logger }), {
      keyPrefix,
      namespace,
      target: redisTargetId(url, settings, side),
      replicaWait: { replicas: ha.waitForReplicas, timeoutMs: ha.waitTimeoutMs },
    });
  },
  createDashboardStateStore: async ({ url, side, keyPrefix, settings, logger }) =>
    openRedisDashboardState(await openRedisClient(url, side, 'dashboard-state', { settings, logger }), keyPrefix, redactUrl(url)),
};
