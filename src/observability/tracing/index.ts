/**
 * OpenTelemetry tracing of task messages, interoperable with Python's
 * opentelemetry-instrumentation-celery (see attributes.ts and carrier.ts).
 */
export { createTracing, type OtelApi, type ReceiveInfo, type ReceiveSpan, type RunInfo, type RunSpan, type SendInfo, type SendSpan, type Tracing, type TracingOptions } from './tracing.ts';
export { loadTracing } from './load.ts';
export * as TraceAttributes from './attributes.ts';
