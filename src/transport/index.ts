/**
 * Engine selection by URL scheme: the broker and result backend of every
 * engine. Engines load lazily so that an app on Redis never loads the AMQP or
 * SQLite libraries.
 */
import { ConfigError } from '../errors.ts';
import { redactUrl } from '../config/redact.ts';
import type { AdapterContext } from '../core/adapter-context.ts';
import type { Broker } from '../core/broker.ts';
import type { ResultBackend } from '../core/backend.ts';

export type { Broker } from '../core/broker.ts';
export type { ResultBackend } from '../core/backend.ts';

/** Create the broker adapter for a URL (`redis://`, `rediss://`, `memory://`, …). */
export async function createBroker(url: string, ctx: AdapterContext): Promise<Broker> {
  const scheme = url.slice(0, url.indexOf(':')).toLowerCase();
  switch (scheme) {
    case 'redis':
    case 'rediss': {
      const { createRedisBroker } = await import('./redis/broker.ts');
      return createRedisBroker({ url, ...ctx });
    }
    case 'amqp':
    case 'amqps':
    case 'pyamqp':
    case 'pyamqps': {
      const { createAmqpBroker } = await import('./amqp/broker.ts');
      return createAmqpBroker({ url, ...ctx });
    }
    case 'memory': {
      const { createMemoryBroker } = await import('./memory/broker.ts');
      return createMemoryBroker();
    }
    case 'sqlite': {
      const { createSqliteBroker } = await import('./sqlite/broker.ts');
      return createSqliteBroker({ url, ...ctx });
    }
    default:
      throw new ConfigError(`unsupported broker URL ${redactUrl(url)}`, {
        hint: 'use redis://, rediss://, amqp://, amqps://, sqlite:// or memory://',
      });
  }
}

/** Create the result backend adapter for a URL. */
export async function createBackend(url: string, ctx: AdapterContext): Promise<ResultBackend> {
  const scheme = url.slice(0, url.indexOf(':')).toLowerCase();
  switch (scheme) {
    case 'redis':
    case 'rediss': {
      const { createRedisBackend } = await import('./redis/backend.ts');
      return createRedisBackend({ url, ...ctx });
    }
    case 'memory': {
      const { createMemoryBackend } = await import('./memory/backend.ts');
      return createMemoryBackend();
    }
    case 'sqlite': {
      const { createSqliteBackend } = await import('./sqlite/backend.ts');
      return createSqliteBackend({ url, ...ctx });
    }
    default:
      throw new ConfigError(`unsupported result backend URL ${redactUrl(url)}`, {
        hint: 'use redis://, rediss://, sqlite:// or memory://',
      });
  }
}
