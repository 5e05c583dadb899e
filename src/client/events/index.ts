/**
 * Reading Celery events: the typed receiver, the checks it applies, and the
 * state aggregator (workers, tasks, counts and rates).
 */
export { createEventReceiver, type EventReceiver, type EventReceiverOptions, type EventReceiverStats } from './receiver.ts';
export { DEFAULT_EVENT_LIMITS, parseEvent, parseEventMessage, type EventLimits, type ParsedEvents } from './parse.ts';
export { createEventState, type EventState, type EventStateOptions, type EventTaskState, type TaskStateName, type TaskTypeStats, type WorkerState } from './state.ts';
export * from './types.ts';
