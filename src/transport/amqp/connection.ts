/**
 * One AMQP connection that stays up: the first connect fails fast with a
 * clear error (a refused login or a bad certificate never fixes itself);
 * after that, a lost connection is re-opened with exponential backoff and
 * jitter, and everyone who uses it (publisher, consumers, subscriptions)
 * is told so they can rebuild their channels.
 *
 * Each successful connect starts a new *epoch*. Channels, delivery tags
 * and declarations belong to the epoch they were made in and are never
 * reused in another: an ack for a delivery of a dead epoch is not sent
 * (the broker already requeued that message).
 */
import { hostname } from 'node:os';
// Must come before amqplib: it bounds amqplib's header decoding (see field-table.ts).
import { fieldTableGuardActive } from './field-table.ts';
import { contentGuardActive } from './content-guard.ts';
import { connect, type ChannelModel, type Options } from 'amqplib';
import type { ConnectionOptions } from 'node:tls';
import type { ResolvedSettings } from '../../config/options.ts';
import { policyInputFromSettings } from '../../config/policy.ts';
import { tlsOptionsFor } from '../../config/tls.ts';
import { parseConnectionUrl, splitUrlList, type ConnectionUrl } from '../../config/url.ts';
import { ClosedError, ConfigError, ConnectionError } from '../../errors.ts';
import type { Logger } from '../../observability/logging.ts';
import { classifyConnectionError, recordSecurityEvent } from '../../observability/security-events.ts';
import type { AmqpSettings } from './options.ts';

/** Where and how to connect, worked out once from the URL and settings. */
export interface AmqpEndpoint {
  url: ConnectionUrl;
  /** `host:port/vhost`, never the credentials, for messages. */
  display: string;
  connect: Options.Connect;
  tls: ConnectionOptions | undefined;
  /**
   * Celery's failover list (`amqp://a//;amqp://b//`): every node, this one
   * first. A connection that cannot reach a node, or loses it, goes on to the
   * next one (round robin, kombu's default `failover_strategy`).
   */
  nodes?: AmqpEndpoint[];
}

/**
 * The largest frame Celeriac accepts and asks for in `connection.tune`
 * (RabbitMQ's default); the negotiated value is the smaller of this and the
 * broker's `frame_max`, and a frame larger than this closes the connection
 * before it is buffered. Message bodies span many frames; their total is
 * bounded per message by the body limit (content-guard.ts).
 */
export const FRAME_MAX = 131072;

/** Build the endpoint: credentials and vhost from the URL, TLS from the URL and `brokerUseSsl`; a `;` list gives the first node with `nodes`. */
export function amqpEndpoint(rawUrl: string, settings: ResolvedSettings): AmqpEndpoint {
  const list = splitUrlList(rawUrl);
  if (list.length > 1) {
    const nodes = list.map((u) => amqpEndpoint(u, settings));
    return { ...nodes[0]!, nodes };
  }
  const url = parseConnectionUrl(rawUrl);
  if (url.kind !== 'amqp') throw new ConfigError(`not an AMQP URL: ${url.redacted}`, { hint: 'use amqp://, amqps:// or pyamqp://' });
  const unsafe = policyInputFromSettings(settings).unsafe;
  const tls = tlsOptionsFor(url, settings.tls.brokerUseSsl, { unsafeAllowInsecureTls: unsafe?.unsafeAllowInsecureTls === true, setting: 'brokerUseSsl' });
  const vhost = url.vhost ?? '/';
  return {
    url,
    display: `${url.host.includes(':') ? `[${url.host}]` : url.host}:${url.port}${vhost === '/' ? '' : `/${vhost}`}`,
    connect: {
      protocol: tls ? 'amqps' : 'amqp',
      hostname: url.host,
      port: url.port,
      // An AMQP URL without credentials means guest/guest (as Celery); the policy refuses that off loopback.
      username: url.username ?? 'guest',
      password: url.password ?? (url.username === undefined ? 'guest' : ''),
      // amqplib percent-decodes the vhost once more; encode so `%` in a name survives.
      vhost: encodeURIComponent(vhost),
      frameMax: FRAME_MAX,
      // amqplib would otherwise accept a single incoming frame of up to 64 MiB whatever was negotiated.
      maxFrameSize: FRAME_MAX,
    },
    tls,
  };
}

let guardWarned = false;
let contentGuardWarned = false;

/** A connection that lived this long counts as healthy: the reconnect backoff starts over. */
const STABLE_MS = 5000;

