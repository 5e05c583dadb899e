/**
 * The Redis engine's outbox (`core/broker.ts` `OutboxPublish`): a task
 * message as the broker would LPUSH it, which the beat store pushes in its
 * claim script instead, so the tick's record and its message are one
 * atomic step on the server.
 */
import type { OutboxPublish } from '../../core/broker.ts';
import type { ResolvedSettings } from '../../config/options.ts';
import { redisHaOptions } from '../../config/ha-settings.ts';
import { parseRedisUrl } from './connection.ts';

/** What the Redis broker hands a beat store on the same server and database. */
export interface RedisOutboxPublish extends OutboxPublish {
  readonly engine: 'redis';
  /** The queue's list key (prefix and priority suffix included). */
  readonly key: string;
  /** The kombu envelope to push. */
  readonly envelope: string;
}

/**
 * The server and database a URL writes to: `host:port/db`, or the
 * Sentinel primary's name and database (the primary may move; its name does not).
 */
export function redisTargetId(url: string, settings: ResolvedSettings, side: 'broker' | 'backend'): string {
  const t = parseRedisUrl(url);
  if (t.sentinels) return `sentinel:${redisHaOptions(settings, side).masterName ?? ''}/${t.db}`;
  return `${t.host.toLowerCase()}:${t.port}/${t.db}`;
}

/** Whether `p` is a Redis outbox publish for `target`. */
export function isRedisOutbox(p: Pick<OutboxPublish, 'engine' | 'target'>, target: string): p is RedisOutboxPublish {
  const r = p as Partial<RedisOutboxPublish>;
  return p.engine === 'redis' && p.target === target && typeof r.key === 'string' && typeof r.envelope === 'string';
}
