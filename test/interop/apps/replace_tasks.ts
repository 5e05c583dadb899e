/**
 * canvas_tasks.ts plus the Celeriac side of the replace / add_to_chord
 * interop tests (test/interop/redis/canvas-replace.test.ts); the Python
 * side is `tasks.py_replace` and `tasks.py_adder` in harness_tasks.py.
 */
import { chain, chord, group, sig } from '../../../src/index.ts';
import { currentTask } from '../../../src/worker/context.ts';
import { app } from './canvas_tasks.ts';

export { app };

const add = (x: number, y: number | undefined, queue: string) => sig('tasks.add', y === undefined ? [x] : [x, y], {}, { queue });

/**
 * tasks.ts_replace(x, how='task', side='py'): replaced by tasks.add(x, 100)
 * on queue `side`; `how` 'chain': add(x, 2) on `side` then add(1) on ts;
 * 'group': add(x, 1) on `side` and add(x, 2) on ts; 'chord': that group
 * with tasks.tsum on `side`.
 */
export const tsReplace = app.task(
  'tasks.ts_replace',
  (x: number, how = 'task', side = 'py') => {
    const ctx = currentTask();
    if (how === 'chain') return ctx.replace(chain(add(x, 2, side), add(1, undefined, 'ts')));
    if (how === 'group') return ctx.replace(group(add(x, 1, side), add(x, 2, 'ts')));
    if (how === 'chord') return ctx.replace(chord([add(x, 1, side), add(x, 2, 'ts')], sig('tasks.tsum', [], {}, { queue: side })));
    return ctx.replace(add(x, 100, side));
  },
  { params: ['x', 'how', 'side'] },
);

/** tasks.ts_adder(x, n, side='py'): adds tasks.add(n, n) on queue `side` to its chord; returns x. */
export const tsAdder = app.task(
  'tasks.ts_adder',
  async (x: number, n: number, side = 'py') => {
    await currentTask().addToChord(add(n, n, side));
    return x;
  },
  { params: ['x', 'n', 'side'] },
);