/** A live connection and its epoch. */
export interface Live {
  model: ChannelModel;
  epoch: number;
}

interface Waiter {
  resolve: (live: Live) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

export interface AmqpConnectionOptions {
  endpoint: AmqpEndpoint;
  settings: AmqpSettings;
  logger: Logger;
  /** `publisher`, `consumer`, … (shown in RabbitMQ's connection list). */
  role: string;
}

/** A self-healing AMQP connection. */
export class AmqpConnection {
  readonly role: string;
  /** The nodes to connect to (one, or Celery's failover list) and the one in use. */
  private readonly endpoints: AmqpEndpoint[];
  private node = 0;
  private readonly settings: AmqpSettings;
  private readonly logger: Logger;
  private live: Live | undefined;
  private epoch = 0;
  private opening: Promise<Live> | undefined;
  private started = false;
  private closed = false;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private readonly waiters = new Set<Waiter>();
  /** Set when reconnecting has been given up (brokerConnectionMaxRetries, or retry off). */
  private gaveUp: ConnectionError | undefined;
  private readonly connectListeners = new Set<(live: Live) => void>();
  private readonly lostListeners = new Set<(epoch: number, err: Error) => void>();
  private lastLogged = '';
  private lastLoggedAt = 0;
  /** Why the connection is down (for error messages), if it is. */
  private lastError: Error | undefined;
  /** Set while RabbitMQ blocks publishing on this connection (resource alarm). */
  blockedReason: string | undefined;

  constructor(options: AmqpConnectionOptions) {
    // The given endpoint object itself stays first: credential rotation updates it in place.
    this.endpoints = options.endpoint.nodes ? [options.endpoint, ...options.endpoint.nodes.slice(1)] : [options.endpoint];
    this.settings = options.settings;
    this.logger = options.logger;
    this.role = options.role;
    if (!fieldTableGuardActive() && !guardWarned) {
      guardWarned = true;
      this.logger.warn('amqplib was loaded before Celeriac, so its header decoding is not depth-limited: a message with absurdly nested headers could make consumers reconnect in a loop — import celeriac before amqplib');
    }
    if (!contentGuardActive() && !contentGuardWarned) {
      contentGuardWarned = true;
      this.logger.warn("amqplib's message assembly could not be guarded (unexpected amqplib version): a message over the body limit is read whole before it is refused — keep RabbitMQ's max_message_size low");
    }
  }

  /** The node connections go to now. */
  private get endpoint(): AmqpEndpoint {
    return this.endpoints[this.node]!;
  }

  /** Move on to the next node of a failover list (after a failed or lost connection). */
  private nextNode(): void {
    if (this.endpoints.length < 2) return;
    const from = this.endpoint.display;
    this.node = (this.node + 1) % this.endpoints.length;
    this.logger.info({ role: this.role, from, to: this.endpoint.display }, `amqp ${this.role} connection fails over from ${from} to ${this.endpoint.display}`);
  }

  /** The live connection, if there is one right now. */
  current(): Live | undefined {
    return this.live;
  }

  /**
   * First connect. Network errors are retried a few times (a broker that
   * is still starting); a refused login or a TLS failure is thrown at once.
   */
  async open(): Promise<Live> {
    if (this.closed) throw new ClosedError(`amqp ${this.role} connection`);
    if (this.live) return this.live;
    if (this.started) return this.ready(Date.now() + this.settings.publishTimeoutMs);
    this.opening ??= (async () => {
      let lastErr: unknown;
      // Each node of a failover list gets its tries; a refused login or certificate stops at once.
      const tries = Math.max(3, this.endpoints.length * 2);
      for (let i = 0; i < tries; i++) {
        try {
          const live = await this.attemptConnect();
          this.started = true;
          return live;
        } catch (err) {
          lastErr = err;
          if (this.closed) break;
          if ((amqpCloseReason(err) ?? classifyConnectionError(err)).kind !== 'network') break;
          this.nextNode();
          await sleep(this.endpoints.length > 1 ? 100 : 200 * 2 ** i);
        }
      }
      throw this.connectionError(lastErr, 'cannot connect');
    })().finally(() => {
      this.opening = undefined;
    });
    return this.opening;
  }

