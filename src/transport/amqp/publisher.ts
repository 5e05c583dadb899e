/**
 * Publishing with publisher confirms: a send resolves only once RabbitMQ
 * has taken responsibility for every message (for a persistent message on
 * a durable queue: written to disk, or replicated for a quorum queue).
 *
 * Confirms are streamed: a bulk send writes all its messages, then waits
 * for the confirms, which RabbitMQ returns in batches (`multiple`), so a
 * thousand messages cost about one round trip, not a thousand.
 *
 * Never a silent drop:
 * - while the connection is down a send waits for it, up to
 *   `brokerPublishTimeout`, then fails with `ConnectionError`;
 * - messages whose confirm was lost with the connection are published
 *   again on the next connection (at-least-once: such a message may be
 *   stored twice, never zero times);
 * - task messages are published `mandatory`: one that no queue takes (the
 *   queue was deleted) comes back, the queue is declared again and the
 *   message re-sent once; if it comes back again the send fails;
 * - a `basic.nack` (the broker refused the message) fails the send.
 */
import type { ConfirmChannel, Message, Options } from 'amqplib';
import { ClosedError, ConnectionError } from '../../errors.ts';
import type { Logger } from '../../observability/logging.ts';
import type { AmqpConnection, Live } from './connection.ts';
import { replyCode, type QueueDeclaration, type Topology } from './topology.ts';

/** One message ready for `basic.publish`. */
export interface Outgoing {
  exchange: string;
  routingKey: string;
  content: Buffer;
  options: Options.Publish;
  /** Declare this queue (once per connection) before publishing. */
  declare?: QueueDeclaration;
}

interface ChannelState {
  ch: ConfirmChannel;
  epoch: number;
  closed: boolean;
  /** Keys of messages the broker returned as unroutable, until their confirm arrives. */
  returned: Set<string>;
  closedPromise: Promise<void>;
  /** Set when the broker closed the channel with an error (403 refused, 404 no such exchange, …). */
  closeError: Error | undefined;
}

type Outcome = 'ok' | 'lost' | 'returned' | 'nacked';

/** Key that matches a returned message to its publish: routing key + correlation id. */
function returnKey(routingKey: string, correlationId: string | undefined): string {
  return `${routingKey}\u0000${correlationId ?? ''}`;
}

/** Publishes over one confirm channel of a connection, re-opened as needed (see the module comment). */
export class ConfirmPublisher {
  private state: ChannelState | undefined;
  private opening: Promise<ChannelState> | undefined;
  private closed = false;

  constructor(
    private readonly conn: AmqpConnection,
    private readonly topology: Topology,
    private readonly logger: Logger,
    private readonly timeoutMs: number,
  ) {}

  /** Publish `items`; resolves when every one is confirmed. */
  async publish(items: readonly Outgoing[]): Promise<void> {
    if (this.closed) throw new ClosedError('amqp publisher');
    if (items.length === 0) return;
    const deadline = Date.now() + this.timeoutMs;
    let todo: readonly Outgoing[] = items;
    const returnedOnce = new Set<Outgoing>();
    for (;;) {
      const st = await this.channel(deadline);
      try {
        await this.declareAll(todo, st, deadline);
      } catch (err) {
        // Declaring failed because the connection went away: wait for the next one. Anything else is an answer.
        if (this.conn.current()?.epoch === st.epoch || Date.now() >= deadline) throw err;
        continue;
      }
      const outcomes = await this.publishBatch(st, todo, deadline);
      // A channel error is the broker's answer to these messages (not a lost connection): report it, do not retry.
      if (st.closeError && outcomes.some((o) => o === 'lost')) throw refused(st.closeError);
      const again: Outgoing[] = [];
      for (let i = 0; i < todo.length; i++) {
        const o = outcomes[i]!;
        if (o === 'ok') continue;
        const item = todo[i]!;
        if (o === 'returned') {
          if (returnedOnce.has(item)) {
            throw new ConnectionError(`amqp publish to ${JSON.stringify(item.routingKey)} was returned as unroutable twice: no queue takes it`, {
              hint: 'the queue was deleted and cannot be declared again; check its permissions and the broker logs',
              code: 'ERR_UNROUTABLE',
            });
          }
          returnedOnce.add(item);
          if (item.declare) this.topology.forget(item.declare.name);
          this.logger.warn({ routingKey: item.routingKey }, `message to ${JSON.stringify(item.routingKey)} came back unroutable (queue missing?); declaring the queue again and re-sending`);
        }
        again.push(item);
      }
      if (again.length === 0) return;
      if (Date.now() >= deadline) throw this.timeout(again.length);
      todo = again;
    }
  }

