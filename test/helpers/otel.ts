/**
 * An OpenTelemetry SDK for tests, registered globally as an application
 * would: W3C trace context propagator, AsyncLocalStorage context manager,
 * and a tracer provider exporting to memory.
 */
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';

export interface TestOtel {
  exporter: InMemorySpanExporter;
  spans(): ReadableSpan[];
  /** The first finished span with this name, waiting up to `timeoutMs`. */
  waitSpan(name: string, timeoutMs?: number, where?: (s: ReadableSpan) => boolean): Promise<ReadableSpan>;
}

let installed: TestOtel | undefined;

/** Register the test SDK once per process. */
export function installTestOtel(): TestOtel {
  if (installed) return installed;
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  trace.setGlobalTracerProvider(provider);
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  installed = {
    exporter,
    spans: () => exporter.getFinishedSpans(),
    async waitSpan(name, timeoutMs = 20_000, where = () => true) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const s = exporter.getFinishedSpans().find((x) => x.name === name && where(x));
        if (s) return s;
        if (Date.now() > deadline) throw new Error(`no finished span ${name} after ${timeoutMs} ms; have: ${exporter.getFinishedSpans().map((x) => x.name).join(', ')}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
  return installed;
}

/** The parent span id of a finished span (sdk-trace-base 2.x keeps it in `parentSpanContext`). */
export function parentOf(s: ReadableSpan): string | undefined {
  return (s as unknown as { parentSpanContext?: { spanId: string } }).parentSpanContext?.spanId;
}
