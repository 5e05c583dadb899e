/**
 * Where trace context travels: top-level keys of the v2 message headers
 * (`traceparent`, `tracestate`, and whatever else the configured
 * propagator writes). That is where Python's instrumentation puts it:
 * its `before_task_publish` handler injects into the `headers` dict Celery
 * publishes as the message headers, and its worker side reads it back as
 * attributes of `task.request`, which Celery fills from those headers.
 */
import type { TextMapGetter, TextMapSetter } from '@opentelemetry/api';

/** Writes propagation fields as string headers. */
export const headerSetter: TextMapSetter<Record<string, string>> = {
  set(carrier, key, value) {
    carrier[key] = value;
  },
};

/**
 * Reads propagation fields from received headers. Only string values count:
 * headers come from the network, and the propagator validates the format.
 */
export const headerGetter: TextMapGetter<Readonly<Record<string, unknown>>> = {
  get(carrier, key) {
    const v = carrier[key];
    return typeof v === 'string' ? v : undefined;
  },
  keys(carrier) {
    return Object.keys(carrier);
  },
};
