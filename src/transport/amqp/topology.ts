/**
 * Celery's AMQP topology and how Celeriac declares it.
 *
 * A task queue `Q` is what Celery declares for it (reference §4.1): a
 * durable direct exchange `Q`, a durable, non-exclusive, non-auto-delete
 * queue `Q` with **no arguments** unless `taskQueueMaxPriority`
 * (`x-max-priority`) or `taskDefaultQueueType: 'quorum'`
 * (`x-queue-type`) ask for them, and the binding `Q → Q` with routing key
 * `Q`. Arguments must be identical everywhere or RabbitMQ answers
 * PRECONDITION_FAILED, which is why dead-lettering is done by publishing
 * to `Q.dlq` rather than with an `x-dead-letter-exchange` argument.
 *
 * Declarations tolerate least-privilege users: a refused exchange or
 * binding declaration is skipped (tasks are published through the default
 * exchange, which needs neither); a refused queue declaration falls back
 * to checking that the queue exists. A queue that exists with different
 * arguments is used as it is, with a warning naming the difference.
 */
import type { Channel } from 'amqplib';
import { ConnectionError } from '../../errors.ts';
import type { Logger } from '../../observability/logging.ts';
import type { AmqpConnection, Live } from './connection.ts';
import type { AmqpSettings } from './options.ts';

/** A queue with the exchange and binding that go with it. */
export interface QueueDeclaration {
  name: string;
  durable: boolean;
  autoDelete: boolean;
  exclusive: boolean;
  /** Queue arguments, typed for amqplib (`{'!': 'int', value}` for integers). */
  arguments: Record<string, unknown>;
  /** Exchange to declare and bind to, if any. */
  exchange?: ExchangeDeclaration;
  routingKey?: string;
  /** A queue RabbitMQ dead-letters into (x-dead-letter-routing-key): declared first, so nothing is dropped. */
  deadLetter?: QueueDeclaration;
}

/** An exchange as Celery declares it. */
export interface ExchangeDeclaration {
  name: string;
  type: 'direct' | 'fanout' | 'topic' | 'headers';
  durable: boolean;
  autoDelete?: boolean;
}

/** `x-…` arguments shared by the task queues and their dead-letter queues. */
function queueArguments(settings: AmqpSettings, withPriority: boolean): Record<string, unknown> {
  const args: Record<string, unknown> = {};
  // Quorum queues have no x-max-priority: amqpSettings refuses the combination.
  if (withPriority && settings.maxPriority !== undefined && settings.queueType !== 'quorum') args['x-max-priority'] = { '!': 'int', value: settings.maxPriority };
  if (settings.queueType === 'quorum') args['x-queue-type'] = 'quorum';
  return args;
}

/** Celery's declaration of task queue `name`. */
export function taskQueueDeclaration(name: string, settings: AmqpSettings): QueueDeclaration {
  return {
    name,
    durable: true,
    autoDelete: false,
    exclusive: false,
    arguments: {
      ...queueArguments(settings, true),
      // A quorum queue's delivery limit: past it RabbitMQ dead-letters the message into `<name>.dlq`
      // (the queue Celeriac's own dead letters go to) instead of dropping it — at-least-once (confirmed by
      // the DLQ, RabbitMQ ≥ 3.10), which RabbitMQ allows only with x-overflow reject-publish.
      ...(settings.deliveryLimit !== undefined
        ? {
          'x-delivery-limit': { '!': 'int', value: settings.deliveryLimit },
          'x-dead-letter-exchange': '',
          'x-dead-letter-routing-key': `${name}.dlq`,
          'x-dead-letter-strategy': 'at-least-once',
          'x-overflow': 'reject-publish',
        }
        : {}),
    },
    exchange: { name, type: 'direct', durable: true },
    routingKey: name,
    ...(settings.deliveryLimit !== undefined ? { deadLetter: deadLetterDeclaration(`${name}.dlq`, settings) } : {}),
  };
}

/** Most messages and bytes a dead-letter queue keeps; past them the oldest are dropped (it must not grow without bound). */
export const DEAD_LETTER_MAX_LENGTH = 100_000;
export const DEAD_LETTER_MAX_BYTES = 256 * 1024 * 1024;

/**
 * The dead-letter queue of `queue`: durable, no priority, same queue type,
 * bounded by count and bytes (drop-head). A DLQ declared before without the
 * bounds is used as it is, with a warning (see `Topology.ensure`).
 */
export function deadLetterDeclaration(dlqName: string, settings: AmqpSettings): QueueDeclaration {
  const args = queueArguments(settings, false);
  args['x-max-length'] = { '!': 'int', value: DEAD_LETTER_MAX_LENGTH };
  args['x-max-length-bytes'] = { '!': 'int', value: DEAD_LETTER_MAX_BYTES };
  args['x-overflow'] = 'drop-head';
  return { name: dlqName, durable: true, autoDelete: false, exclusive: false, arguments: args };
}

/** AMQP reply code of a channel error (403 ACCESS_REFUSED, 404 NOT_FOUND, 406 PRECONDITION_FAILED), if any. */
export function replyCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

/** Short printable form of queue arguments, for warnings. */
function describeArgs(args: Record<string, unknown>): string {
  const parts = Object.entries(args).map(([k, v]) => `${k}=${JSON.stringify(typeof v === 'object' && v !== null && 'value' in v ? (v as { value: unknown }).value : v)}`);
  return parts.length > 0 ? parts.join(', ') : 'no arguments';
}

