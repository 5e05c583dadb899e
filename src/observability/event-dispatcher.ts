/**
 * Sends Celery events (protocol/events.ts) to the event exchange, as
 * Celery's `EventDispatcher` does: a Lamport clock stamped on each event,
 * single events published under their own routing key, and task events
 * buffered and published as lists of at most 24 (Celery's `buffer_limit`)
 * under `task.multi`.
 *
 * A buffering dispatcher (the worker's) holds task events for a short
 * window (`flushWindowMs`, 10 ms) rather than one turn of the event loop,
 * so that a lightly loaded worker's lists fill too (at concurrency 1 a
 * turn held about 12 events: lists were half full). A full list is sent
 * on the next turn with any other full lists of the same turn, in one
 * `Broker.broadcastMany` (one round trip); a worker event (heartbeat,
 * online, offline) is sent at once, after the task events sent before
 * it, in the same batch. Every event goes out in the order it was sent,
 * so a receiver sees a task's received < started < succeeded.
 *
 * Events are at-most-once monitoring data: nothing waits for a publish,
 * and a batch that fails is logged and dropped. Shared by the worker (its
 * events, its heartbeat) and the client's Producer (`task-sent`, published
 * at once: a client does not buffer).
 */
import { eventExchange, type BroadcastItem, type Broker, type Exchange } from '../core/broker.ts';
import {
  EVENT_BUFFER_LIMIT,
  EventEncoder,
  eventGroup,
  eventMessageFromJson,
  eventRoutingKey,
  multiRoutingKey,
  utcOffsetHours,
  type EventSender,
  type EventType,
} from '../protocol/events.ts';
import type { Logger } from './logging.ts';

/** Celery's `LamportClock`: forward on every event sent, adjusted by what others send. */
export class LamportClock {
  value = 0;
  /** Advance for a local event; returns the new value. */
  forward(): number {
    return ++this.value;
  }
  /** Merge another node's clock (a received event or control message). */
  adjust(other: number): number {
    this.value = Math.max(this.value, other) + 1;
    return this.value;
  }
}

export interface EventDispatcherOptions {
  /** The connected broker. */
  broker: Broker;
  /** Node name sent as `hostname` (field and header). */
  hostname: string;
  logger: Logger;
  /** Event exchange name (Celery's `event_exchange`, default `celeryev`). */
  exchange?: string;
  /** Task events on at start (`-E`, `workerSendTaskEvents`). */
  taskEvents?: boolean;
  /** Buffer events of group `task` into `task.multi` lists (Celery's worker does; its client does not). */
  bufferTasks?: boolean;
  /** A shared clock (default: a new one). */
  clock?: LamportClock;
  /**
   * Longest time a buffered task event waits for its list to fill, ms
   * (default `EVENT_FLUSH_WINDOW_MS`; 0: until the end of this turn).
   */
  flushWindowMs?: number;
  /** Epoch seconds (tests). */
  now?: () => number;
}

/** How long a worker holds task events for a fuller `task.multi` list, ms (see the module comment). */
export const EVENT_FLUSH_WINDOW_MS = 10;

const nowSeconds = (): number => (performance.timeOrigin + performance.now()) / 1000;

/** See the module comment. */
export class EventDispatcher {
  readonly clock: LamportClock;
  readonly hostname: string;
  /** Task events are sent (checked by every hook before building anything). */
  taskEvents: boolean;
  private readonly broker: Broker;
  private readonly exchange: Exchange;
  private readonly logger: Logger;
  private readonly sender: EventSender;
  private readonly bufferTasks: boolean;
  private readonly now: () => number;
  private readonly encoder: EventEncoder;
  private readonly windowMs: number;
  /** Task events of the open `task.multi` list, already JSON (EventEncoder): no event object is built on the hot path. */
  private buffer: string[] = [];
  /** Messages ready to go (full lists), in the order their events were sent. */
  private outbox: BroadcastItem[] = [];
  /** The flush of the outbox on the next turn (a list is full). */
  private immediate: NodeJS.Immediate | undefined;
  /** The end of the window: what is open then goes (see send). */
  private timer: NodeJS.Timeout | undefined;
  private readonly pendingSends = new Set<Promise<void>>();
  private closed = false;
  private warned = false;

  constructor(o: EventDispatcherOptions) {
    this.broker = o.broker;
    this.hostname = o.hostname;
    this.logger = o.logger;
    this.exchange = eventExchange(o.exchange);
    this.taskEvents = o.taskEvents ?? false;
    this.bufferTasks = o.bufferTasks ?? false;
    this.clock = o.clock ?? new LamportClock();
    this.now = o.now ?? nowSeconds;
    this.windowMs = o.flushWindowMs ?? EVENT_FLUSH_WINDOW_MS;
    this.sender = { hostname: o.hostname, pid: process.pid, utcoffset: utcOffsetHours() };
    this.encoder = new EventEncoder(this.sender);
  }

