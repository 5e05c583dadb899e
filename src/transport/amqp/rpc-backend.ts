/**
 * Celery's `rpc://` result backend over RabbitMQ (celery/backends/rpc.py,
 * 5.2.6): results are not stored anywhere; the worker sends each record as
 * a message to the caller's reply queue and the caller keeps what it
 * receives.
 *
 * - The caller's queue is named by a random id (Celery: the app's
 *   `thread_oid`), declared before the first task is sent, non-durable,
 *   auto-delete, with `x-expires` = `resultExpires` (Celery's `expires`),
 *   and read without acks. Its name goes out as each task's `reply_to`.
 * - The worker publishes through the default exchange (`''`) with routing
 *   key = the message's `reply_to` and `correlation_id` = the message's
 *   `correlation_id` (the task id), non-persistent (Celery's default
 *   `result_persistent`), declaring nothing: a record for a queue that is
 *   gone is dropped by RabbitMQ, as Celery's is. A record without a
 *   `reply_to` is not sent (Celery: `if not routing_key: return`).
 *
 * What this backend cannot do, by construction (Celery's rpc cannot
 * either): `get()`/`getMany()` answer only from the records this process
 * has received on its own queue (a task another client sent, or one sent
 * before this process started, reads as absent: PENDING); `forget()` drops
 * the local copy only; records without a reply route (the shared loss
 * ledger, the persisted revoked list) are not kept; a stored SUCCESS is not
 * protected against a later record of the same task (there is no store to
 * guard: the caller's ResultStore settles on the first ready record).
 */