  /**
   * The live connection, waiting (until `deadline`, epoch ms) while it is
   * being re-established. Rejects with `ConnectionError` at the deadline.
   */
  ready(deadline: number): Promise<Live> {
    if (this.closed) return Promise.reject(new ClosedError(`amqp ${this.role} connection`));
    if (this.live) return Promise.resolve(this.live);
    if (this.gaveUp) return Promise.reject(this.gaveUp);
    if (!this.started) return this.open();
    return new Promise<Live>((resolve, reject) => {
      const w: Waiter = { resolve, reject, timer: undefined };
      const ms = deadline - Date.now();
      w.timer = setTimeout(() => {
        this.waiters.delete(w);
        reject(this.connectionError(this.lastError, `broker unreachable for ${Math.round(Math.max(0, ms) / 100) / 10} s`));
      }, Math.max(0, ms));
      this.waiters.add(w);
    });
  }

  /** Called with every new connection (after a reconnect too). Returns the unsubscribe function. */
  onConnect(fn: (live: Live) => void): () => void {
    this.connectListeners.add(fn);
    return () => this.connectListeners.delete(fn);
  }

  /** Called when a connection is lost (not when closed on purpose). */
  onLost(fn: (epoch: number, err: Error) => void): () => void {
    this.lostListeners.add(fn);
    return () => this.lostListeners.delete(fn);
  }

  private async attemptConnect(): Promise<Live> {
    const { endpoint, settings } = this;
    const model = await connect(
      { ...endpoint.connect, heartbeat: settings.heartbeatS },
      {
        ...(endpoint.tls ?? {}),
        timeout: settings.connectTimeoutMs,
        noDelay: true,
        keepAlive: true,
        clientProperties: { connection_name: `celeriac ${this.role} ${hostname()}:${process.pid}`, product: 'celeriac' },
      },
    );
    if (this.closed) {
      await model.close().catch(() => undefined);
      throw new ClosedError(`amqp ${this.role} connection`);
    }
    const live: Live = { model, epoch: ++this.epoch };
    this.live = live;
    const connectedAt = Date.now();
    this.lastError = undefined;
    this.blockedReason = undefined;
    model.on('error', (err: Error) => {
      this.lastError = err;
    });
    model.on('blocked', (reason: string) => {
      this.blockedReason = reason;
      this.logger.warn({ role: this.role, host: endpoint.display, reason }, `RabbitMQ blocked publishing on the ${this.role} connection: ${reason}`);
    });
    model.on('unblocked', () => {
      this.blockedReason = undefined;
      this.logger.info({ role: this.role, host: endpoint.display }, `RabbitMQ unblocked the ${this.role} connection`);
    });
    model.on('close', (err?: Error) => {
      // Back off from zero again only after a connection that held; one that drops at once (a broker
      // refusing us, a poison frame) keeps the delay growing instead of reconnecting in a hot loop.
      if (Date.now() - connectedAt >= STABLE_MS) this.attempt = 0;
      this.onClose(live, err);
    });
    if (live.epoch > 1) this.logger.info({ role: this.role, host: endpoint.display, epoch: live.epoch }, `amqp ${this.role} connection to ${endpoint.display} re-established`);
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.resolve(live);
    }
    this.waiters.clear();
    for (const fn of this.connectListeners) {
      try {
        fn(live);
      } catch (err) {
        this.logger.error({ err, role: this.role }, 'amqp connect listener failed');
      }
    }
    return live;
  }

