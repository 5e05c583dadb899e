/**
 * High-availability settings of the Redis engine (issue 22): which primary
 * the sentinels are asked for, how to log in to the sentinels, and the safe
 * mode that makes every write wait for replicas.
 *
 * The broker reads them from `brokerTransportOptions` (checked by the
 * schema with the other transport options); the result backend from
 * `resultBackendTransportOptions` (Celery's `result_backend_transport_options`),
 * checked here against the same fields — that setting may also carry
 * options of Celery backends Celeriac does not have, so only the keys
 * below are read, and each is type-checked.
 */
import { ConfigError } from '../errors.ts';
import type { ResolvedSettings } from './options.ts';
import { camelCaseKey, HA_TRANSPORT_FIELDS, SettingError } from './schema.ts';

/** What the Redis engine needs to reach a primary through Sentinel and to wait for replicas. */
export interface RedisHaOptions {
  /** The monitored primary's name (`master_name`); undefined when not given. */
  masterName: string | undefined;
  /** User and password for the sentinels (`sentinel_kwargs`), when they require them. */
  sentinelUsername: string | undefined;
  sentinelPassword: string | undefined;
  /** Replicas each write waits for (0 = no waiting). */
  waitForReplicas: number;
  /** How long `WAIT` may take, ms. */
  waitTimeoutMs: number;
}

/** The HA options of the broker (`side: 'broker'`) or the result backend. */
export function redisHaOptions(settings: ResolvedSettings, side: 'broker' | 'backend'): RedisHaOptions {
  const setting = side === 'broker' ? 'brokerTransportOptions' : 'resultBackendTransportOptions';
  const raw: Record<string, unknown> = side === 'broker' ? { ...settings.brokerTransportOptions } : {};
  if (side === 'backend') {
    for (const [k, v] of Object.entries(settings.resultBackendTransportOptions ?? {})) {
      const key = camelCaseKey(k);
      if (!Object.hasOwn(HA_TRANSPORT_FIELDS, key) || v === undefined || v === null) continue;
      const f = HA_TRANSPORT_FIELDS[key as keyof typeof HA_TRANSPORT_FIELDS];
      if (!f.schema.safeParse(v).success) {
        throw new SettingError('type', `${setting}.${k}`, `setting ${setting}.${k} must be ${f.expect}`, { hint: 'see docs/reference/settings.md for its type and meaning' });
      }
      raw[key] = v;
    }
  }
  const kwargs = (raw.sentinelKwargs ?? {}) as Record<string, unknown>;
  const str = (k: string): string | undefined => {
    const v = kwargs[k];
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v !== 'string') throw new ConfigError(`${setting}.sentinel_kwargs.${k} must be a string`, { hint: 'give the sentinels\' user and password as strings (from a secret file)' });
    return v;
  };
  const wait = typeof raw.waitForReplicas === 'number' ? Math.floor(raw.waitForReplicas) : 0;
  const timeoutS = typeof raw.waitForReplicasTimeout === 'number' && raw.waitForReplicasTimeout > 0 ? raw.waitForReplicasTimeout : 1;
  return {
    masterName: typeof raw.masterName === 'string' && raw.masterName !== '' ? raw.masterName : undefined,
    sentinelUsername: str('username'),
    sentinelPassword: str('password'),
    waitForReplicas: wait,
    waitTimeoutMs: Math.max(1, Math.round(timeoutS * 1000)),
  };
}
