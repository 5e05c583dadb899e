/**
 * A node's mailbox (Celery's pidbox), whoever the node is: subscribes to
 * the control exchange under `<node>.celery.pidbox`, drops expired messages
 * and those for other nodes, asks the guard, runs the command and replies
 * `{node: result}` on the reply exchange as Celery 5.2.6 does.
 *
 * Shared by workers (src/worker/control/) and `celeriac beat`
 * (src/beat/control.ts); each brings its own command table. The guard is
 * handed in (src/security/control-guard.ts builds it), so a beat and a
 * worker of one deployment verify control messages with the same rules.
 */
import { controlExchange, controlQueueName, replyExchange, type BroadcastDelivery, type Broker, type Subscription } from '../core/broker.ts';
import type { Logger } from '../observability/logging.ts';
import { recordSecurityEvent } from '../observability/security-events.ts';
import type { WireMessage } from '../protocol/types.ts';

/** A control request as Celery's `Mailbox._broadcast` writes it. */
export interface ControlRequest {
  method: string;
  arguments: Record<string, unknown>;
  destination: string[] | null;
  pattern: string | null;
  matcher: string | null;
  ticket: string | null;
  replyTo: { exchange: string; routingKey: string } | null;
}

/** One command a mailbox answers. */
export interface MailboxCommand {
  /** False when Celery sends no reply (shutdown). */
  replies?: boolean;
  /** The reply; a throw becomes `{error: message}`. `clock` advances the node's Lamport clock. */
  run(args: Record<string, unknown>, clock: () => number): unknown | Promise<unknown>;
}

/** The guard's decision (security/control-guard.ts `ControlAdmission`). */
export type MailboxAdmission = { allowed: true; who: string } | { allowed: false; reason: string };

/**
 * What the mailbox needs of the control guard (security/control-guard.ts's
 * `ControlGuard` has this shape): admit or refuse a message, audit the
 * answer, close.
 */
export interface MailboxGuard {
  /** Counts, logs and audits a refusal, and audits every command it lets through. */
  admit(message: { message: WireMessage; body?: Readonly<Record<string, unknown>> | undefined }, method: string): Promise<MailboxAdmission>;
  audit(entry: { kind: 'reply'; who?: string; method: string; ticket?: string; outcome: 'answered' | 'failed'; reason?: string; reply?: unknown }): void;
  close(): Promise<void>;
}

/** Options of {@link startMailbox}. */
export interface MailboxOptions {
  broker: Broker;
  /** This node's name (`name@host`): its queue and the key of its replies. */
  nodeName: string;
  /** The command of a method name, or undefined when this node has none. */
  command(method: string): MailboxCommand | undefined;
  /**
   * The reply to a method the node has no command for; default kombu's
   * (`{error: "KeyError('<method>')"}`, the repr of the missing handler).
   */
  unknown?: (method: string) => { error: string };
  guard: MailboxGuard;
  logger: Logger;
  /** Celery's `control_exchange` (default `celery`). */
  exchangeName?: string;
  /**
   * Act on these methods only, on a queue of its own (`<node>.<pid>`), and
   * never reply (a prefork child: its supervisor answers for the node).
   */
  listenOnly?: readonly string[];
}

/** A running mailbox. */
export interface ControlServer {
  /** Messages dropped because they could not be read. */
  readonly malformed: number;
  close(): Promise<void>;
}

const MAX_BODY = 1 << 20;