  private onClose(live: Live, err: Error | undefined): void {
    if (this.live === live) this.live = undefined;
    if (this.closed) return;
    const reason = err ?? this.lastError ?? new Error('connection closed by the broker');
    this.lastError = reason;
    this.report(reason, 'lost');
    for (const fn of this.lostListeners) {
      try {
        fn(live.epoch, reason);
      } catch (e) {
        this.logger.error({ err: e, role: this.role }, 'amqp lost listener failed');
      }
    }
    // The node just lost is likely down: a failover list reconnects to the next one first.
    this.nextNode();
    if (this.settings.retry) this.scheduleReconnect();
    else this.giveUp(this.connectionError(reason, 'connection lost (brokerConnectionRetry is off)'));
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    const { backoffInitialMs, backoffMaxMs, maxRetries } = this.settings;
    if (maxRetries !== undefined && this.attempt >= maxRetries) {
      const err = this.connectionError(this.lastError, `gave up after ${this.attempt} reconnect attempts (brokerConnectionMaxRetries)`);
      this.logger.error({ role: this.role, host: this.endpoint.display }, err.message);
      this.giveUp(err);
      return;
    }
    const base = Math.min(backoffMaxMs, backoffInitialMs * 2 ** this.attempt);
    // ±20 % jitter so that a fleet of workers does not reconnect in lock step.
    const delay = this.attempt === 0 ? 0 : Math.round(base * (0.8 + Math.random() * 0.4));
    this.attempt++;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.attemptConnect().catch((err: unknown) => {
        if (this.closed) return;
        this.lastError = err as Error;
        this.report(err, 'reconnect');
        this.nextNode();
        this.scheduleReconnect();
      });
    }, delay);
  }

  private giveUp(err: ConnectionError): void {
    this.gaveUp = err;
    this.failWaiters(err);
  }

  private failWaiters(err: Error): void {
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.reject(err);
    }
    this.waiters.clear();
  }

  /** Log (rate-limited per distinct reason) and count auth/TLS failures as security events. */
  private report(err: unknown, phase: 'lost' | 'reconnect' | 'connect'): void {
    const c = amqpCloseReason(err) ?? classifyConnectionError(err);
    const key = `${phase}:${c.kind}:${c.code ?? ''}:${c.reason}`;
    const now = Date.now();
    if (c.kind === 'auth' || c.kind === 'tls') {
      recordSecurityEvent(c.kind === 'auth' ? 'auth_failure' : 'tls_failure', { host: this.endpoint.display, reason: c.reason, code: c.code, role: this.role }, key === this.lastLogged && now - this.lastLoggedAt < 10_000 ? undefined : this.logger);
    }
    if (key === this.lastLogged && now - this.lastLoggedAt < 10_000) return;
    this.lastLogged = key;
    this.lastLoggedAt = now;
    const what = phase === 'lost' ? 'lost' : 'reconnect failed';
    this.logger.warn({ role: this.role, host: this.endpoint.display, code: c.code }, `amqp ${this.role} connection to ${this.endpoint.display} ${what}: ${c.reason} — ${phase === 'lost' ? 'reconnecting' : c.hint}`);
  }

  /** A secret-free `ConnectionError` for `err`. */
  connectionError(err: unknown, what: string): ConnectionError {
    const c = amqpCloseReason(err) ?? classifyConnectionError(err ?? new Error('not connected'));
    if (c.kind === 'auth' || c.kind === 'tls') {
      if (what === 'cannot connect') recordSecurityEvent(c.kind === 'auth' ? 'auth_failure' : 'tls_failure', { host: this.endpoint.display, reason: c.reason, code: c.code, role: this.role }, this.logger);
    }
    return new ConnectionError(`amqp ${this.role} ${what} (${this.endpoint.display}): ${c.reason}`, {
      hint: c.hint,
      code: c.kind === 'auth' ? 'ERR_AUTH' : c.kind === 'tls' ? 'ERR_TLS' : 'ERR_CONNECTION',
    });
  }

  /** Close for good. Waiters fail with `ClosedError`. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.failWaiters(new ClosedError(`amqp ${this.role} connection`));
    const live = this.live;
    this.live = undefined;
    if (live) await live.model.close().catch(() => undefined);
  }
}

/** AMQP connection-close codes worth naming (the server's free text is not logged). */
const CLOSE_CODES: Record<number, [string, string]> = {
  320: ['the broker closed the connection (CONNECTION_FORCED: broker shutdown or an operator)', 'reconnecting'],
  501: ['the broker reported a framing error', 'check for a proxy or load balancer in the path'],
  530: ['the user may not access this virtual host', 'rabbitmqctl set_permissions -p <vhost> <user> …, or fix the vhost in the URL'],
  541: ['the broker reported an internal error', 'check the broker logs'],
};

function amqpCloseReason(err: unknown): ReturnType<typeof classifyConnectionError> | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  const known = typeof code === 'number' ? CLOSE_CODES[code] : undefined;
  if (!known) {
    if (err instanceof Error && /heartbeat timeout/i.test(err.message)) return { kind: 'network', reason: 'missed heartbeats', hint: 'the broker or the network stalled', code: 'HEARTBEAT' };
    // RabbitMQ answers connection.open for a vhost the user may not use (or that does not exist) with a close
    // (530 NOT_ALLOWED); amqplib reports only that the close came instead of open-ok.
    if (err instanceof Error && /Expected ConnectionOpenOk; got <ConnectionClose/.test(err.message)) {
      const [reason, hint] = CLOSE_CODES[530]!;
      return { kind: 'auth', reason: `${reason} (or it does not exist)`, hint, code: 'NOT_ALLOWED' };
    }
    return undefined;
  }
  return { kind: code === 530 ? 'auth' : 'network', reason: known[0], hint: known[1], code: String(code) };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
