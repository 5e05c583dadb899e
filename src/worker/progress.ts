/**
 * Progress states (`currentTask().updateState('PROGRESS', meta)`): the
 * record Celery's `Task.update_state` writes (the state, the meta as
 * `result`, group and parent ids, and the `result_extended` fields when
 * `resultExtended` is on), stored while the task runs. The task's final
 * record waits for every update begun before it, so a late PROGRESS can
 * never land after the task's end.
 */
import { buildResultMeta } from '../protocol/result-meta.ts';
import type { ExecOutcome } from './execute.ts';
import { extended } from './outcomes.ts';
import { storeMeta } from './settle.ts';
import type { Job, WorkerState } from './state.ts';

/** Progress writes still on their way, by job. */
const inFlight = new WeakMap<Job, Set<Promise<boolean>>>();

/** The `updateState` a job's execution offers its task (undefined when the worker keeps no results). */
export function progressWriter(w: WorkerState, job: Job): ((state: string, meta: unknown) => Promise<boolean>) | undefined {
  if (!w.store) return undefined;
  return (state, meta) => {
    const { req } = job;
    const record = buildResultMeta({ taskId: req.id, status: state, result: meta, groupId: req.group, parentId: req.parentId, extended: extended(w, job) });
    const write = storeMeta(w, record, req).then(
      () => true,
      (err: unknown) => {
        w.logger.warn({ err, id: req.id, task: req.task, state }, `task ${req.task}[${req.id}]: could not store state ${state}`);
        return false;
      },
    );
    let set = inFlight.get(job);
    if (!set) inFlight.set(job, (set = new Set()));
    set.add(write);
    void write.finally(() => set.delete(write));
    return write;
  };
}

/**
 * The outcome once the job's progress writes have landed: the outcome
 * itself (no promise) when none is on its way, the common case.
 */
export function afterProgress(job: Job, outcome: ExecOutcome | Promise<ExecOutcome>): ExecOutcome | Promise<ExecOutcome> {
  // Read once the task has ended: an async task may begin updates at any point of its run.
  const settled = (o: ExecOutcome): ExecOutcome | Promise<ExecOutcome> => {
    const set = inFlight.get(job);
    return set && set.size > 0 ? Promise.allSettled([...set]).then(() => o) : o;
  };
  return outcome instanceof Promise ? outcome.then(settled) : settled(outcome);
}