  private timeout(n: number): ConnectionError {
    return this.conn.connectionError(undefined, `publish of ${n} message(s) not confirmed within ${this.timeoutMs / 1000} s${this.conn.blockedReason ? ` (broker blocked publishing: ${this.conn.blockedReason})` : ''}; they may or may not have been stored`);
  }

  private async declareAll(items: readonly Outgoing[], st: ChannelState, deadline: number): Promise<void> {
    const live = this.conn.current();
    if (!live || live.epoch !== st.epoch) return; // publishBatch will see the closed channel and retry
    let waits: Promise<void>[] | undefined;
    let last: QueueDeclaration | undefined;
    for (const it of items) {
      if (!it.declare || it.declare === last) continue;
      last = it.declare;
      const p = this.topology.ensure(it.declare, live);
      if (p) (waits ??= []).push(p);
    }
    if (waits) await withDeadline(Promise.all(waits), deadline, () => this.timeout(items.length));
  }

  /** Write every message, then wait for their confirms (streamed). */
  private async publishBatch(st: ChannelState, items: readonly Outgoing[], deadline: number): Promise<Outcome[]> {
    const outcomes = new Array<Outcome>(items.length);
    const pending: Promise<void>[] = [];
    for (let i = 0; i < items.length; i++) {
      if (st.closed) {
        outcomes[i] = 'lost';
        continue;
      }
      const it = items[i]!;
      const key = it.options.mandatory ? returnKey(it.routingKey, it.options.correlationId) : undefined;
      let ok: boolean;
      pending.push(
        new Promise<void>((resolve) => {
          try {
            ok = st.ch.publish(it.exchange, it.routingKey, it.content, it.options, (err: unknown) => {
              if (err) {
                // amqplib fails pending confirms with 'channel closed' (before our close listener runs):
                // the message may or may not be stored, so it is sent again on the next channel.
                outcomes[i] = (err as Error).message === 'message nacked' ? 'nacked' : 'lost';
              } else if (key !== undefined && st.returned.delete(key)) {
                outcomes[i] = 'returned';
              } else {
                outcomes[i] = 'ok';
              }
              resolve();
            });
          } catch {
            // amqplib throws once the channel is closed.
            outcomes[i] = 'lost';
            ok = true;
            resolve();
          }
        }),
      );
      // Honour back-pressure: wait for the socket to drain (or the channel to die).
      if (!ok! && !st.closed) await drained(st);
    }
    await withDeadline(Promise.all(pending), deadline, () => this.timeout(items.length));
    for (const o of outcomes) {
      if (o === 'nacked') {
        // A quorum queue whose leader died nacks on this channel even after the survivors elected a new
        // one (RabbitMQ 3.10, seen in test/chaos/rabbit-cluster.test.ts): later sends go on a fresh channel,
        // this one is closed once its other confirms are in.
        this.retire(st);
        throw new ConnectionError('RabbitMQ refused a message (basic.nack): it was not stored', {
          hint: 'the queue may be full with x-overflow=reject-publish, a quorum queue may be electing a new leader after a cluster node was lost, or the broker is in trouble; retry (after a failover within seconds), and check the broker logs if it persists',
          code: 'ERR_PUBLISH_REFUSED',
        });
      }
    }
    return outcomes;
  }

