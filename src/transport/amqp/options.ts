/**
 * AMQP-specific settings, read from the app settings (Celery's names in
 * camelCase; snake_case works too because the settings are normalized
 * first). They are documented on `AppSettings`; the schema checks their
 * types (the `connection` section), their ranges are checked here.
 *
 * | setting | Celery name | default | meaning |
 * | --- | --- | --- | --- |
 * | `taskQueueMaxPriority` | `task_queue_max_priority` | unset | adds `x-max-priority: N` (1–255) to every task queue Celeriac declares |
 * | `taskDefaultQueueType` | `task_default_queue_type` | `classic` | `quorum` adds `x-queue-type: quorum` (replicated queues on a cluster); refused together with `taskQueueMaxPriority` (quorum queues have no priorities); consumers then use a per-consumer prefetch (no global QoS) |
 * | `brokerConnectionTimeout` | `broker_connection_timeout` | 4 s | TCP + TLS + AMQP handshake limit of one connection attempt |
 * | `brokerConnectionRetry` | `broker_connection_retry` | true | reconnect after a lost connection |
 * | `brokerConnectionMaxRetries` | `broker_connection_max_retries` | unlimited | consecutive failed reconnects before giving up |
 * | `brokerHeartbeat` | `broker_heartbeat` | 60 s | AMQP heartbeat; 0 turns it off |
 * | `brokerPublishTimeout` | — | 30 s | how long a send waits for a reachable broker and its confirm before failing with `ConnectionError` |
 *
 * Also from `brokerTransportOptions`: `reconnectDelayMs` (first reconnect
 * back-off step, default 100) and `reconnectDelayMaxMs` (cap, default 5000).
 * TLS comes from the URL (`amqps://`, `?ssl_ca_certs=…`) and `brokerUseSsl`,
 * through the same `src/config/tls.ts` as Redis.
 */
import type { ConnectionSection, ResolvedSettings } from '../../config/options.ts';
import { ConfigError } from '../../errors.ts';

/** Queue type declared for task queues. */
export type AmqpQueueType = 'classic' | 'quorum';

/** Resolved AMQP settings. */
export interface AmqpSettings {
  queueType: AmqpQueueType;
  /** `x-max-priority` of task queues; undefined = no priorities (Celery's default). */
  maxPriority: number | undefined;
  connectTimeoutMs: number;
  heartbeatS: number;
  retry: boolean;
  /** Consecutive failed reconnect attempts before giving up; undefined = never give up. */
  maxRetries: number | undefined;
  publishTimeoutMs: number;
  /** Quorum queues: `x-delivery-limit` of task queues (dead-lettered to `<queue>.dlq` past it); undefined = RabbitMQ's default. */
  deliveryLimit: number | undefined;
  /** Reconnect backoff: first delay and cap, ms. */
  backoffInitialMs: number;
  backoffMaxMs: number;
}

function num(c: ConnectionSection, name: 'taskQueueMaxPriority' | 'brokerConnectionTimeout' | 'brokerHeartbeat' | 'brokerConnectionMaxRetries' | 'brokerPublishTimeout', min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = c[name];
  if (v === undefined || v === null) return undefined;
  const n = v;
  if (!Number.isFinite(n) || n < min || n > max) {
    throw new ConfigError(`${name} must be a number from ${min} to ${max}`, { hint: `got ${JSON.stringify(v)}` });
  }
  return n;
}

/** Read and check the AMQP settings. Throws `ConfigError` naming the setting at fault. */
export function amqpSettings(settings: ResolvedSettings): AmqpSettings {
  const conn = settings.connection;
  const queueType = conn.taskDefaultQueueType ?? 'classic';
  if (queueType !== 'classic' && queueType !== 'quorum') {
    throw new ConfigError(`taskDefaultQueueType must be 'classic' or 'quorum'`, { hint: `got ${JSON.stringify(queueType)}` });
  }
  const maxPriority = num(conn, 'taskQueueMaxPriority', 1, 255);
  if (maxPriority !== undefined && !Number.isInteger(maxPriority)) {
    throw new ConfigError('taskQueueMaxPriority must be a whole number from 1 to 255');
  }
  if (queueType === 'quorum' && maxPriority !== undefined) {
    // Silently dropping x-max-priority would make priorities quietly stop working on a cluster.
    throw new ConfigError('taskQueueMaxPriority cannot be used with taskDefaultQueueType: quorum: RabbitMQ quorum queues have no message priorities (before 3.12 they refuse x-max-priority, since then they know only two levels)', {
      hint: "remove taskQueueMaxPriority (and task priorities), or keep taskDefaultQueueType: 'classic' where priorities matter",
    });
  }
  const t0 = settings.brokerTransportOptions;
  const deliveryLimit = t0.deliveryLimit;
  if (deliveryLimit !== undefined && (queueType !== 'quorum' || !Number.isInteger(deliveryLimit) || deliveryLimit < 1)) {
    throw new ConfigError(queueType !== 'quorum'
      ? 'brokerTransportOptions.deliveryLimit needs taskDefaultQueueType: quorum (classic queues have no x-delivery-limit)'
      : 'brokerTransportOptions.deliveryLimit must be a whole number ≥ 1', {
      hint: "set taskDefaultQueueType: 'quorum', or remove deliveryLimit (taskMaxRedeliveries bounds redeliveries on every queue type)",
    });
  }
  const retry = conn.brokerConnectionRetry;
  if (retry !== undefined && typeof retry !== 'boolean') throw new ConfigError('brokerConnectionRetry must be true or false');
  const t = settings.brokerTransportOptions;
  return {
    queueType,
    maxPriority,
    deliveryLimit,
    connectTimeoutMs: (num(conn, 'brokerConnectionTimeout', 0.001, 3600) ?? 4) * 1000,
    heartbeatS: Math.round(num(conn, 'brokerHeartbeat', 0, 3600) ?? 60),
    retry: retry ?? true,
    maxRetries: num(conn, 'brokerConnectionMaxRetries', 0),
    publishTimeoutMs: (num(conn, 'brokerPublishTimeout', 0.001, 86_400) ?? 30) * 1000,
    // Transport options tune the backoff (tests shorten it); the defaults suit production.
    backoffInitialMs: typeof t.reconnectDelayMs === 'number' && t.reconnectDelayMs >= 0 ? t.reconnectDelayMs : 100,
    backoffMaxMs: typeof t.reconnectDelayMaxMs === 'number' && t.reconnectDelayMaxMs > 0 ? t.reconnectDelayMaxMs : 5000,
  };
}
