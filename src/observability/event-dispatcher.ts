/**
 * Sends Celery events (protocol/events.ts) to the event exchange, as
 * Celery's `EventDispatcher` does: a Lamport clock stamped on each event,
 * single events published at once under their own routing key, and task
 * events buffered (up to 24, or until the end of this turn of the event
 * loop) and published as one list under `task.multi`.
 *
 * Events are at-most-once monitoring data: nothing waits for a publish,
 * and one that fails is logged and dropped. Shared by the worker (its
 * events, its heartbeat) and the client's Producer (`task-sent`).
 */
import { eventExchange, type Broker, type Exchange } from '../core/broker.ts';
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
  /** Epoch seconds (tests). */
  now?: () => number;
}

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
  /** Task events of this turn, already JSON (EventEncoder): no event object is built on the hot path. */
  private buffer: string[] = [];
  private flushScheduled = false;
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
   * dispatcher join the next `task.multi` batch.
   */
  send(type: EventType, fields: object, uuid?: string): void {
    if (this.closed) return;
    const group = type.startsWith('task-') ? 'task' : eventGroup(type);
    if (group === 'task' && !this.taskEvents) return;
    // The zone's offset can change (daylight saving): re-read it with each worker event (every heartbeat), not per task event.
    else if (group === 'worker') this.sender.utcoffset = utcOffsetHours();
    const event = this.encoder.encode(type, this.clock.forward(), fields, this.now(), uuid);
    if (group === 'task' && this.bufferTasks) {
      this.buffer.push(event);
      if (this.buffer.length >= EVENT_BUFFER_LIMIT) this.flush();
      else if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
      return;
    }
    this.publish(eventRoutingKey(type), event);
  }

  /** Publish what is buffered now (one `task.multi` message). */
  flush(): void {
    this.flushScheduled = false;
    if (this.buffer.length === 0) return;
    const batch = this.buffer;
    this.buffer = [];
    this.publish(multiRoutingKey('task'), batch);
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

  private publish(routingKey: string, events: string | string[]): void {
    const p = this.broker.broadcast(this.exchange, routingKey, eventMessageFromJson(this.hostname, events)).then(
      () => undefined,
      (err: unknown) => {
        // Once at warn (a broker user without the right to publish events would repeat it every heartbeat).
        this.logger[this.warned ? 'debug' : 'warn']({ err, routingKey }, 'could not send an event; dropped (events are at-most-once)');
        this.warned = true;
      },
    );
    this.pendingSends.add(p);
    void p.finally(() => this.pendingSends.delete(p));
  }
}