  /** Turn task events on or off (remote control's `enable_events`/`disable_events`). */
  setTaskEvents(on: boolean): void {
    this.taskEvents = on;
  }

  /**
   * Send one event of `type` with `fields` (after the common ones, and
   * after `uuid` when given: a task event's id, saving a copy of its fields). Task
   * events are dropped while task events are off; those of a buffering
   * dispatcher join the open `task.multi` list, and its other events go
   * out at once behind them (see the module comment).
   */
  send(type: EventType, fields: object, uuid?: string): void {
    if (this.closed) return;
    const group = type.startsWith('task-') ? 'task' : eventGroup(type);
    if (group === 'task' && !this.taskEvents) return;
    // The zone's offset can change (daylight saving): re-read it with each worker event (every heartbeat), not per task event.
    else if (group === 'worker') this.sender.utcoffset = utcOffsetHours();
    const event = this.encoder.encode(type, this.clock.forward(), fields, this.now(), uuid);
    if (!this.bufferTasks) {
      this.publish([{ routingKey: eventRoutingKey(type), message: eventMessageFromJson(this.hostname, event) }]);
      return;
    }
    if (group === 'task') {
      if (this.buffer.push(event) >= EVENT_BUFFER_LIMIT) {
        this.closeList();
        // Other lists that fill in this turn go in the same round trip.
        this.immediate ??= setImmediate(this.onTurnEnd);
      } else if (this.windowMs === 0) this.immediate ??= setImmediate(this.onTurnEnd);
      else if (this.timer === undefined) {
        // One timer per window, not per list: it is left running when a list fills, and ends
        // the list open by then (sooner than a window of its own, never later).
        this.timer = setTimeout(this.onWindowEnd, this.windowMs);
        // Never what keeps a process alive: stopping flushes.
        this.timer.unref();
      }
      return;
    }
    this.closeList();
    this.outbox.push({ routingKey: eventRoutingKey(type), message: eventMessageFromJson(this.hostname, event) });
    this.flush();
  }

  /** Publish everything buffered now, the open list too, in one batch (one round trip where the broker allows). */
  flush(): void {
    if (this.immediate !== undefined) clearImmediate(this.immediate);
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.immediate = undefined;
    this.timer = undefined;
    this.closeList();
    this.sendOutbox();
  }

  /** Full lists go at the end of their turn; an open one keeps its window (all of it when the window is 0). */
  private readonly onTurnEnd = (): void => {
    this.immediate = undefined;
    if (this.windowMs === 0) this.closeList();
    this.sendOutbox();
  };

  private readonly onWindowEnd = (): void => {
    this.timer = undefined;
    this.flush();
  };

  /** The open list, if any, becomes a `task.multi` message of the outbox. */
  private closeList(): void {
    if (this.buffer.length === 0) return;
    this.outbox.push({ routingKey: multiRoutingKey('task'), message: eventMessageFromJson(this.hostname, this.buffer) });
    this.buffer = [];
  }

  private sendOutbox(): void {
    if (this.outbox.length === 0) return;
    const items = this.outbox;
    this.outbox = [];
    this.publish(items);
  }

  /** Flush, wait for the publishes under way, and send nothing more. */
  async close(): Promise<void> {
    this.flush();
    this.closed = true;
    await Promise.allSettled([...this.pendingSends]);
  }

  /** Wait for the publishes under way (after a final event such as `worker-offline`). */
  async settled(): Promise<void> {
    this.flush();
    await Promise.allSettled([...this.pendingSends]);
  }

  /** One batch, in order: `broadcastMany` when the broker has it and there are several, else `broadcast` each. */
  private publish(items: BroadcastItem[]): void {
    const p = this.sendBatch(items).then(
      () => undefined,
      (err: unknown) => {
        // One line per failed batch, at warn once (a broker user without the right to publish events would repeat it every heartbeat).
        const routingKeys = [...new Set(items.map((i) => i.routingKey))];
        this.logger[this.warned ? 'debug' : 'warn']({ err, routingKeys, messages: items.length }, `could not send ${items.length === 1 ? 'an event message' : `${items.length} event messages`}; dropped (events are at-most-once)`);
        this.warned = true;
      },
    );
    this.pendingSends.add(p);
    void p.finally(() => this.pendingSends.delete(p));
  }

  private async sendBatch(items: BroadcastItem[]): Promise<void> {
    const b = this.broker;
    if (items.length > 1 && b.broadcastMany) return b.broadcastMany(this.exchange, items);
    await Promise.all(items.map((i) => b.broadcast(this.exchange, i.routingKey, i.message)));
  }
}
