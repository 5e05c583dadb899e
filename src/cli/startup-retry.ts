/**
 * Start-up connection retry, like Celery's `broker_connection_retry_on_startup`:
 * a worker started before its broker (a container starting beside Redis, a
 * host rebooting) waits for it, saying when it tries again and how many
 * attempts remain, instead of exiting at once.
 */
import { ConnectionError } from '../errors.ts';
import type { ConnectionSection } from '../config/options.ts';

/** Celery's default `broker_connection_max_retries`. */
export const DEFAULT_STARTUP_MAX_RETRIES = 100;

export interface StartupRetryOptions {
  /** Retry at all (`brokerConnectionRetryOnStartup`, default true). */
  enabled: boolean;
  /** Attempts before giving up; 0 = forever (`brokerConnectionMaxRetries`, default 100). */
  maxRetries: number;
  /** Where each "trying again" line goes. */
  warn: (message: string) => void;
  /** Stops waiting (a signal during the countdown). */
  signal?: AbortSignal;
  /** Seconds before retry n (1-based): kombu's 2, 4, 6 … capped at 30. */
  intervalS?: (attempt: number) => number;
}

/** Whether an error may go away by waiting: the server is not up (yet), not a wrong password or certificate. */
export function isRetryableConnectionError(err: unknown): boolean {
  if (!(err instanceof ConnectionError)) return false;
  return err.code === 'ERR_CONNECTION' || err.code === 'ERR_CONNECTION_TIMEOUT' || err.code === 'ERR_CONNECTION_LOST';
}

/** Read the two settings from the `connection` section of an app's resolved settings. */
export function startupRetrySettings(connection: Pick<ConnectionSection, 'brokerConnectionRetryOnStartup' | 'brokerConnectionMaxRetries'>): { enabled: boolean; maxRetries: number } {
  const enabled = connection.brokerConnectionRetryOnStartup !== false;
  const max = connection.brokerConnectionMaxRetries;
  const maxRetries = max === null ? 0 : typeof max === 'number' && Number.isFinite(max) && max >= 0 ? Math.floor(max) : DEFAULT_STARTUP_MAX_RETRIES;
  return { enabled, maxRetries };
}

const kombuInterval = (attempt: number): number => Math.min(2 * attempt, 30);

/**
 * Run `connect` until it succeeds, retrying retryable connection errors
 * with a countdown. Rethrows the last error when retries are off, the limit
 * is reached, the error cannot go away by waiting, or `signal` aborts.
 */
export async function connectWithRetry(connect: () => Promise<void>, options: StartupRetryOptions): Promise<void> {
  const interval = options.intervalS ?? kombuInterval;
  for (let attempt = 1; ; attempt++) {
    try {
      await connect();
      if (attempt > 1) options.warn(`connected after ${attempt} attempts`);
      return;
    } catch (err) {
      const limitReached = options.maxRetries > 0 && attempt > options.maxRetries;
      if (!options.enabled || !isRetryableConnectionError(err) || limitReached || options.signal?.aborted) {
        if (limitReached && err instanceof ConnectionError) {
          throw new ConnectionError(`${err.message.split(' — ')[0]}; gave up after ${attempt} attempts (brokerConnectionMaxRetries is ${options.maxRetries})`, {
            hint: err.hint,
            cause: err,
            code: err.code,
          });
        }
        throw err;
      }
      const waitS = interval(attempt);
      const of = options.maxRetries > 0 ? `${attempt}/${options.maxRetries}` : `${attempt}`;
      options.warn(`${(err as Error).message.split(' — ')[0]}; trying again in ${waitS.toFixed(2)} seconds... (${of})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, waitS * 1000);
        function done(): void {
          clearTimeout(timer);
          options.signal?.removeEventListener('abort', done);
          resolve();
        }
        options.signal?.addEventListener('abort', done, { once: true });
      });
      if (options.signal?.aborted) throw err;
    }
  }
}
