/**
 * The Producer: the one way a task message reaches the broker, for the
 * client (`delay`, `applyAsync`, `sendTask`, `sendMany`) and for the
 * worker's follow-ups (retries, chain steps, link callbacks, errbacks).
 * It routes, builds, signs, applies the submission limits (send rate
 * limits and queue caps, CEL-019) and publishes, so a follow-up is held to
 * the same rules as a `delay()`.
 */
import type { Broker, OutboxPublish, PublishItem } from '../core/broker.ts';
import type { ResolvedSettings } from '../config/options.ts';
import type { Serializer } from '../codec/serializers.ts';
import { ClosedError, DecodeError } from '../errors.ts';
import { newId } from '../protocol/ids.ts';
import { buildTaskMessage, type TaskMessageInput } from '../protocol/task-message.ts';
import type { SignatureDict, WireMessage } from '../protocol/types.ts';
import { maybeCurrentTask } from '../core/task-context.ts';
import type { SubmissionDemand, SubmissionLimits } from './submission-limits.ts';
import { validateArguments, type SendOptions, type TaskDefinition } from './task.ts';
import { sendTaskSent, type SentEvents } from './sent-events.ts';
import { checkSendOptions, messageFieldsOf } from './send-options.ts';
import type { Logger } from '../observability/logging.ts';
import type { SendSpan, Tracing } from '../observability/tracing/index.ts';

/** What a Producer needs from its app. */
export interface ProducerOptions {
  settings: ResolvedSettings;
  /** Registered tasks: their `queue`, `priority`, `expires`, limits and schemas apply to every send. */
  registry: ReadonlyMap<string, TaskDefinition>;
  serializer: Serializer;
  /** Signs a built message; read at each send (undefined: signing is off). */
  signer: () => ((message: WireMessage) => WireMessage) | undefined;
  submission: SubmissionLimits;
  /** The connected broker when there is one (sends skip an await), else undefined. */
  brokerReady: () => Broker | undefined;
  /** The broker, connected on first use. */
  broker: () => Promise<Broker>;
  /** True once the app is closed: sends fail with `ClosedError`. */
  closed: () => boolean;
  /** For events that could not be sent (`taskSendSentEvent`). */
  logger?: Logger;
  /** OpenTelemetry hooks once loaded (`telemetryTracing`); undefined when off. */
  tracing?: () => Tracing | undefined;
}

/** Where a message goes: its queue and its priority (undefined: none was set). */
export interface Route {
  queue: string;
  priority: number | undefined;
}

/** A follow-up message the worker sends: its content, and a queue when the signature or the retry names one. */
export interface FollowUpSend {
  input: TaskMessageInput;
  /** Explicit queue (a retry's own queue, a signature's `queue` option); otherwise the task is routed. */
  queue?: string | undefined;
}

/** Sends follow-ups for a worker (the part of the Producer a worker sees). */
export interface FollowUpSender {
  /** Route, cap, sign and publish one follow-up; rejects as `delay()` would (e.g. `QueueFullError`, `RateLimitedError`). */
  sendFollowUp(follow: FollowUpSend): Promise<void>;
}

/**
 * A task message built and signed but not yet sent (`App.prepareSend`).
 * Exactly one of `publish`, `written` or `abandon` should follow.
 */
export interface PreparedSend {
  /** The task id. */
  readonly id: string;
  /** The queue it is routed to. */
  readonly queue: string;
  /**
   * The publish as the broker's engine hands it to a store on the same
   * server or file, which may write it in its own atomic step (undefined:
   * this broker or this queue cannot hand it over; use `publish`).
   */
  readonly outbox: OutboxPublish | undefined;
  /** Publish it through the broker now. */
  publish(): Promise<void>;
  /** The caller's store wrote `outbox`: finish as a send would (events, trace span, waking consumers). */
  written(): Promise<void>;
  /** It will not be sent (e.g. another instance already sent this tick). */
  abandon(reason?: unknown): void;
  /** The message as text, to keep until its publish is confirmed; `App.publishKept` sends it again. */
  keep(): string;
}

/** What `PreparedSend.keep` writes (version 1). */
interface KeptSend {
  v: 1;
  queue: string;
  priority: number | undefined;
  headers: Record<string, unknown>;
  properties: Record<string, unknown>;
  contentType: string;
  contentEncoding: string;
  body: string;
}

