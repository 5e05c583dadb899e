/**
 * Result backend selection by URL scheme (adapters load lazily).
 */
import { ConfigError } from '../errors.ts';
import { redactUrl } from '../config/redact.ts';
import type { AdapterContext } from '../adapter-context.ts';
import type { ResultBackend } from './types.ts';

export type { ResultBackend } from './types.ts';

/** Create the result backend adapter for a URL. */
export async function createBackend(url: string, ctx: AdapterContext): Promise<ResultBackend> {
  const scheme = url.slice(0, url.indexOf(':')).toLowerCase();
  switch (scheme) {
    case 'redis':
    case 'rediss': {
      const { createRedisBackend } = await import('./redis.ts');
      return createRedisBackend({ url, ...ctx });
    }
    case 'memory': {
      const { createMemoryBackend } = await import('./memory.ts');
      return createMemoryBackend();
    }
    case 'sqlite': {
      const { createSqliteBackend } = await import('./sqlite.ts');
      return createSqliteBackend({ url, ...ctx });
    }
    default:
      throw new ConfigError(`unsupported result backend URL ${redactUrl(url)}`, {
        hint: 'use redis://, rediss://, sqlite:// or memory://',
      });
  }
}