  /** The confirm channel of the current connection, (re)opened on demand. */
  private channel(deadline: number): Promise<ChannelState> {
    const st = this.state;
    const live = this.conn.current();
    if (st && !st.closed && live && st.epoch === live.epoch) return Promise.resolve(st);
    this.opening ??= (async () => {
      try {
        for (;;) {
          const l: Live = await this.conn.ready(deadline);
          try {
            return await this.openChannel(l);
          } catch (err) {
            if (this.closed) throw new ClosedError('amqp publisher');
            if (Date.now() >= deadline) throw this.conn.connectionError(err, 'cannot open a publishing channel');
            await new Promise((r) => setTimeout(r, 50));
          }
        }
      } finally {
        this.opening = undefined;
      }
    })();
    return this.opening;
  }

  private async openChannel(live: Live): Promise<ChannelState> {
    const ch = await live.model.createConfirmChannel();
    let markClosed!: () => void;
    const st: ChannelState = { ch, epoch: live.epoch, closed: false, returned: new Set(), closedPromise: new Promise<void>((r) => (markClosed = r)), closeError: undefined };
    ch.on('error', (err: Error) => {
      st.closeError = err;
      this.logger.warn({ code: replyCode(err) }, `amqp publishing channel closed by the broker: ${err.message.split('\n')[0]}`);
    });
    ch.on('close', () => {
      st.closed = true;
      if (this.state === st) this.state = undefined;
      markClosed();
    });
    ch.on('return', (msg: Message) => {
      st.returned.add(returnKey(msg.fields.routingKey, msg.properties.correlationId as string | undefined));
    });
    this.state = st;
    return st;
  }

  /** Stop using a channel for new sends; close it once the confirms it still owes have arrived. */
  private retire(st: ChannelState): void {
    if (this.state !== st) return;
    this.state = undefined;
    void (st.ch as unknown as { waitForConfirms(): Promise<void> }).waitForConfirms().catch(() => undefined).finally(() => {
      if (!st.closed) void st.ch.close().catch(() => undefined);
    });
  }

  /** Close the channel (pending sends fail). */
  async close(): Promise<void> {
    this.closed = true;
    const st = this.state;
    this.state = undefined;
    if (st && !st.closed) await st.ch.close().catch(() => undefined);
  }
}

/** The error for a publish the broker refused by closing the channel. */
function refused(err: Error): ConnectionError {
  const code = replyCode(err);
  const why: Record<number, string> = {
    403: 'this user may not publish to that exchange (ACCESS_REFUSED)',
    404: 'the exchange does not exist (NOT_FOUND)',
    406: 'the message or its properties were refused (PRECONDITION_FAILED)',
  };
  return new ConnectionError(`RabbitMQ refused the publish: ${(code && why[code]) ?? err.message.split('\n')[0]}`, {
    hint: code === 403 ? 'grant write permission on the exchange (amq.default for the default exchange) to this user' : 'check the exchange name and the broker logs',
    code: code === 403 ? 'ERR_AUTH' : 'ERR_PUBLISH_REFUSED',
    cause: err,
  });
}

/** Resolve when the channel can take more writes, or is closed (listeners removed either way, so nothing accumulates). */
function drained(st: ChannelState): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      st.ch.off('drain', done);
      st.ch.off('close', done);
      resolve();
    };
    st.ch.on('drain', done);
    st.ch.on('close', done);
  });
}

/** Race `p` against the deadline; `onTimeout` builds the error. */
function withDeadline<T>(p: Promise<T>, deadline: number, onTimeout: () => Error): Promise<T> {
  const ms = deadline - Date.now();
  if (ms <= 0) return Promise.race([p, Promise.reject(onTimeout())]);
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_r, reject) => {
      timer = setTimeout(() => reject(onTimeout()), ms);
    }),
  ]);
}
