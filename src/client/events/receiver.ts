/**
 * The event receiver: a subscription to Celery's event exchange (`celeryev`,
 * bound with `#` by default) read as an async iterator of typed events.
 * Understands what Python Celery 5.2.6 workers and clients send, including
 * the `task.multi` groups (a list of events in one message). Malformed
 * events are counted and skipped; the iterator never throws for them.
 */
import { eventExchange, type Broker, type Subscription } from '../../core/broker.ts';
import { ConfigError } from '../../errors.ts';
import type { App } from '../app.ts';
import type { Control } from '../control.ts';
import { DEFAULT_EVENT_LIMITS, parseEventMessage, type EventLimits } from './parse.ts';
import type { CeleryEvent } from './types.ts';

/** Options of `createEventReceiver`. */
export interface EventReceiverOptions {
  /**
   * The app whose broker to subscribe on (or give `broker`). When it has a
   * control client (an `App` has), the receiver wakes the workers up once
   * bound (see `wakeup`).
   */
  app?: Pick<App, 'broker'> & { readonly control?: Pick<Control, 'heartbeat'> };
  /** A connected broker (instead of `app`). */
  broker?: Broker;
  /** Aborting ends the iteration and closes the subscription. */
  signal?: AbortSignal;
  /** Event exchange name (Celery's `event_exchange`), default `celeryev`. */
  exchange?: string;
  /** Routing-key patterns, default `['#']` (every event); e.g. `['worker.#']`. */
  bindingKeys?: readonly string[];
  /** Limits on each message and event (defaults: `DEFAULT_EVENT_LIMITS`). */
  limits?: Partial<EventLimits>;
  /**
   * Most events held for a slow reader (default 10,000). Past it the newest
   * are dropped and counted in `stats.dropped`, so memory stays bounded.
   */
  maxBuffered?: number;
  /** Called for each malformed event or message (already counted), e.g. to log it. */
  onMalformed?: (info: { reason: string; routingKey: string }) => void;
  /** Called when the subscription reports an error it recovers from. */
  onError?: (err: Error) => void;
  /**
   * Once bound, broadcast the `heartbeat` control command so that every
   * worker sends a `worker-heartbeat` at once instead of within its 2 s
   * (Celery's `celery events` does so). Default true; needs a control
   * client: `app.control`, or `control`. Workers that do not allow the
   * command (a Celeriac worker allows it only when `heartbeat` is in its
   * control allow-list) ignore it; their next heartbeat comes on time.
   */
  wakeup?: boolean;
  /** The control client to wake workers with (default: the app's). */
  control?: Pick<Control, 'heartbeat'>;
  /** Clock for `local_received`, epoch seconds (tests). */
  now?: () => number;
}

/** Counters of a receiver. */
export interface EventReceiverStats {
  /** Valid events delivered to the buffer. */
  received: number;
  /** Events (or whole messages) refused as malformed. */
  malformed: number;
  /** Valid events dropped because the reader was too slow (`maxBuffered`). */
  dropped: number;
}

/** A running event receiver. */
export interface EventReceiver extends AsyncIterable<CeleryEvent> {
  readonly stats: Readonly<EventReceiverStats>;
  /** Resolves once the subscription is bound (events broadcast from then on are received); rejects if it could not be. */
  readonly ready: Promise<void>;
  /** End the iteration and close the subscription. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * Subscribe to events. Iterate the result with `for await`; the iteration
 * ends when `signal` aborts or `close()` is called. One iteration per
 * receiver.
 *
 * ```ts
 * const ac = new AbortController();
 * for await (const ev of createEventReceiver({ app, signal: ac.signal })) {
 *   if (isKnownEvent(ev) && ev.type === 'task-failed') console.log(ev.uuid, ev.exception);
 * }
 * ```
 */
export function createEventReceiver(options: EventReceiverOptions): EventReceiver {
  if (!options.app && !options.broker) throw new ConfigError('createEventReceiver needs an app or a broker', { hint: 'pass { app } or { broker }' });
  const limits: EventLimits = { ...DEFAULT_EVENT_LIMITS, ...options.limits };
  const maxBuffered = options.maxBuffered ?? 10_000;
  const now = options.now ?? (() => Date.now() / 1000);
  const stats: EventReceiverStats = { received: 0, malformed: 0, dropped: 0 };
  const buffer: CeleryEvent[] = [];
  let head = 0;
  let wake: (() => void) | undefined;
  let closed = false;
  let failure: Error | undefined;
  let subscription: Subscription | undefined;

  const notify = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const malformed = (reason: string, routingKey: string): void => {
    stats.malformed++;
    try {
      options.onMalformed?.({ reason, routingKey });
    } catch {
      // A throwing callback must not stop the subscription.
    }
  };

  const ready = (async () => {
    const broker = options.broker ?? (await options.app!.broker());
    const sub = await broker.subscribe(
      eventExchange(options.exchange),
      {
        bindingKeys: options.bindingKeys ?? ['#'],
        onMalformed: (info) => malformed(info.reason, info.routingKey),
        ...(options.onError ? { onError: options.onError } : {}),
      },
      (delivery) => {
        if (closed) return;
        const parsed = parseEventMessage(delivery.message, now(), limits);
        for (const reason of parsed.malformed) malformed(reason, delivery.routingKey);
        for (const ev of parsed.events) {
          if (buffer.length - head >= maxBuffered) {
            stats.dropped++;
            continue;
          }
          buffer.push(ev);
          stats.received++;
        }
        if (parsed.events.length > 0) notify();
      },
    );
    if (closed) await sub.close();
    else subscription = sub;
    let control: Pick<Control, 'heartbeat'> | undefined;
    try {
      control = options.wakeup === false ? undefined : (options.control ?? options.app?.control);
    } catch (err) {
      options.onError?.(err instanceof Error ? err : new Error(String(err)));
    }
    if (!closed && control) {
      // A failed wake-up costs only the wait for the next heartbeat: reported, never fatal.
      await control.heartbeat().catch((err: unknown) => options.onError?.(err instanceof Error ? err : new Error(String(err))));
    }
  })();
  ready.catch((err: unknown) => {
    failure = err instanceof Error ? err : new Error(String(err));
    notify();
  });

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      closed = true;
      options.signal?.removeEventListener('abort', onAbort);
      notify();
      await ready.catch(() => undefined);
      await subscription?.close();
    })();
    return closing;
  };
  const onAbort = (): void => void close();
  if (options.signal?.aborted) void close();
  else options.signal?.addEventListener('abort', onAbort, { once: true });

  let iterating = false;
  async function* iterate(): AsyncGenerator<CeleryEvent> {
    if (iterating) throw new ConfigError('an event receiver can be iterated once', { hint: 'create one receiver per reader' });
    iterating = true;
    try {
      for (;;) {
        if (closed) return;
        if (head < buffer.length) {
          const ev = buffer[head]!;
          buffer[head++] = undefined as unknown as CeleryEvent;
          // Compact now and then so a long-running receiver does not keep a growing array.
          if (head > 1024 && head * 2 > buffer.length) {
            buffer.splice(0, head);
            head = 0;
          }
          yield ev;
          continue;
        }
        if (failure) throw failure;
        await new Promise<void>((resolve) => (wake = resolve));
      }
    } finally {
      await close();
    }
  }

  return {
    stats,
    ready,
    close,
    [Symbol.asyncIterator]: () => iterate(),
  };
}
