/**
 * The worker's side of OpenTelemetry tracing: one `run/<task>` span per
 * execution, parented by the trace context in the message headers, active
 * while the task runs and while its outcome is handled (so sends from the
 * task, retries and chain steps are its children).
 */
import type { Tracing } from '../observability/tracing/index.ts';
import type { ExecOutcome } from './execute.ts';
import type { Job } from './state.ts';

/** Celery's state name for an outcome (`celery.state` on the run span). */
function stateOf(o: ExecOutcome): { state: string; error?: { type: string; message: string } } {
  switch (o.kind) {
    case 'success':
      return { state: 'SUCCESS' };
    case 'failure':
      return { state: 'FAILURE', error: { type: o.exc.exc_type, message: o.exc.exc_message.map(String).join(', ') } };
    case 'retry':
      return { state: 'RETRY', ...(o.options.exc ? { error: { type: o.options.exc.exc_type, message: o.options.exc.exc_message.map(String).join(', ') } } : {}) };
    case 'timeout':
      return { state: 'FAILURE', error: { type: 'TimeLimitExceeded', message: `${o.limitSeconds}` } };
    case 'lost':
      return { state: 'FAILURE', error: { type: 'WorkerLostError', message: o.reason } };
    case 'replaced':
      // Celery's state for a task that raised Ignore (replace() does).
      return { state: 'IGNORED' };
  }
}

/** Run a job inside its run span; `done` handles the outcome with the span still active. */
export function runTraced(tracing: Tracing, job: Job, hostname: string, exec: () => ExecOutcome | Promise<ExecOutcome>, done: (o: ExecOutcome) => void): void {
  const { req, delivery } = job;
  const span = tracing.run({
    task: req.task,
    id: req.id,
    headers: req.headers,
    hostname,
    queue: delivery.queue,
    retries: req.retries,
    timeLimit: req.timeLimit,
    priority: req.priority,
    correlationId: req.correlationId,
  });
  span.within(() => {
    const finish = (o: ExecOutcome): void => {
      const { state, error } = stateOf(o);
      span.end(state, error);
      done(o);
    };
    const outcome = exec();
    if (outcome instanceof Promise) outcome.then(finish);
    else finish(outcome);
  });
}
