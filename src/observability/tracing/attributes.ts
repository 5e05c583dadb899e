/**
 * The span names and attribute names of Python's
 * opentelemetry-instrumentation-celery, so a Celeriac hop and a Celery hop
 * look the same in one trace: `apply_async/<task>` (PRODUCER) when a task
 * is sent, `run/<task>` (CONSUMER) when it runs, attributes `celery.*`
 * plus the (older) messaging semantic conventions that instrumentation sets.
 * `receive/<task>` and `result/<task>` are Celeriac's own additions.
 */

/** `celery.action`: which side of the hop the span is. */
export const CELERY_ACTION = 'celery.action';
/** `celery.task_name`: the registered task name. */
export const CELERY_TASK_NAME = 'celery.task_name';
/** `celery.state`: the task's end state on a run span (SUCCESS, FAILURE, RETRY, …). */
export const CELERY_STATE = 'celery.state';
/** `celery.hostname`: the node that ran the task (run span). */
export const CELERY_HOSTNAME = 'celery.hostname';
/** `celery.retries`: set only when the message is a retry (> 0), as Python does. */
export const CELERY_RETRIES = 'celery.retries';
/** `celery.timelimit`: `[hard, soft]`, set only when one of them is set. */
export const CELERY_TIMELIMIT = 'celery.timelimit';
/** `celery.eta` / `celery.expires`: ISO strings as in the message headers. */
export const CELERY_ETA = 'celery.eta';
export const CELERY_EXPIRES = 'celery.expires';
/** `celery.priority`, `celery.exchange`: as the message carries them. */
export const CELERY_PRIORITY = 'celery.priority';
export const CELERY_EXCHANGE = 'celery.exchange';
/** `celery.retry.reason`: the error that made a task retry. */
export const CELERY_RETRY_REASON = 'celery.retry.reason';
/** `messaging.message_id`: the task id. */
export const MESSAGING_MESSAGE_ID = 'messaging.message_id';
/** `messaging.destination`: the routing key (the queue, for Celery's default direct routing). */
export const MESSAGING_DESTINATION = 'messaging.destination';
/** `messaging.conversation_id`: the message's correlation id (the task id in Celery). */
export const MESSAGING_CONVERSATION_ID = 'messaging.conversation_id';

/** `messaging.redelivered`: set on a receive span when the broker says the message was delivered before. */
export const MESSAGING_REDELIVERED = 'messaging.redelivered';

/** `celery.action` values. */
export const ACTION_APPLY_ASYNC = 'apply_async';
export const ACTION_RUN = 'run';
/** Celeriac's own: waiting for a result (`AsyncResult.get`); Python's instrumentation has no such span. */
export const ACTION_RESULT = 'result';
/** Celeriac's own: a worker taking a message in (decode, signature, replay and revoke checks) until it is scheduled or refused. */
export const ACTION_RECEIVE = 'receive';
/** `celery.reject.reason`: why a receive span's message was refused (dead-lettered, revoked or given back). */
export const CELERY_REJECT_REASON = 'celery.reject.reason';

/** The instrumentation scope name spans are created under. */
export const TRACER_NAME = 'celeriac';
