/** The Redis engine's shared token buckets (`take-tokens-n.lua`, atomic across clients). */
import type { Redis } from 'ioredis';
import type { SharedTokenBuckets } from '../../core/token-buckets.ts';
import { takeTokens } from './scripts.ts';

/** Buckets kept on `client`'s server; `close()` quits the client. */
export function createRedisTokenBuckets(client: Redis): SharedTokenBuckets {
  return {
    take: async (buckets, n, limits) => Number(await takeTokens(client, { buckets }, { n, limits })),
    close: async () => {
      await client.quit().catch(() => undefined);
    },
  };
}
