/**
 * Celeriac's public API: a Celery-compatible, secure-by-default task queue
 * for TypeScript.
 *
 * ```ts
 * import { createApp } from 'celeriac';
 * export const app = createApp();             // URLs from CELERIAC_BROKER_URL / CELERIAC_RESULT_BACKEND
 * export const add = app.task('tasks.add', (x: number, y: number) => x + y, { params: ['x', 'y'] });
 * const result = await add.delay(2, 3);
 * console.log(await result.get({ timeoutMs: 10_000 })); // 5
 * ```
 */
export { App, createApp, type AppOptions, type SendCall, type MessageSecurity } from './client/app.ts';
export { AsyncResult, type GetOptions } from './client/result.ts';
export { createControl, pidboxRequest, DEFAULT_CONTROL_TIMEOUT_MS, type Control, type ControlOptions, type ControlReply, type Inspect, type BroadcastOptions, type DestinationOptions, type RevokeOptions, type ControlSigner } from './client/control.ts';
export type { TaskHandle, TaskOptions, SendOptions, KwargsByName } from './client/task.ts';
export { createWorker, type WorkerHandle, type WorkerOptions, type WorkerStats } from './worker/worker.ts';
export { currentTask, Retry, Replace, type TaskContext, type RequestInfo, type RetryOptions, type SignatureLike, type AddToChordOptions, type ChordAddition } from './core/task-context.ts';
export { SoftTimeLimitExceeded } from './worker/execute.ts';
export type { AppSettings, AppSettingsInput, TransportOptions } from './config/options.ts';
export type { Broker, Delivery, Consumer, OutboxPublish, PublishOptions } from './core/broker.ts';
export type { BroadcastDelivery, BroadcastItem, Exchange, ExchangeType, MalformedBroadcast, ReplyQueue, ReplyQueueOptions, SubscribeOptions, Subscription } from './core/broker.ts';
export type { ResultBackend } from './core/backend.ts';
export { States, type TaskState, type ResultMeta } from './protocol/result-meta.ts';
export {
  CeleriacError,
  ConfigError,
  ConnectionError,
  DecodeError,
  ProtocolError,
  ContentDisallowedError,
  RemoteTaskError,
  TimeoutError,
  ValidationError,
  QueueFullError,
  RateLimitedError,
  ClosedError,
} from './errors.ts';
export { redactUrl, redactText } from './config/redact.ts';
export { createEventReceiver, type EventReceiver, type EventReceiverOptions, type EventReceiverStats } from './client/events/receiver.ts';
export { createEventState, type EventState, type EventStateOptions, type EventTaskState, type TaskTypeStats, type WorkerState } from './client/events/state.ts';
export { isKnownEvent, isTaskEvent, isWorkerEvent, type CeleryEvent, type EventBase, type GenericEvent, type KnownEvent, type TaskEvent, type WorkerEvent } from './client/events/types.ts';
export { DEFAULT_EVENT_LIMITS, type EventLimits } from './client/events/parse.ts';
// Task model (issue 17): send options checked at run time, the rpc:// reply route, progress writes.
export { UnknownSendOptionError } from './client/send-options.ts';
export type { WaitOptions } from './client/results.ts';
export type { PreparedSend } from './client/producer.ts';
export type { ReplyRoute } from './core/backend.ts';
// ── Canvas (#17): signatures, chain, group, chord, map/starmap; result sets and saved groups ──
export {
  Signature,
  Chain,
  Group,
  Chord,
  sig,
  si,
  chain,
  group,
  chord,
  map,
  starmap,
  chunks,
  fromDict,
  ResultSet,
  GroupResult,
  restoreGroup,
  type Canvas,
  type TaskRef,
  type SignatureOptions,
  type CanvasApplyOptions,
  type CanvasHost,
  type JoinOptions,
  type ErrbackRequest,
} from './client/canvas/index.ts';
export type { Linkable } from './client/task.ts';

// OpenTelemetry tracing (telemetryTracing; docs/tracing.md).
export type { RunSpan, SendSpan, Tracing } from './observability/tracing/tracing.ts';