/** A kept message as text (the body base64). */
export function keepSend(item: PublishItem): string {
  const { message } = item;
  const kept: KeptSend = {
    v: 1,
    queue: item.queue,
    priority: item.options?.priority,
    headers: message.headers,
    properties: message.properties as unknown as Record<string, unknown>,
    contentType: message.contentType,
    contentEncoding: message.contentEncoding,
    body: message.body.toString('base64'),
  };
  return JSON.stringify(kept);
}

/** Read what `keepSend` wrote; a `DecodeError` when it is not that. */
export function readKeptSend(text: string): { queue: string; priority: number | undefined; message: WireMessage } {
  let k: Partial<KeptSend>;
  try {
    k = JSON.parse(text) as Partial<KeptSend>;
  } catch {
    throw new DecodeError('a kept message is not JSON');
  }
  const obj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (k.v !== 1 || typeof k.queue !== 'string' || !obj(k.headers) || !obj(k.properties) || typeof k.contentType !== 'string' || typeof k.contentEncoding !== 'string' || typeof k.body !== 'string') {
    throw new DecodeError('a kept message does not have the shape PreparedSend.keep writes');
  }
  if (k.priority !== undefined && typeof k.priority !== 'number') throw new DecodeError('a kept message has a priority that is not a number');
  return {
    queue: k.queue,
    priority: k.priority,
    message: { headers: k.headers, properties: k.properties as unknown as WireMessage['properties'], contentType: k.contentType, contentEncoding: k.contentEncoding, body: Buffer.from(k.body, 'base64') },
  };
}

/** Route, build, sign, cap and publish task messages (see the module comment). */

/** Route, build, sign, cap and publish task messages (see the module comment). */
export class Producer implements FollowUpSender {
  /** The `task-sent` dispatcher, made on first use. */
  private readonly sentEvents: SentEvents = { dispatcher: undefined };
  constructor(private readonly o: ProducerOptions) {}

  private def(task: string): TaskDefinition | undefined {
    return this.o.registry.get(task);
  }

  /**
   * Route a task: the explicit queue and priority first, then the task's own
   * options, then `taskRoutes`, then `taskDefaultQueue`.
   */
  route(task: string, explicit: { queue?: string | undefined; priority?: number | undefined }, def: TaskDefinition | undefined = this.def(task)): Route {
    const route = this.o.settings.taskRoutes[task];
    return {
      queue: explicit.queue ?? def?.options.queue ?? route?.queue ?? this.o.settings.taskDefaultQueue,
      priority: explicit.priority ?? def?.options.priority ?? route?.priority,
    };
  }

  /** Build (and sign, when signing is on) a task message. */
  buildMessage(input: TaskMessageInput): WireMessage {
    const message = buildTaskMessage(input, this.o.serializer);
    const sign = this.o.signer();
    return sign ? sign(message) : message;
  }

  /** Publish options of a queue: the priority and, when the queue is capped, its `maxLength`. `sent`: announce `task-sent` now (an outbox send announces it once written). */
  private publishItem(queue: string, message: WireMessage, priority: number, sent = true): PublishItem {
    const maxLength = this.o.submission.maxLengthFor(queue);
    if (sent) this.announceSent(queue, message);
    return { queue, message, options: { priority, ...(maxLength !== undefined ? { maxLength } : {}) } };
  }

  private announceSent(queue: string, message: WireMessage): void {
    if (this.o.settings.taskSendSentEvent) sendTaskSent(this.sentEvents, this.o, queue, message);
  }

  /** Take send tokens (client and per-task limits); throws `RateLimitedError` when over a limit. */
  private async acquire(demands: SubmissionDemand[]): Promise<void> {
    if (this.o.closed()) throw new ClosedError('app');
    await this.o.submission.acquire(demands);
  }

  /** True when a send of this task may have to take a token (otherwise the send path skips that await). */
  private limited(def: TaskDefinition | undefined): boolean {
    return this.o.submission.rateLimited || def?.options.sendRateLimit !== undefined;
  }

