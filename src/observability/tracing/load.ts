/**
 * Loading `@opentelemetry/api` on demand: it is an optional peer
 * dependency, imported only when `telemetryTracing` is on, so an app that
 * does not trace neither needs it installed nor pays for loading it.
 */
import { ConfigError } from '../../errors.ts';
import { createTracing, type OtelApi, type Tracing } from './tracing.ts';

let loading: Promise<Tracing> | undefined;

/**
 * The tracing hooks over the application's `@opentelemetry/api` (one per
 * process: the API's globals are process-wide). Rejects with a
 * `ConfigError` when the package is not installed.
 */
export function loadTracing(): Promise<Tracing> {
  loading ??= (async () => {
    let api: OtelApi;
    try {
      api = (await import('@opentelemetry/api')) as OtelApi;
    } catch (cause) {
      loading = undefined;
      throw new ConfigError('telemetryTracing is on but @opentelemetry/api cannot be loaded', {
        hint: 'install it beside your OpenTelemetry SDK (npm install @opentelemetry/api), or turn telemetryTracing off',
        cause,
      });
    }
    return createTracing({ api });
  })();
  return loading;
}
