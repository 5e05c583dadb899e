/**
 * Celery's canvas builtin tasks a Celeriac worker runs when a workflow
 * sends them (Python's `task.map(it)`, `task.starmap(it)`, and the parts of
 * `task.chunks(it, n)`; `celery.accumulate`, below, for `replace(group)`):
 * `celery.map(task, it)` is `[task(x) for x in it]`,
 * `celery.starmap(task, it)` is `[task(*args) for args in it]`, each call
 * made in this worker, in order, as Celery makes them (the inner task's own
 * arguments in its signature are not used, as in Celery). The inner task
 * must be registered here; otherwise the builtin fails with NotRegistered.
 */
import { bindArguments, type TaskDefinition } from '../../client/task.ts';
import { ValidationError } from '../../errors.ts';

const BUILTINS: Readonly<Record<string, (call: (args: unknown[]) => unknown, it: unknown[]) => Promise<unknown[]>>> = {
  'celery.map': async (call, it) => {
    const out: unknown[] = [];
    for (const item of it) out.push(await call([item]));
    return out;
  },
  'celery.starmap': async (call, it) => {
    const out: unknown[] = [];
    for (const args of it) {
      if (!Array.isArray(args)) throw new ValidationError('celery.starmap: an item of `it` is not an argument list', { field: 'kwargs.it' });
      out.push(await call(args));
    }
    return out;
  },
};

class NotRegistered extends Error {
  override name = 'NotRegistered';
  readonly excModule = 'celery.exceptions';
}

/**
 * `celery.accumulate(*args, index=None)`: `args[index]`, or the list of
 * args. A group that replaces a task runs as a chord with this body
 * (`index=0`: the list of the group's results), so either side's worker
 * may run it.
 */
const ACCUMULATE: TaskDefinition = {
  name: 'celery.accumulate',
  fn: (...all: unknown[]) => {
    const kwargs = (all.pop() ?? {}) as { index?: unknown };
    const index = kwargs.index;
    if (index === undefined || index === null) return all;
    if (typeof index !== 'number' || !Number.isInteger(index)) throw new ValidationError('celery.accumulate: `index` is not an integer', { field: 'kwargs.index' });
    // Python's negative indices count from the end.
    const at = index < 0 ? all.length + index : index;
    if (at < 0 || at >= all.length) throw Object.assign(new Error('tuple index out of range'), { name: 'IndexError' });
    return all[at];
  },
  options: { kwargs: true },
};

/** The builtin named `name` (undefined when it is none), calling tasks of `registry`. */
export function canvasBuiltin(name: string, registry: ReadonlyMap<string, TaskDefinition>): TaskDefinition | undefined {
  if (name === 'celery.accumulate') return ACCUMULATE;
  const run = BUILTINS[name];
  if (!run) return undefined;
  const fn = (task: unknown, it: unknown): Promise<unknown[]> => {
    const inner = task && typeof task === 'object' ? (task as { task?: unknown }).task : undefined;
    const def = typeof inner === 'string' ? registry.get(inner) : undefined;
    if (!def?.fn) throw new NotRegistered(String(inner));
    if (!Array.isArray(it)) throw new ValidationError(`${name}: \`it\` is not a list`, { field: 'kwargs.it' });
    const innerFn = def.fn;
    // Bound as a call without kwargs (a `kwargs: true` task gets `{}` last), as Python calls `task(*args)`.
    return run((args) => innerFn(...bindArguments(def, args, {})), it);
  };
  return { name, fn: fn as (...args: unknown[]) => unknown, options: { params: ['task', 'it'] } };
}
