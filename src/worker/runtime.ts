/**
 * What a worker needs from the app that hosts it, and nothing more. The
 * app (client/app.ts) provides it; the worker never imports the app, and
 * the app never imports the worker.
 */
import type { ResolvedSettings } from '../config/options.ts';
import type { Broker } from '../core/broker.ts';
import type { Logger } from '../observability/logging.ts';
import type { BodyDecoder } from '../protocol/task-message.ts';
import type { MessageSecurity } from '../security/message-security-types.ts';
import type { FollowUpSender } from '../client/producer.ts';
import type { ResultStore } from '../client/results.ts';
import type { TaskDefinition } from '../client/task.ts';
import type { Tracing } from '../observability/tracing/index.ts';

/** The message-security hooks a worker calls: prepare at start, admission, and settling of replay holds. */
export type WorkerSecurity = Pick<MessageSecurity, 'prepare' | 'admit' | 'settled' | 'released' | 'verifiesSenders'>;

/** The app as a worker sees it (an `App` is one). */
export interface WorkerRuntime {
  readonly settings: ResolvedSettings;
  readonly logger: Logger;
  /** Registered tasks by name. */
  readonly registry: ReadonlyMap<string, TaskDefinition>;
  readonly security: WorkerSecurity;
  /** Decoder for received bodies: accept list, limits, signature verification. */
  readonly decodeBody: BodyDecoder;
  /** Sends retries, chain steps, callbacks and errbacks exactly as the client sends tasks. */
  readonly producer: FollowUpSender;
  /** The broker, connected on first use. */
  broker(): Promise<Broker>;
  /** The result store, or undefined when results are off. */
  resultStore(): Promise<ResultStore | undefined>;
  /** Re-read broker and backend credentials (SIGHUP). */
  reloadCredentials(options?: { announce?: boolean }): Promise<{ broker: boolean; backend: boolean }>;
  /** Close the app's connections (a prefork child, on stop). */
  close(): Promise<void>;
  /** OpenTelemetry hooks when `telemetryTracing` is on (loaded with the broker); undefined when off. */
  readonly tracing?: Tracing | undefined;
}