/** Read a control message; a string saying why when it is not one. */
export function parseControlRequest(message: WireMessage): ControlRequest | string {
  if (message.contentType !== 'application/json') return `content type ${JSON.stringify(message.contentType)} not accepted for control`;
  if (message.body.length > MAX_BODY) return 'control message too large';
  let v: unknown;
  try {
    v = JSON.parse(message.body.toString('utf8'));
  } catch {
    return 'control message is not JSON';
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'control message is not an object';
  const o = v as Record<string, unknown>;
  if (typeof o.method !== 'string' || o.method.length === 0 || o.method.length > 100) return 'control message has no method';
  const args = o.arguments ?? {};
  if (typeof args !== 'object' || args === null || Array.isArray(args)) return 'control arguments are not an object';
  const dest = o.destination ?? null;
  if (dest !== null && !(Array.isArray(dest) && dest.every((d) => typeof d === 'string'))) return 'control destination is not a list of names';
  const rt = o.reply_to as { exchange?: unknown; routing_key?: unknown } | null | undefined;
  const replyTo = rt && typeof rt === 'object' && typeof rt.exchange === 'string' && typeof rt.routing_key === 'string' ? { exchange: rt.exchange, routingKey: rt.routing_key } : null;
  return {
    method: o.method,
    arguments: args as Record<string, unknown>,
    destination: dest as string[] | null,
    pattern: typeof o.pattern === 'string' ? o.pattern : null,
    matcher: typeof o.matcher === 'string' ? o.matcher : null,
    ticket: typeof o.ticket === 'string' ? o.ticket : null,
    replyTo,
  };
}

/** Whether the request is for `node` (Celery: destination list, else pattern with a `glob` or `pcre` matcher, else everyone). */
export function isForNode(req: ControlRequest, node: string): boolean {
  if (req.destination && req.destination.length > 0) return req.destination.includes(node);
  if (req.pattern) {
    if (req.matcher === 'pcre') {
      try {
        return new RegExp(req.pattern).test(node);
      } catch {
        return false;
      }
    }
    const re = new RegExp(`^${req.pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
    return re.test(node);
  }
  return true;
}

/** Celery's `expires` header (seconds since the epoch): true once passed. */
export function isExpired(message: WireMessage, now = Date.now()): boolean {
  const e = message.headers.expires;
  return typeof e === 'number' && e * 1000 < now;
}

/** kombu's answer to a method without a handler: the repr of the KeyError. */
export function unknownCommandReply(method: string): { error: string } {
  return { error: `KeyError('${method.replace(/['\\]/g, '\\$&')}')` };
}

/** Start answering control messages addressed to `nodeName`. */
export async function startMailbox(options: MailboxOptions): Promise<ControlServer> {
  const { broker, nodeName, guard, logger } = options;
  const exName = options.exchangeName ?? 'celery';
  const unknown = options.unknown ?? unknownCommandReply;
  let clock = 0;
  let malformed = 0;
  const drop = (reason: string, routingKey: string): void => {
    malformed++;
    logger.warn({ reason, routingKey }, `control message dropped: ${reason}`);
    recordSecurityEvent('malformed_message', { reason, queue: controlQueueName(nodeName, exName) }, logger);
  };
  const reply = (req: ControlRequest, result: unknown): Promise<void> => {
    if (!req.replyTo) return Promise.resolve();
    const message: WireMessage = {
      headers: { ticket: req.ticket, clock: ++clock },
      properties: { delivery_mode: 1, priority: 0 },
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      body: Buffer.from(JSON.stringify({ [nodeName]: result === undefined ? null : result })),
    };
    return broker.sendReply(replyExchange(exName), req.replyTo.routingKey, message);
  };
  const handle = async (d: BroadcastDelivery): Promise<void> => {
    const req = parseControlRequest(d.message);
    if (typeof req === 'string') return drop(req, d.routingKey);
    if (typeof d.message.headers.clock === 'number') clock = Math.max(clock, d.message.headers.clock);
    if (!isForNode(req, nodeName) || isExpired(d.message)) return;
    if (options.listenOnly && !options.listenOnly.includes(req.method)) return;
    const spec = options.command(req.method);
    // The guard counts, logs and audits a refusal, and audits every command it lets through.
    const admission = await guard.admit({ message: d.message, body: { method: req.method, arguments: req.arguments, ticket: req.ticket } }, req.method);
    if (!admission.allowed) return;
    const ticket = req.ticket ?? undefined;
    if (!spec) {
      if (options.listenOnly) return;
      const answer = unknown(req.method);
      logger.warn({ method: req.method }, `unknown control command ${JSON.stringify(req.method)}`);
      guard.audit({ kind: 'reply', who: admission.who, method: req.method, ticket, outcome: 'failed', reason: options.unknown ? answer.error : 'unknown control command' });
      await reply(req, answer);
      return;
    }
    let result: unknown;
    try {
      result = await spec.run(req.arguments, () => ++clock);
      guard.audit({ kind: 'reply', who: admission.who, method: req.method, ticket, outcome: 'answered', reply: result });
    } catch (err) {
      logger.error({ err, method: req.method }, `control command ${req.method} failed`);
      guard.audit({ kind: 'reply', who: admission.who, method: req.method, ticket, outcome: 'failed', reason: (err as Error).message });
      result = { error: (err as Error).message };
    }
    if (spec.replies !== false && !options.listenOnly) await reply(req, result);
  };
  const sub: Subscription = await broker.subscribe(
    controlExchange(exName),
    {
      queue: options.listenOnly ? controlQueueName(`${nodeName}.${process.pid}`, exName) : controlQueueName(nodeName, exName),
      onMalformed: (m) => drop(m.reason, m.routingKey),
      onError: (err) => logger.warn({ err }, 'control subscription error; recovering'),
    },
    (d) => void handle(d).catch((err: unknown) => logger.error({ err }, 'control reply failed')),
  );
  return {
    get malformed() {
      return malformed;
    },
    close: async () => {
      await sub.close();
      await guard.close();
    },
  };
}
