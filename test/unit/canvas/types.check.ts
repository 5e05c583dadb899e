/**
 * Type-level checks of the canvas API, compiled by `npm run typecheck`
 * (never run): results are typed through sig/chain/group/chord, and an
 * unknown option is a type error.
 */
import { createApp } from '../../../src/client/app.ts';
import { chain, chord, group, sig, si } from '../../../src/index.ts';

export function canvasTypes(): void {
  const app = createApp({});
  const add = app.task('t.add', (x: number, y: number) => x + y);
  const py = app.remoteTask<(x: number) => string>('tasks.x');
  const s = sig(add, [1, 2]);
  const n: Promise<number> = s.applyAsync(app).then((r) => r.get());
  const c = chain(sig(add, [1, 2]), sig(py, []));
  const str: Promise<string> = c.applyAsync(app).then((r) => r.get());
  const g = group(sig(add, [1, 1]), sig(py, [2]));
  const pair: Promise<[number, string]> = g.applyAsync(app).then((r) => r.join());
  const ch = chord([sig(add, [1, 1])], si(py, [1]));
  const body: Promise<string> = ch.applyAsync(app).then((r) => r.get());
  // @ts-expect-error unknown option
  sig(add, [1], {}, { countdwn: 1 });
  void n; void str; void pair; void body;
}
