/**
 * Spans for the moments of a task: sent (`apply_async/<task>`, PRODUCER),
 * received by a worker (`receive/<task>`, CONSUMER: decoded, verified and
 * scheduled or refused), run (`run/<task>`, CONSUMER) and, on the client,
 * waiting for its result. The receive and run spans are both children of
 * the send span, as the run span is in Python's instrumentation. Built over `@opentelemetry/api` only: the application brings
 * the SDK, exporter, context manager and propagator (as with every
 * OpenTelemetry library), and without them every call here is a no-op.
 */
import type * as Api from '@opentelemetry/api';
import * as A from './attributes.ts';
import { headerGetter, headerSetter } from './carrier.ts';

/** The OpenTelemetry API module (`import * as api from '@opentelemetry/api'`). */
export type OtelApi = typeof Api;

/** A started send span; `headers` must go into the message headers before it is signed. */
export interface SendSpan {
  /** Propagation headers (`traceparent`, `tracestate`, …) to add to the message. */
  readonly headers: Record<string, string>;
  /** End the span once the broker holds the message (or with the error that stopped it). */
  end(error?: unknown): void;
}

/** What a send span describes. */
export interface SendInfo {
  task: string;
  id: string;
  /** The queue (Celery's default routing key). */
  queue: string;
  retries?: number | undefined;
}

/** What a run span describes: the request as received, and the node running it. */
export interface RunInfo {
  task: string;
  id: string;
  /** The headers as received: trace context is read from them. */
  headers: Readonly<Record<string, unknown>>;
  hostname: string;
  queue: string;
  retries: number;
  timeLimit: readonly [number | null, number | null];
  priority?: number | undefined;
  correlationId?: string | undefined;
}

/** What a receive span describes: the message as it arrived. */
export interface ReceiveInfo {
  /** Task name and id when the headers could be read. */
  task: string | undefined;
  id: string | undefined;
  /** The headers as received: trace context is read from them. */
  headers: Readonly<Record<string, unknown>>;
  hostname: string;
  queue: string;
  redelivered: boolean;
}

/** A started receive span. */
export interface ReceiveSpan {
  /**
   * End it with intake's decision: `RECEIVED` (scheduled to run, now or at
   * its eta), `REJECTED` (dead-lettered), `REVOKED` (revoked or expired) or
   * `REQUEUED` (given back), and the reason when it was not received.
   */
  end(state: 'RECEIVED' | 'REJECTED' | 'REVOKED' | 'REQUEUED', reason?: string, eta?: number | null): void;
}

/** A started run span. */
export interface RunSpan {
  /** Run `fn` with the span active, so sends from the task (and its follow-ups) are its children. */
  within<T>(fn: () => T): T;
  /** End the span with the task's end state (`SUCCESS`, `FAILURE`, `RETRY`, …) and its error, if any. */
  end(state: string, error?: { type: string; message: string } | undefined): void;
}

/** The hooks the producer, the worker and `AsyncResult` call when tracing is on. */
export interface Tracing {
  send(info: SendInfo): SendSpan;
  receive(info: ReceiveInfo): ReceiveSpan;
  run(info: RunInfo): RunSpan;
  /** Wrap a wait for a task's result in a span (CLIENT, `result/<task>` or `result`). */
  result<T>(id: string, task: string | undefined, wait: () => Promise<T>): Promise<T>;
}

/** Options of `createTracing`. */
export interface TracingOptions {
  /** The API module; `loadTracing` imports it. */
  api: OtelApi;
  /** A tracer provider (default: the global one the application registered). */
  tracerProvider?: Api.TracerProvider | undefined;
  /** Version recorded on the instrumentation scope. */
  version?: string | undefined;
}

