/**
 * `task-sent` events (Celery's `task_send_sent_event`): one for each task
 * message the Producer publishes, from the client's own node name
 * (`gen<pid>@<host>`, as Celery's anonymous dispatcher), published at once
 * under `task.sent` (a client does not buffer). Fields are those of the
 * message's headers, so what a sender hid in `argsrepr` stays hidden;
 * they are capped and redacted (protocol/events.ts `eventRepr`).
 */
import { hostname } from 'node:os';
import type { Broker } from '../core/broker.ts';
import type { ResolvedSettings } from '../config/options.ts';
import { EventDispatcher } from '../observability/event-dispatcher.ts';
import { createLogger, type Logger } from '../observability/logging.ts';
import { eventRepr, type TaskEventFields } from '../protocol/events.ts';
import type { WireMessage } from '../protocol/types.ts';

/** The Producer's dispatcher, made on first use. */
export interface SentEvents {
  dispatcher: EventDispatcher | undefined;
}

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);

/** The fields of `task-sent` for a message published to `queue` (through the default exchange: routing key = queue). */
export function sentFields(queue: string, headers: Record<string, unknown>): TaskEventFields['task-sent'] {
  const id = str(headers.id) ?? '';
  return {
    root_id: str(headers.root_id) ?? id,
    parent_id: str(headers.parent_id),
    name: str(headers.task) ?? '',
    args: eventRepr(str(headers.argsrepr) ?? ''),
    kwargs: eventRepr(str(headers.kwargsrepr) ?? ''),
    retries: typeof headers.retries === 'number' ? headers.retries : 0,
    eta: str(headers.eta),
    expires: str(headers.expires),
    queue,
    exchange: '',
    routing_key: queue,
  };
}

/** Send `task-sent` for `message` (never waits, never throws: events are at-most-once). */
export function sendTaskSent(
  state: SentEvents,
  o: { settings: ResolvedSettings; brokerReady: () => Broker | undefined; broker: () => Promise<Broker>; logger?: Logger | undefined },
  queue: string,
  message: WireMessage,
): void {
  const go = (broker: Broker): void => {
    state.dispatcher ??= new EventDispatcher({
      broker,
      hostname: `gen${process.pid}@${hostname()}`,
      logger: o.logger ?? createLogger({ level: 'silent' }),
      exchange: o.settings.eventExchange,
      taskEvents: true,
    });
    const h = message.headers;
    state.dispatcher.send('task-sent', { uuid: str(h.id) ?? '', ...sentFields(queue, h) });
  };
  const ready = o.brokerReady();
  if (ready) go(ready);
  else void o.broker().then(go, () => undefined);
}
