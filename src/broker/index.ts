/**
 * Broker selection by URL scheme. Adapters load lazily so that an app on
 * Redis never loads the AMQP or SQLite libraries.
 */
import { ConfigError } from '../errors.ts';
import { redactUrl } from '../config/redact.ts';
import type { AdapterContext } from '../adapter-context.ts';
import type { Broker } from './types.ts';

export type { Broker } from './types.ts';

/** Create the broker adapter for a URL (`redis://`, `rediss://`, `memory://`, …). */
export async function createBroker(url: string, ctx: AdapterContext): Promise<Broker> {
  const scheme = url.slice(0, url.indexOf(':')).toLowerCase();
  switch (scheme) {
    case 'redis':
    case 'rediss': {
      const { createRedisBroker } = await import('./redis.ts');
      return createRedisBroker({ url, ...ctx });
    }
    case 'amqp':
    case 'amqps':
    case 'pyamqp':
    case 'pyamqps': {
      const { createAmqpBroker } = await import('./amqp.ts');
      return createAmqpBroker({ url, ...ctx });
    }
    case 'memory': {
      const { createMemoryBroker } = await import('./memory.ts');
      return createMemoryBroker();
    }
    case 'sqlite': {
      const { createSqliteBroker } = await import('./sqlite.ts');
      return createSqliteBroker({ url, ...ctx });
    }
    default:
      throw new ConfigError(`unsupported broker URL ${redactUrl(url)}`, {
        hint: 'use redis://, rediss://, amqp://, amqps://, sqlite:// or memory://',
      });
  }
}