import { randomUUID } from 'node:crypto';
import type { Channel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import type { AdapterContext } from '../../core/adapter-context.ts';
import type { ResultBackend, StoredRecord } from '../../core/backend.ts';
import { ClosedError, ConfigError, ConnectionError } from '../../errors.ts';
import type { ResolvedSettings } from '../../config/options.ts';
import type { Logger } from '../../observability/logging.ts';
import { encodeTable } from './codec.ts';
import { AmqpConnection, amqpEndpoint, type AmqpEndpoint, type Live } from './connection.ts';
import { amqpSettings, type AmqpSettings } from './options.ts';

export interface RpcBackendOptions extends AdapterContext {
  /** The broker's URL: the rpc backend opens its own connection there (as Celery's result consumer does). */
  brokerUrl: string;
}

/** Records received and not yet read, at most (oldest dropped first): results nobody waits for must not grow without bound. */
export const RPC_CACHE_LIMIT = 10_000;

export function createRpcBackend(options: RpcBackendOptions): RpcBackend {
  return new RpcBackend(options);
}

/** Content type and encoding of an encoded record, read from its first byte (as the result layer reads it). */
function contentOf(payload: Buffer): { contentType: string; contentEncoding: string } {
  const first = payload[0];
  if (first === 0x7b) return { contentType: 'application/json', contentEncoding: 'utf-8' };
  if (first !== undefined && ((first >= 0x80 && first <= 0x8f) || first === 0xde || first === 0xdf)) return { contentType: 'application/x-msgpack', contentEncoding: 'binary' };
  // A sealed (encrypted) record: only a Celeriac reader with the key opens it.
  return { contentType: 'application/octet-stream', contentEncoding: 'binary' };
}

export class RpcBackend implements ResultBackend {
  readonly kind = 'rpc';
  private readonly conn: AmqpConnection;
  private readonly endpoint: AmqpEndpoint;
  private readonly appSettings: ResolvedSettings;
  private readonly settings: AmqpSettings;
  private readonly logger: Logger;
  private readonly maxBytes: number;
  private readonly expiresMs: number | undefined;
  private readonly deliveryMode: 1 | 2;
  /** This client's reply queue (Celery's `oid`). */
  private readonly oid = randomUUID();
  private readonly cache = new Map<string, Buffer>();
  private readonly watchers = new Map<string, Set<(p: Buffer) => void>>();
  private consuming: Promise<string> | undefined;
  private unsubscribe: (() => void) | undefined;
  private consumeChannel: Channel | undefined;
  private pub: { ch: ConfirmChannel; epoch: number } | undefined;
  private pubOpening: Promise<ConfirmChannel> | undefined;
  private warnedNoRoute = false;
  private closed = false;

  constructor(options: RpcBackendOptions) {
    this.logger = options.logger;
    this.appSettings = options.settings;
    this.settings = amqpSettings(options.settings);
    this.endpoint = amqpEndpoint(options.brokerUrl, options.settings);
    this.conn = new AmqpConnection({ endpoint: this.endpoint, settings: this.settings, logger: this.logger, role: 'rpc-results' });
    this.maxBytes = options.settings.decodeLimits.maxBytes;
    const expires = options.settings.resultExpires;
    this.expiresMs = typeof expires === 'number' && expires > 0 ? Math.round(expires * 1000) : undefined;
    // Celery's default (result_persistent off): a reply lives as long as its caller's queue.
    this.deliveryMode = 1;
  }

  async connect(): Promise<void> {
    if (this.closed) throw new ClosedError('rpc result backend');
    await this.conn.open();
  }

  // ── the worker's side: send each record to its caller ─────────────────

  async store(records: readonly StoredRecord[]): Promise<void> {
    if (this.closed) throw new ClosedError('rpc result backend');
    const routed = records.filter((r) => r.replyTo);
    if (routed.length < records.length && !this.warnedNoRoute) {
      this.warnedNoRoute = true;
      this.logger.debug({ dropped: records.length - routed.length }, 'rpc:// results: records without a reply_to are not sent (Celery does the same)');
    }
    if (routed.length === 0) return;
    const ch = await this.publishChannel();
    for (const r of routed) {
      ch.publish('', r.replyTo!, r.payload, {
        correlationId: r.correlationId || r.taskId,
        deliveryMode: this.deliveryMode,
        ...contentOf(r.payload),
        headers: {},
      });
    }
    await this.confirm(ch);
  }

  private async confirm(ch: ConfirmChannel): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        ch.waitForConfirms(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new ConnectionError(`rpc:// result not confirmed by RabbitMQ within ${this.settings.publishTimeoutMs} ms`, { hint: 'check the broker (a resource alarm blocks publishing)' })), this.settings.publishTimeoutMs);
        }),
      ]);
    } catch (err) {
      // The channel may be broken: the next store opens a new one.
      if (this.pub?.ch === ch) this.pub = undefined;
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  private async publishChannel(): Promise<ConfirmChannel> {
    const live = await this.conn.ready(Date.now() + this.settings.publishTimeoutMs);
    if (this.pub && this.pub.epoch === live.epoch) return this.pub.ch;
    this.pubOpening ??= (async () => {
      try {
        const ch = await live.model.createConfirmChannel();
        ch.on('error', (err: Error) => this.logger.warn({ err }, 'rpc:// results: channel error'));
        ch.on('close', () => {
          if (this.pub?.ch === ch) this.pub = undefined;
        });
        this.pub = { ch, epoch: live.epoch };
        return ch;
      } finally {
        this.pubOpening = undefined;
      }
    })();
    return this.pubOpening;
  }

  // ── the caller's side: one reply queue, read without acks ─────────────

  replyRoute(): Promise<string> {
    if (this.closed) return Promise.reject(new ClosedError('rpc result backend'));
    this.consuming ??= (async () => {
      const live = await this.conn.open();
      this.unsubscribe = this.conn.onConnect((l) => {
        if (!this.closed) this.setup(l).catch((err: unknown) => this.logger.warn({ err }, 'rpc:// results: could not re-open the reply queue after a reconnect'));
      });
      await this.setup(live);
      return this.oid;
    })();
    this.consuming.catch(() => (this.consuming = undefined));
    return this.consuming;
  }

  private async setup(live: Live): Promise<void> {
    const ch = await live.model.createChannel();
    ch.on('error', (err: Error) => this.logger.warn({ err }, 'rpc:// results: reply channel error'));
    try {
      await ch.assertQueue(this.oid, {
        durable: false,
        autoDelete: true,
        exclusive: false,
        arguments: this.expiresMs !== undefined ? encodeTable({ 'x-expires': this.expiresMs }) : {},
      });
      await ch.consume(this.oid, (msg) => this.receive(msg), { noAck: true });
    } catch (err) {
      await ch.close().catch(() => undefined);
      throw err;
    }
    this.consumeChannel = ch;
    if (this.closed) await ch.close().catch(() => undefined);
  }

  private receive(msg: ConsumeMessage | null): void {
    if (!msg || this.closed) return;
    // Celery reads the task id from correlation_id (and only very old senders leave it out).
    const taskId = typeof msg.properties.correlationId === 'string' && msg.properties.correlationId !== '' ? msg.properties.correlationId : undefined;
    if (!taskId || taskId.length > 255) {
      this.logger.warn({ queue: this.oid }, 'rpc:// results: dropped a reply without a correlation_id');
      return;
    }
    if (msg.content.length > this.maxBytes) {
      this.logger.warn({ id: taskId, bytes: msg.content.length }, `rpc:// results: dropped a reply of ${msg.content.length} bytes, over the ${this.maxBytes}-byte limit`);
      return;
    }
    this.cache.delete(taskId);
    this.cache.set(taskId, msg.content);
    if (this.cache.size > RPC_CACHE_LIMIT) this.cache.delete(this.cache.keys().next().value!);
    const set = this.watchers.get(taskId);
    if (set) {
      for (const fn of [...set]) {
        try {
          fn(msg.content);
        } catch (err) {
          this.logger.error({ err, id: taskId }, 'rpc:// results: a result handler failed');
        }
      }
    }
  }

  /** The last record received for a task this process sent; undefined otherwise (see the module comment). */
  async get(taskId: string): Promise<Buffer | undefined> {
    return this.cache.get(taskId);
  }

  async getMany(taskIds: readonly string[]): Promise<Array<Buffer | undefined>> {
    return taskIds.map((id) => this.cache.get(id));
  }

  async watch(taskId: string, onRecord: (payload: Buffer) => void): Promise<() => void> {
    await this.replyRoute();
    let set = this.watchers.get(taskId);
    if (!set) this.watchers.set(taskId, (set = new Set()));
    set.add(onRecord);
    return () => {
      const s = this.watchers.get(taskId);
      if (!s) return;
      s.delete(onRecord);
      if (s.size === 0) this.watchers.delete(taskId);
    };
  }

  /** Drops the local copy only: the record was a message, already consumed. */
  async forget(taskId: string): Promise<void> {
    this.cache.delete(taskId);
  }

  /**
   * The broker's credentials changed (SIGHUP rotation; the app passes the new
   * broker URL, already checked by the broker): the next connection of this
   * backend uses them. Same server and vhost only.
   */
  async updateCredentials(url: string): Promise<void> {
    if (this.closed) throw new ClosedError('rpc result backend');
    if (/^rpc:/i.test(url.trim())) return;
    const next = amqpEndpoint(url, this.appSettings);
    const a = this.endpoint.connect;
    const b = next.connect;
    if (a.hostname !== b.hostname || a.port !== b.port || a.vhost !== b.vhost || a.protocol !== b.protocol) {
      throw new ConfigError(`new broker URL ${next.url.redacted} names another server or vhost than ${this.endpoint.url.redacted}`, {
        hint: 'credential rotation keeps host, port, vhost and scheme; restart to move to another broker',
      });
    }
    a.username = b.username;
    a.password = b.password;
    this.endpoint.tls = next.tls;
    this.endpoint.url = next.url;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe?.();
    this.watchers.clear();
    this.cache.clear();
    await this.consumeChannel?.close().catch(() => undefined);
    await this.pub?.ch.close().catch(() => undefined);
    await this.conn.close();
  }
}