  /**
   * Send one call of a task; once the broker holds the message, resolves
   * with `result(id)` (computed in the same step: no extra await per send).
   */
  async send<R>(def: TaskDefinition, args: readonly unknown[], kwargs: Readonly<Record<string, unknown>>, options: SendOptions, result: (id: string) => R | Promise<R>): Promise<R> {
    const broker = this.o.brokerReady() ?? (await this.o.broker());
    // Before building: a client over its limit fails fast without paying for signing.
    if (this.limited(def)) await this.acquire([{ task: def.name, limit: def.options.sendRateLimit, count: 1 }]);
    const { item, id, span } = this.prepare(def, args, kwargs, options, Date.now());
    await (span ? traced(span, broker.publish(item.queue, item.message, item.options)) : broker.publish(item.queue, item.message, item.options));
    return result(id);
  }

  /** Send many calls through a connected broker, in one round trip where the broker allows; all tokens are taken at once or none. */
  async sendMany(broker: Broker, calls: ReadonlyArray<{ def: TaskDefinition; args: readonly unknown[]; kwargs: Readonly<Record<string, unknown>>; options: SendOptions }>): Promise<string[]> {
    await this.acquire(calls.map((c) => ({ task: c.def.name, limit: c.def.options.sendRateLimit, count: 1 })));
    const items: PublishItem[] = [];
    const ids: string[] = [];
    const spans: SendSpan[] = [];
    const now = Date.now();
    for (const c of calls) {
      const { item, id, span } = this.prepare(c.def, c.args, c.kwargs, c.options, now);
      items.push(item);
      ids.push(id);
      if (span) spans.push(span);
    }
    await (spans.length > 0 ? tracedAll(spans, broker.publishMany(items)) : broker.publishMany(items));
    return ids;
  }

  /**
   * Build one call as `send` would (limits taken, validated, routed,
   * signed) without publishing it: the caller writes it with a record of
   * its own when the broker hands over an outbox publish, or publishes it.
   */
  async prepareSend(def: TaskDefinition, args: readonly unknown[], kwargs: Readonly<Record<string, unknown>>, options: SendOptions): Promise<PreparedSend> {
    const broker = this.o.brokerReady() ?? (await this.o.broker());
    if (this.limited(def)) await this.acquire([{ task: def.name, limit: def.options.sendRateLimit, count: 1 }]);
    const { item, id, span } = this.prepare(def, args, kwargs, options, Date.now(), false);
    let outbox: OutboxPublish | undefined;
    try {
      outbox = await broker.prepareOutbox?.(item);
    } catch (err) {
      span?.end(err);
      throw err;
    }
    let settled = false;
    const settle = (err?: unknown): void => {
      if (settled) return;
      settled = true;
      span?.end(err);
    };
    return {
      id,
      queue: item.queue,
      outbox,
      publish: async () => {
        try {
          await broker.publish(item.queue, item.message, item.options);
        } catch (err) {
          settle(err);
          throw err;
        }
        this.announceSent(item.queue, item.message);
        settle();
      },
      written: async () => {
        this.announceSent(item.queue, item.message);
        settle();
        await outbox?.afterCommit();
      },
      abandon: (err?: unknown) => settle(err ?? new Error('not sent: the caller did not write it')),
      keep: () => keepSend(item),
    };
  }

