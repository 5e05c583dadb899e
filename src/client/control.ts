/**
 * `app.control`: Celery's remote-control client (pidbox) in camelCase.
 * A command is one JSON message broadcast on `celery.pidbox`; workers that
 * accept it answer `{hostname: reply}` on the client's own reply queue
 * (`<oid>.reply.celery.pidbox`, routing key `<oid>`), tagged with the
 * request's `ticket`. Formats are Celery 5.2.6's (test/fixtures/celery-5.2.6/pidbox),
 * so Python workers answer Celeriac and the other way round.
 */
import { randomUUID } from 'node:crypto';
import { controlExchange, replyExchange, replyQueueName, type Broker } from '../core/broker.ts';
import type { WireMessage } from '../protocol/types.ts';
import { ConfigError } from '../errors.ts';

/** Celery's default wait for replies, ms (`timeout=1.0`). */
export const DEFAULT_CONTROL_TIMEOUT_MS = 1000;

/** One worker's answer to a command: `{ hostname: reply }`. */
export type ControlReply = Record<string, unknown>;

/** Where and how long a command goes. */
export interface DestinationOptions {
  /** Only these nodes answer (`name@host`); default every worker. */
  destination?: readonly string[] | string;
  /** Wait this long for replies (ms); default 1000. */
  timeoutMs?: number;
}

/** Options of `Control.broadcast`. */
export interface BroadcastOptions extends DestinationOptions {
  /** Collect replies (default false: fire and forget, as Celery's `reply=False`). */
  reply?: boolean;
  /** Stop after this many replies; default the number of destinations, else until the timeout. */
  limit?: number;
}

/** Options of `Control.revoke`. */
export interface RevokeOptions extends BroadcastOptions {
  /** Also stop the task if it is running (Celery's `terminate`). */
  terminate?: boolean;
  /** Signal sent to a running task with `terminate` (default `SIGTERM`). */
  signal?: string;
}

/** A control message signer (the control guard's `sign`). */
export type ControlSigner = (message: WireMessage) => WireMessage | Promise<WireMessage>;

/** Options of `createControl`. */
export interface ControlOptions {
  /** The broker, connected on first use (the app's). */
  broker: () => Promise<Broker>;
  /** Celery's `control_exchange` (default `celery`). */
  controlExchangeName?: string;
  /** Sign each command before it is sent (control messages signed like tasks). */
  sign?: ControlSigner;
}

/** Inspect commands: read-only questions to workers, answered `{hostname: reply}`. */
export interface Inspect {
  ping(): Promise<Record<string, unknown>>;
  stats(): Promise<Record<string, unknown>>;
  active(): Promise<Record<string, unknown>>;
  reserved(): Promise<Record<string, unknown>>;
  scheduled(): Promise<Record<string, unknown>>;
  registered(...taskinfoitems: string[]): Promise<Record<string, unknown>>;
  revoked(): Promise<Record<string, unknown>>;
  activeQueues(): Promise<Record<string, unknown>>;
  queryTask(ids: readonly string[] | string): Promise<Record<string, unknown>>;
  conf(withDefaults?: boolean): Promise<Record<string, unknown>>;
  /** Any inspect command by its wire name, e.g. `('objgraph', {})`. */
  call(method: string, args?: Record<string, unknown>): Promise<Record<string, unknown>>;
}

/**
 * The remote-control client. Replies are lists of `{hostname: reply}`, as
 * Celery's; as in Celery, control commands other than `ping` are sent
 * without waiting for replies unless `reply: true`.
 */
export interface Control {
  inspect(options?: DestinationOptions): Inspect;
  /** Send any command; with `reply`, resolves with the replies collected until the timeout or limit. */
  broadcast(method: string, args?: Record<string, unknown>, options?: BroadcastOptions): Promise<ControlReply[]>;
  ping(options?: DestinationOptions): Promise<ControlReply[]>;
  revoke(taskId: string | readonly string[], options?: RevokeOptions): Promise<ControlReply[]>;
  /** Set a task's rate limit on workers (`'10/m'`, `'5/s'`, `'100/h'`, or a number per second). */
  rateLimit(taskName: string, rate: string | number, options?: BroadcastOptions): Promise<ControlReply[]>;
  /** Set a task's time limits (seconds). */
  timeLimit(taskName: string, limits: { soft?: number; hard?: number }, options?: BroadcastOptions): Promise<ControlReply[]>;
  /** Ask workers to shut down (warm). */
  shutdown(options?: BroadcastOptions): Promise<ControlReply[]>;
  poolGrow(n?: number, options?: BroadcastOptions): Promise<ControlReply[]>;
  poolShrink(n?: number, options?: BroadcastOptions): Promise<ControlReply[]>;
  /** Start consuming a queue (resume). */
  addConsumer(queue: string, options?: BroadcastOptions & { exchange?: string; exchangeType?: string; routingKey?: string }): Promise<ControlReply[]>;
  /** Stop consuming a queue (pause). */
  cancelConsumer(queue: string, options?: BroadcastOptions): Promise<ControlReply[]>;
  enableEvents(options?: BroadcastOptions): Promise<ControlReply[]>;
  disableEvents(options?: BroadcastOptions): Promise<ControlReply[]>;
  heartbeat(options?: BroadcastOptions): Promise<ControlReply[]>;
}