/** Build the tracing hooks over an OpenTelemetry API module. */
export function createTracing(options: TracingOptions): Tracing {
  const { api } = options;
  const tracer = (options.tracerProvider ?? api.trace.getTracerProvider()).getTracer(A.TRACER_NAME, options.version);
  const fail = (span: Api.Span, error: unknown): void => {
    const message = error instanceof Error ? error.message : String(error);
    span.recordException(error instanceof Error ? error : { message });
    span.setStatus({ code: api.SpanStatusCode.ERROR, message });
  };
  return {
    send(info) {
      const span = tracer.startSpan(`${A.ACTION_APPLY_ASYNC}/${info.task}`, {
        kind: api.SpanKind.PRODUCER,
        attributes: {
          [A.CELERY_ACTION]: A.ACTION_APPLY_ASYNC,
          [A.MESSAGING_MESSAGE_ID]: info.id,
          [A.CELERY_TASK_NAME]: info.task,
          [A.MESSAGING_DESTINATION]: info.queue,
          ...(info.retries ? { [A.CELERY_RETRIES]: info.retries } : {}),
        },
      });
      const headers: Record<string, string> = {};
      api.propagation.inject(api.trace.setSpan(api.context.active(), span), headers, headerSetter);
      return {
        headers,
        end(error) {
          if (error !== undefined) fail(span, error);
          span.end();
        },
      };
    },
    receive(info) {
      const parent = api.propagation.extract(api.ROOT_CONTEXT, info.headers, headerGetter);
      const span = tracer.startSpan(
        info.task ? `${A.ACTION_RECEIVE}/${info.task}` : A.ACTION_RECEIVE,
        {
          kind: api.SpanKind.CONSUMER,
          attributes: {
            [A.CELERY_ACTION]: A.ACTION_RECEIVE,
            ...(info.task ? { [A.CELERY_TASK_NAME]: info.task } : {}),
            ...(info.id ? { [A.MESSAGING_MESSAGE_ID]: info.id } : {}),
            [A.CELERY_HOSTNAME]: info.hostname,
            [A.MESSAGING_DESTINATION]: info.queue,
            ...(info.redelivered ? { [A.MESSAGING_REDELIVERED]: true } : {}),
          },
        },
        parent,
      );
      let ended = false;
      return {
        end(state, reason, eta) {
          if (ended) return;
          ended = true;
          span.setAttribute(A.CELERY_STATE, state);
          if (eta) span.setAttribute(A.CELERY_ETA, new Date(eta).toISOString());
          if (reason !== undefined) span.setAttribute(A.CELERY_REJECT_REASON, reason);
          if (state === 'REJECTED') span.setStatus({ code: api.SpanStatusCode.ERROR, message: reason ?? 'rejected' });
          span.end();
        },
      };
    },
    run(info) {
      // The parent comes from the message alone, never from whatever context the consumer loop runs in.
      const parent = api.propagation.extract(api.ROOT_CONTEXT, info.headers, headerGetter);
      const [hard, soft] = info.timeLimit;
      const span = tracer.startSpan(
        `${A.ACTION_RUN}/${info.task}`,
        {
          kind: api.SpanKind.CONSUMER,
          attributes: {
            [A.CELERY_ACTION]: A.ACTION_RUN,
            [A.CELERY_TASK_NAME]: info.task,
            [A.MESSAGING_MESSAGE_ID]: info.id,
            [A.CELERY_HOSTNAME]: info.hostname,
            [A.MESSAGING_DESTINATION]: info.queue,
            ...(info.retries > 0 ? { [A.CELERY_RETRIES]: info.retries } : {}),
            ...(hard !== null || soft !== null ? { [A.CELERY_TIMELIMIT]: [String(hard ?? ''), String(soft ?? '')] } : {}),
            ...(info.priority ? { [A.CELERY_PRIORITY]: info.priority } : {}),
            ...(info.correlationId ? { [A.MESSAGING_CONVERSATION_ID]: info.correlationId } : {}),
          },
        },
        parent,
      );
      const active = api.trace.setSpan(parent, span);
      return {
        within: (fn) => api.context.with(active, fn),
        end(state, error) {
          span.setAttribute(A.CELERY_STATE, state);
          if (error && state === 'RETRY') span.setAttribute(A.CELERY_RETRY_REASON, `${error.type}: ${error.message}`);
          else if (error) {
            span.recordException({ name: error.type, message: error.message });
            span.setStatus({ code: api.SpanStatusCode.ERROR, message: `${error.type}: ${error.message}` });
          }
          span.end();
        },
      };
    },
    async result(id, task, wait) {
      const span = tracer.startSpan(task ? `${A.ACTION_RESULT}/${task}` : A.ACTION_RESULT, {
        kind: api.SpanKind.CLIENT,
        attributes: { [A.CELERY_ACTION]: A.ACTION_RESULT, [A.MESSAGING_MESSAGE_ID]: id, ...(task ? { [A.CELERY_TASK_NAME]: task } : {}) },
      });
      try {
        return await api.context.with(api.trace.setSpan(api.context.active(), span), wait);
      } catch (err) {
        fail(span, err);
        throw err;
      } finally {
        span.end();
      }
    },
  };
}