  /** Build the message for one client call (validation, routing, ids from the running task). */
  private prepare(def: TaskDefinition, args: readonly unknown[], kwargs: Readonly<Record<string, unknown>>, options: SendOptions, now: number, sent = true): { item: PublishItem; id: string; span?: SendSpan | undefined } {
    if (this.o.closed()) throw new ClosedError('app');
    checkSendOptions(options);
    const checked = validateArguments(def, args, kwargs);
    const id = options.taskId ?? newId();
    const parent = maybeCurrentTask()?.request;
    const { queue, priority } = this.route(def.name, options, def);
    const expiresOpt = options.expires ?? def.options.expires;
    const span = this.o.tracing?.()?.send({ task: def.name, id, queue });
    const input: TaskMessageInput = {
      task: def.name,
      id,
      args: checked.args,
      kwargs: checked.kwargs,
      eta: toEpoch(options.eta) ?? (options.countdown !== undefined ? now + options.countdown * 1000 : null),
      expires: expiresOpt === undefined ? null : typeof expiresOpt === 'number' ? now + expiresOpt * 1000 : expiresOpt.getTime(),
      timeLimit: [options.timeLimit ?? def.options.timeLimit ?? null, options.softTimeLimit ?? def.options.softTimeLimit ?? null],
      rootId: options.rootId ?? parent?.rootId ?? id,
      parentId: options.parentId ?? parent?.id ?? null,
      shadow: options.shadow ?? null,
      ignoreResult: options.ignoreResult ?? def.options.ignoreResult ?? false,
      priority: priority ?? 0,
      now,
      ...(options.compression !== undefined ? { compression: options.compression } : {}),
      ...messageFieldsOf(options),
      ...(options.link !== undefined || options.linkError !== undefined ? { embed: { callbacks: linked(options.link), errbacks: linked(options.linkError) } } : {}),
      ...(span ? { extraHeaders: span.headers } : {}),
    };
    if (!span) return { item: this.publishItem(queue, this.buildMessage(input), priority ?? 0, sent), id };
    try {
      return { item: this.publishItem(queue, this.buildMessage(input), priority ?? 0, sent), id, span };
    } catch (err) {
      // Building or signing failed: the send span ends here, with the error.
      span.end(err);
      throw err;
    }
  }

  /**
   * Send a worker's follow-up like a `delay()` of its task: routed (an
   * explicit queue first, then the task's `queue` option, `taskRoutes`,
   * `taskDefaultQueue`), rate-limited, signed and capped.
   */
  async sendFollowUp(follow: FollowUpSend): Promise<void> {
    const { input } = follow;
    const def = this.def(input.task);
    const broker = this.o.brokerReady() ?? (await this.o.broker());
    if (this.limited(def)) await this.acquire([{ task: input.task, limit: def?.options.sendRateLimit, count: 1 }]);
    const { queue, priority } = this.route(input.task, { queue: follow.queue, priority: input.priority }, def);
    // Traced: a retry or chain step gets its own send span; its trace context replaces any the input carried over.
    const span = this.o.tracing?.()?.send({ task: input.task, id: input.id, queue, retries: input.retries });
    const withRoute = priority === input.priority ? input : { ...input, priority };
    if (!span) {
      const message = this.buildMessage(withRoute);
      const item = this.publishItem(queue, message, priority ?? message.properties.priority ?? 0);
      await broker.publish(item.queue, item.message, item.options);
      return;
    }
    let item: PublishItem;
    try {
      const message = this.buildMessage({ ...withRoute, extraHeaders: { ...withRoute.extraHeaders, ...span.headers } });
      item = this.publishItem(queue, message, priority ?? message.properties.priority ?? 0);
    } catch (err) {
      span.end(err);
      throw err;
    }
    await traced(span, broker.publish(item.queue, item.message, item.options));
  }

  /** Publish an already-built message to a queue (its cap applies). */
  async publish(queue: string, message: WireMessage, priority?: number): Promise<void> {
    const broker = await this.o.broker();
    const item = this.publishItem(queue, message, priority ?? message.properties.priority ?? 0);
    await broker.publish(item.queue, item.message, item.options);
  }
}

/** Send-time `link`/`linkError` as the embed's signature list (null when none). */
function linked(v: SendOptions['link']): SignatureDict[] | null {
  if (v === undefined) return null;
  const list = (Array.isArray(v) ? v : [v]) as ReadonlyArray<{ toDict(): SignatureDict }>;
  return list.length > 0 ? list.map((s) => s.toDict()) : null;
}

/** End a send span when its publish settles (with the error when it fails). */
function traced(span: SendSpan, publish: Promise<void>): Promise<void> {
  return publish.then(
    () => span.end(),
    (err: unknown) => {
      span.end(err);
      throw err;
    },
  );
}

function tracedAll(spans: readonly SendSpan[], publish: Promise<void>): Promise<void> {
  return publish.then(
    () => spans.forEach((s) => s.end()),
    (err: unknown) => {
      spans.forEach((s) => s.end(err));
      throw err;
    },
  );
}

function toEpoch(v: Date | number | undefined): number | null {
  if (v === undefined) return null;
  return typeof v === 'number' ? v : v.getTime();
}