/** The pidbox request body, Celery's field order. */
export function pidboxRequest(input: {
  method: string;
  args: Record<string, unknown>;
  destination: readonly string[] | null;
  ticket?: string;
  replyTo?: { exchange: string; routingKey: string };
}): Record<string, unknown> {
  const body: Record<string, unknown> = { method: input.method, arguments: input.args, destination: input.destination, pattern: null, matcher: null };
  if (input.ticket && input.replyTo) {
    body.ticket = input.ticket;
    body.reply_to = { exchange: input.replyTo.exchange, routing_key: input.replyTo.routingKey };
  }
  return body;
}

function destinations(d: DestinationOptions['destination']): string[] | null {
  if (d === undefined) return null;
  const list = typeof d === 'string' ? [d] : [...d];
  return list.length ? list : null;
}

/** Merge `[{a: x}, {b: y}]` into `{a: x, b: y}` (Celery's inspect result). */
function merge(replies: ControlReply[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const r of replies) Object.assign(out, r);
  return out;
}

/** Create the control client over a broker's fanout API. */
export function createControl(options: ControlOptions): Control {
  const exchangeName = options.controlExchangeName ?? 'celery';
  let clock = 0;

  async function broadcast(method: string, args: Record<string, unknown> = {}, opts: BroadcastOptions = {}): Promise<ControlReply[]> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_CONTROL_TIMEOUT_MS;
    if (!(timeoutMs > 0)) throw new ConfigError(`control timeout must be a positive number of ms, got ${timeoutMs}`, { hint: 'pass timeoutMs > 0 (Celery waits 1000 ms)' });
    const dest = destinations(opts.destination);
    const broker = await options.broker();
    const oid = randomUUID();
    const ticket = opts.reply ? randomUUID() : undefined;
    const replies = opts.reply ? await broker.openReplyQueue(replyExchange(exchangeName), oid, { queue: replyQueueName(oid, exchangeName) }) : undefined;
    try {
      const body = pidboxRequest({ method, args, destination: dest, ticket, replyTo: ticket ? { exchange: replyExchange(exchangeName).name, routingKey: oid } : undefined });
      let message: WireMessage = {
        headers: { clock: ++clock, expires: Date.now() / 1000 + timeoutMs / 1000 },
        properties: { delivery_mode: 2, priority: 0 },
        contentType: 'application/json',
        contentEncoding: 'utf-8',
        body: Buffer.from(JSON.stringify(body)),
      };
      if (options.sign) message = await options.sign(message);
      await broker.broadcast(controlExchange(exchangeName), '', message);
      if (!replies) return [];
      const limit = opts.limit ?? dest?.length;
      const out: ControlReply[] = [];
      const deadline = Date.now() + timeoutMs;
      while (limit === undefined || out.length < limit) {
        const left = deadline - Date.now();
        if (left <= 0) break;
        const d = await replies.receive(left);
        if (!d) break;
        // Another client's reply on a reused oid, or a late one: only our ticket counts.
        if (d.message.headers.ticket !== ticket) continue;
        let reply: unknown;
        try {
          reply = JSON.parse(d.message.body.toString('utf8'));
        } catch {
          continue;
        }
        if (reply && typeof reply === 'object' && !Array.isArray(reply)) out.push(reply as ControlReply);
      }
      return out;
    } finally {
      await replies?.close();
    }
  }

  return {
    broadcast,
    inspect(io: DestinationOptions = {}): Inspect {
      const ask = async (method: string, args: Record<string, unknown> = {}): Promise<Record<string, unknown>> => merge(await broadcast(method, args, { ...io, reply: true }));
      return {
        ping: () => ask('ping'),
        stats: () => ask('stats'),
        active: () => ask('active', { safe: null }),
        reserved: () => ask('reserved', { safe: null }),
        scheduled: () => ask('scheduled', { safe: null }),
        registered: (...items: string[]) => ask('registered', { taskinfoitems: items }),
        revoked: () => ask('revoked'),
        activeQueues: () => ask('active_queues'),
        queryTask: (ids) => ask('query_task', { ids: typeof ids === 'string' ? [ids] : [...ids] }),
        conf: (withDefaults = false) => ask('conf', { with_defaults: withDefaults }),
        call: ask,
      };
    },
    ping: (o) => broadcast('ping', {}, { ...o, reply: true }),
    revoke: (taskId, o = {}) =>
      broadcast('revoke', { task_id: typeof taskId === 'string' ? taskId : [...taskId], terminate: o.terminate ?? false, signal: o.signal ?? 'SIGTERM' }, o),
    rateLimit: (taskName, rate, o) => broadcast('rate_limit', { task_name: taskName, rate_limit: rate }, o),
    timeLimit: (taskName, limits, o) => broadcast('time_limit', { task_name: taskName, hard: limits.hard ?? null, soft: limits.soft ?? null }, o),
    shutdown: (o) => broadcast('shutdown', {}, o),
    poolGrow: (n = 1, o) => broadcast('pool_grow', { n }, o),
    poolShrink: (n = 1, o) => broadcast('pool_shrink', { n }, o),
    addConsumer: (queue, o = {}) =>
      broadcast('add_consumer', { queue, exchange: o.exchange ?? null, exchange_type: o.exchangeType ?? 'direct', routing_key: o.routingKey ?? null }, o),
    cancelConsumer: (queue, o) => broadcast('cancel_consumer', { queue }, o),
    enableEvents: (o) => broadcast('enable_events', {}, o),
    disableEvents: (o) => broadcast('disable_events', {}, o),
    heartbeat: (o) => broadcast('heartbeat', {}, o),
  };
}