/**
 * Declarations on one connection, each done once per connection epoch.
 * Declaration commands go over a dedicated channel, so that a refusal
 * (which closes the channel) never takes the publisher's or a consumer's
 * channel down with it.
 */
export class Topology {
  private channel: { ch: Channel; epoch: number; closed: boolean } | undefined;
  private epoch = 0;
  private readonly done = new Map<string, Promise<void>>();
  private chain: Promise<unknown> = Promise.resolve();
  private readonly warned = new Set<string>();

  constructor(
    private readonly conn: AmqpConnection,
    private readonly logger: Logger,
  ) {}

  /**
   * Make sure `decl` is declared on the current connection. Returns
   * undefined when it already is (no await needed on the hot path).
   */
  ensure(decl: QueueDeclaration, live: Live): Promise<void> | undefined {
    if (live.epoch !== this.epoch) {
      this.epoch = live.epoch;
      this.done.clear();
    }
    const key = decl.name;
    const existing = this.done.get(key);
    if (existing) return existing === DONE ? undefined : existing;
    const p = this.serial(() => this.declare(decl, live)).then(
      () => {
        if (this.epoch === live.epoch) this.done.set(key, DONE);
      },
      (err: unknown) => {
        this.done.delete(key);
        throw err;
      },
    );
    this.done.set(key, p);
    return p;
  }

  /** Forget a declaration (e.g. the queue was deleted under us). */
  forget(name: string): void {
    this.done.delete(name);
  }

  /** Run `fn` with the declaration channel, one command sequence at a time. */
  serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** The declaration channel of `live`, opened on demand. */
  async declareChannel(live: Live): Promise<Channel> {
    const c = this.channel;
    if (c && !c.closed && c.epoch === live.epoch) return c.ch;
    const ch = await live.model.createChannel();
    const state = { ch, epoch: live.epoch, closed: false };
    // Refusals arrive as channel errors; they are answered through the failed command's promise.
    ch.on('error', () => undefined);
    ch.on('close', () => {
      state.closed = true;
    });
    this.channel = state;
    return ch;
  }

  /** Run one declaration command; a channel error closes the channel, so the next command gets a new one. */
  private async run<T>(live: Live, op: (ch: Channel) => Promise<T>): Promise<T> {
    const ch = await this.declareChannel(live);
    return op(ch);
  }

  private async declare(decl: QueueDeclaration, live: Live): Promise<void> {
    if (decl.deadLetter) await this.declare(decl.deadLetter, live);
    const ex = decl.exchange;
    if (ex) {
      try {
        await this.run(live, (ch) => ch.assertExchange(ex.name, ex.type, { durable: ex.durable, autoDelete: ex.autoDelete ?? false }));
      } catch (err) {
        if (replyCode(err) === 403) this.once(`ex:${ex.name}`, `not allowed to declare exchange ${JSON.stringify(ex.name)}; publishing through the default exchange only`);
        else if (replyCode(err) === 406) this.once(`ex:${ex.name}`, `exchange ${JSON.stringify(ex.name)} exists with another type or durability; using it as it is`);
        else throw this.wrap(err, `declaring exchange ${ex.name}`);
      }
    }
    try {
      await this.run(live, (ch) => ch.assertQueue(decl.name, { durable: decl.durable, autoDelete: decl.autoDelete, exclusive: decl.exclusive, arguments: decl.arguments }));
    } catch (err) {
      const code = replyCode(err);
      if (code !== 403 && code !== 406) throw this.wrap(err, `declaring queue ${decl.name}`);
      try {
        await this.run(live, (ch) => ch.checkQueue(decl.name));
      } catch (checkErr) {
        throw this.wrap(checkErr, code === 403 ? `queue ${JSON.stringify(decl.name)} does not exist and this user may not declare it` : `checking queue ${decl.name}`);
      }
      if (code === 406) {
        this.once(`q:${decl.name}`, `queue ${JSON.stringify(decl.name)} exists with other arguments than ${describeArgs(decl.arguments)} (PRECONDITION_FAILED); using it as it is — declare it identically everywhere (taskQueueMaxPriority, taskDefaultQueueType)`);
      }
    }
    if (ex && decl.routingKey !== undefined) {
      try {
        await this.run(live, (ch) => ch.bindQueue(decl.name, ex.name, decl.routingKey!));
      } catch (err) {
        const code = replyCode(err);
        if (code === 403 || code === 404) this.once(`bind:${decl.name}`, `cannot bind queue ${JSON.stringify(decl.name)} to exchange ${JSON.stringify(ex.name)} (${code}); tasks still reach it through the default exchange`);
        else throw this.wrap(err, `binding queue ${decl.name}`);
      }
    }
  }

  private once(key: string, message: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.logger.warn({ role: this.conn.role }, message);
  }

  private wrap(err: unknown, what: string): Error {
    if (err instanceof ConnectionError) return err;
    const code = replyCode(err);
    const text = err instanceof Error ? err.message : String(err);
    return new ConnectionError(`amqp ${what} failed${code ? ` (${code})` : ''}: ${text.split('\n')[0]}`, {
      hint: code === 403 ? 'grant the RabbitMQ user configure/write permission on this resource, or declare it in advance' : 'check the broker logs',
      code: code === 403 ? 'ERR_AUTH' : 'ERR_AMQP',
      cause: err,
    });
  }

  /** Drop the declaration channel (connection lost or closing). */
  reset(): void {
    this.channel = undefined;
    this.done.clear();
  }
}

const DONE: Promise<void> = Promise.resolve();
