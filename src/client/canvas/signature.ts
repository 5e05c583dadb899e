/**
 * Canvas signatures: a task call as a value (Celery's `Signature`), and the
 * workflows built of them (`chain`, `group`, `chord`). Each serialises to
 * the dict Celery 5.2.6 puts on the wire (`task`, `args`, `kwargs`,
 * `options`, `subtask_type`, `immutable`), so a Python worker runs a
 * Celeriac-built workflow and a Celeriac worker runs a Python-built one.
 *
 * Values are immutable: `set`, `link`, `linkError` return new signatures.
 */
import { ValidationError } from '../../errors.ts';
import type { JsonValue, SignatureDict } from '../../protocol/types.ts';
import type { AsyncResult } from '../result.ts';
import type { TaskHandle } from '../task.ts';
import type { GroupResult } from './result-set.ts';
import { sendForGroup, sendForResult, type CanvasApplyOptions, type CanvasHost } from './run.ts';
import { optionsToWire, type SignatureOptions } from './signature-options.ts';

export type { SignatureOptions } from './signature-options.ts';
export type { CanvasApplyOptions, CanvasHost } from './run.ts';

/** Anything a workflow is built of. `R` is the value its result holds. */
export type Canvas<R = unknown> = Signature<R> | Chain<R> | Group<R extends readonly unknown[] ? R : readonly unknown[]> | Chord<R>;

/** What every canvas element has. */
abstract class CanvasBase {
  /** Celery's option dict (snake_case, as on the wire). */
  readonly options: Readonly<Record<string, JsonValue>>;
  constructor(options: Readonly<Record<string, JsonValue>>) {
    this.options = options;
  }
  /** The dict Celery 5.2.6 serialises this element to. */
  abstract toDict(): SignatureDict;
  protected linked(name: 'link' | 'link_error', callback: Signature<unknown>): Record<string, JsonValue> {
    const current = this.options[name];
    const list = Array.isArray(current) ? current : current ? [current] : [];
    return { ...this.options, [name]: [...list, callback.toDict() as unknown as JsonValue] };
  }
}

/** One task call: name, arguments, options (Celery's `Signature`, `subtask_type` null). */
export class Signature<R = unknown> extends CanvasBase {
  declare readonly __result?: R;
  readonly task: string;
  readonly args: readonly JsonValue[];
  readonly kwargs: Readonly<Record<string, JsonValue>>;
  /** An immutable signature ignores its parent's result (Celery's `si()`). */
  readonly immutable: boolean;

  constructor(task: string, args: readonly unknown[] = [], kwargs: Readonly<Record<string, unknown>> = {}, options: Readonly<Record<string, JsonValue>> = {}, immutable = false) {
    super(options);
    if (typeof task !== 'string' || task.length === 0) throw new ValidationError('a signature needs a task name', { field: 'task' });
    this.task = task;
    this.args = args as JsonValue[];
    this.kwargs = kwargs as Record<string, JsonValue>;
    this.immutable = immutable;
  }

  /** A copy with these options added. */
  set(options: SignatureOptions): Signature<R> {
    return new Signature<R>(this.task, this.args, this.kwargs, { ...this.options, ...optionsToWire(options) }, this.immutable);
  }

  /** A copy that calls `callback` with this task's result when it succeeds (Celery's `link`). */
  link(callback: Signature<unknown>): Signature<R> {
    return new Signature<R>(this.task, this.args, this.kwargs, this.linked('link', callback), this.immutable);
  }

  /** A copy that calls `errback` when this task fails (Celery's `link_error`). */
  linkError(errback: Signature<unknown>): Signature<R> {
    return new Signature<R>(this.task, this.args, this.kwargs, this.linked('link_error', errback), this.immutable);
  }

  /** Send this call through `app`; the result handle resolves once the broker holds the message. */
  applyAsync(app: CanvasHost, options: CanvasApplyOptions = {}): Promise<AsyncResult<R>> {
    return sendForResult<R>(app, this.toDict(), options);
  }

  /** Send with these args prepended (Celery's `sig.delay(*args)`). */
  delay(app: CanvasHost, ...args: unknown[]): Promise<AsyncResult<R>> {
    return sendForResult<R>(app, this.toDict(), { args });
  }

  toDict(): SignatureDict {
    return { task: this.task, args: [...this.args], kwargs: { ...this.kwargs }, options: { ...this.options }, subtask_type: null, immutable: this.immutable };
  }
}

/** Tasks run one after another, each given the previous result (Celery's `chain`). */
export class Chain<R = unknown> extends CanvasBase {
  declare readonly __result?: R;
  readonly tasks: readonly Canvas[];
  constructor(tasks: readonly Canvas[], options: Readonly<Record<string, JsonValue>> = {}) {
    super(options);
    if (tasks.length === 0) throw new ValidationError('a chain needs at least one task', { field: 'tasks' });
    // A chain inside a chain is its steps (Celery flattens `chain(a, chain(b, c))`), and a group
    // followed by a task becomes a chord of the two, as Celery 5.2.6 builds `group | task`.
    const flat = tasks.flatMap((t) => (t instanceof Chain && Object.keys(t.options).length === 0 ? t.tasks : [t]));
    const steps: Canvas[] = [];
    for (const t of flat) {
      const prev = steps[steps.length - 1];
      if (prev instanceof Group && t instanceof Signature) steps[steps.length - 1] = new Chord(prev, t);
      else steps.push(t);
    }
    this.tasks = steps;
  }
  set(options: SignatureOptions): Chain<R> {
    return new Chain<R>(this.tasks, { ...this.options, ...optionsToWire(options) });
  }
  /** Call `callback` with the last task's result. */
  link(callback: Signature<unknown>): Chain<R> {
    return new Chain<R>(this.tasks, this.linked('link', callback));
  }
  /** Call `errback` when any step fails (each step carries it; it runs once, for the step that failed). */
  linkError(errback: Signature<unknown>): Chain<R> {
    return new Chain<R>(this.tasks, this.linked('link_error', errback));
  }
  /** Send the chain; the handle is the last step's result. */
  applyAsync(app: CanvasHost, options: CanvasApplyOptions = {}): Promise<AsyncResult<R>> {
    return sendForResult<R>(app, this.toDict(), options);
  }
  toDict(): SignatureDict {
    return { task: 'celery.chain', args: [], kwargs: { tasks: this.tasks.map((t) => t.toDict() as unknown as JsonValue) }, options: { ...this.options }, subtask_type: 'chain', immutable: false };
  }
}

/** Tasks run in parallel; the result is the list of their results (Celery's `group`). */
export class Group<R extends readonly unknown[] = readonly unknown[]> extends CanvasBase {
  declare readonly __result?: R;
  readonly tasks: readonly Canvas[];
  constructor(tasks: readonly Canvas[], options: Readonly<Record<string, JsonValue>> = {}) {
    super(options);
    this.tasks = tasks;
  }
  set(options: SignatureOptions): Group<R> {
    return new Group<R>(this.tasks, { ...this.options, ...optionsToWire(options) });
  }
  /** Call `errback` when a member fails (each member carries it, as Celery's `group.link_error` does). */
  linkError(errback: Signature<unknown>): Group<R> {
    return new Group<R>(
      this.tasks.map((t) => (t instanceof Signature || t instanceof Chain || t instanceof Group ? t.linkError(errback) : t)),
      this.options,
    );
  }
  /** Send every task of the group; the handle reads all their results. */
  applyAsync(app: CanvasHost, options: CanvasApplyOptions = {}): Promise<GroupResult<R>> {
    return sendForGroup<R>(app, this.toDict(), options);
  }
  toDict(): SignatureDict {
    return { task: 'celery.group', args: [], kwargs: { tasks: this.tasks.map((t) => t.toDict() as unknown as JsonValue) }, options: { ...this.options }, subtask_type: 'group', immutable: false };
  }
}

/** A group whose results, once all are in, are passed as one list to `body` (Celery's `chord`). */
export class Chord<R = unknown> extends CanvasBase {
  declare readonly __result?: R;
  readonly header: Group<readonly unknown[]>;
  readonly body: Canvas;
  constructor(header: Group<readonly unknown[]> | readonly Canvas[], body: Canvas, options: Readonly<Record<string, JsonValue>> = {}) {
    super(options);
    this.header = header instanceof Group ? header : new Group(header);
    this.body = body;
  }
  set(options: SignatureOptions): Chord<R> {
    return new Chord<R>(this.header, this.body, { ...this.options, ...optionsToWire(options) });
  }
  /** Call `callback` with the body's result (Celery links it to the body). */
  link(callback: Signature<unknown>): Chord<R> {
    return new Chord<R>(this.header, linkBody(this.body, 'link', callback), this.options);
  }
  /** Call `errback` when the body fails, a ChordError included (Celery links it to the body). */
  linkError(errback: Signature<unknown>): Chord<R> {
    return new Chord<R>(this.header, linkBody(this.body, 'linkError', errback), this.options);
  }
  /** Send the header (the body is sent by the worker that completes it); the handle is the body's result. */
  applyAsync(app: CanvasHost, options: CanvasApplyOptions = {}): Promise<AsyncResult<R>> {
    return sendForResult<R>(app, this.toDict(), options);
  }
  toDict(): SignatureDict {
    return {
      task: 'celery.chord',
      args: [],
      // Celery keeps the header as the list of its tasks, not a group dict.
      kwargs: { kwargs: {}, header: this.header.tasks.map((t) => t.toDict() as unknown as JsonValue), body: this.body.toDict() as unknown as JsonValue },
      options: { ...this.options },
      subtask_type: 'chord',
      immutable: false,
    };
  }
}

function linkBody(body: Canvas, how: 'link' | 'linkError', sig: Signature<unknown>): Canvas {
  if (body instanceof Group) throw new ValidationError('a chord whose body is a group cannot be linked', { hint: 'link the group members, or make the body a task or chain' });
  return how === 'link' ? body.link(sig) : body.linkError(sig);
}

/** A task named by a handle (`app.task`, `app.remoteTask`) or by its registered name. */
export type TaskRef<A extends readonly unknown[] = readonly unknown[], R = unknown> = TaskHandle<A, R, never> | TaskHandle<A, R, Record<string, unknown>> | { readonly name: string } | string;

type ResultOf<T> = T extends { delay(...a: never[]): Promise<{ get(...o: never[]): Promise<infer R> }> } ? R : unknown;

function nameOf(task: TaskRef): string {
  return typeof task === 'string' ? task : task.name;
}

/**
 * A signature of a task call (Celery's `task.s(...)`): in a chain, the
 * previous result is prepended to `args`.
 */
export function sig<T extends TaskRef>(task: T, args: readonly unknown[] = [], kwargs: Readonly<Record<string, unknown>> = {}, options: SignatureOptions = {}): Signature<ResultOf<T>> {
  return new Signature<ResultOf<T>>(nameOf(task), args, kwargs, optionsToWire(options));
}

/** An immutable signature (Celery's `task.si(...)`): it ignores the previous result. */
export function si<T extends TaskRef>(task: T, args: readonly unknown[] = [], kwargs: Readonly<Record<string, unknown>> = {}, options: SignatureOptions = {}): Signature<ResultOf<T>> {
  return new Signature<ResultOf<T>>(nameOf(task), args, kwargs, optionsToWire(options), true);
}

type LastResult<T extends readonly Canvas[]> = T extends readonly [...Canvas[], infer L] ? (L extends { __result?: infer R } ? R : unknown) : unknown;
type Results<T extends readonly Canvas[]> = { -readonly [I in keyof T]: T[I] extends { __result?: infer R } ? R : unknown };

/** Run `tasks` one after another, each receiving the previous result (Celery's `chain`). */
export function chain<T extends readonly Canvas[]>(...tasks: T): Chain<LastResult<T>> {
  return new Chain<LastResult<T>>(tasks);
}

/** Run `tasks` in parallel (Celery's `group`). */
export function group<T extends readonly Canvas[]>(...tasks: T): Group<Results<T>> {
  return new Group<Results<T>>(tasks);
}

/** Run `header` in parallel, then `body` with the list of their results (Celery's `chord`). */
export function chord<B extends Canvas>(header: Group<readonly unknown[]> | readonly Canvas[], body: B): Chord<B extends { __result?: infer R } ? R : unknown> {
  return new Chord(header, body);
}

/**
 * Celery's `task.map(items)`: one `celery.map` task that calls the task on
 * each item in turn, in one worker (Python's and Celeriac's both have the
 * builtin); its result is the list of results.
 */
export function map<T extends TaskRef>(task: T, items: readonly unknown[]): Signature<Array<ResultOf<T>>> {
  return new Signature('celery.map', [], { task: sig(task).toDict() as unknown as JsonValue, it: [...items] as JsonValue[] }, {}, true);
}

/** Celery's `task.starmap(items)`: one `celery.starmap` task, `[task(*args) for args in items]` (see {@link map}). */
export function starmap<T extends TaskRef>(task: T, items: ReadonlyArray<readonly unknown[]>): Signature<Array<ResultOf<T>>> {
  return new Signature('celery.starmap', [], { task: sig(task).toDict() as unknown as JsonValue, it: items.map((a) => [...a]) as JsonValue[] }, {}, true);
}

/**
 * Celery's `task.chunks(items, n)`: the items cut into parts of `n`, each
 * part one `celery.starmap` task (run by a Python worker or a Celeriac
 * worker: both have the builtin), all parts in a group; the group's result
 * is the list of each part's results.
 */
export function chunks<T extends TaskRef>(task: T, items: ReadonlyArray<readonly unknown[]>, n: number): Group<Array<Array<ResultOf<T>>>> {
  if (!Number.isInteger(n) || n < 1) throw new ValidationError('chunks: the part size must be a positive integer', { field: 'n' });
  const inner = sig(task).toDict() as unknown as JsonValue;
  const parts: Signature[] = [];
  for (let i = 0; i < items.length; i += n) parts.push(new Signature('celery.starmap', [], { task: inner, it: items.slice(i, i + n) }, {}, true));
  return new Group(parts);
}

/** Rebuild a canvas from a Celery signature dict (as received, or from `toDict`). */
export function fromDict(d: SignatureDict): Canvas {
  const opts = (d.options ?? {}) as Record<string, JsonValue>;
  const kw = (d.kwargs ?? {}) as Record<string, JsonValue>;
  const list = (v: JsonValue | undefined): Canvas[] => (Array.isArray(v) ? v.map((x) => fromDict(x as unknown as SignatureDict)) : []);
  switch (d.subtask_type) {
    case 'chain':
      return new Chain(list(kw.tasks), opts);
    case 'group':
      return new Group(list(kw.tasks), opts);
    case 'chord': {
      const header = kw.header as unknown as SignatureDict | SignatureDict[] | undefined;
      const h = Array.isArray(header) ? new Group(header.map(fromDict)) : header ? fromDict(header) : new Group([]);
      return new Chord(h instanceof Group ? h : new Group([h]), fromDict(kw.body as unknown as SignatureDict), opts);
    }
    case null:
    case undefined:
      return new Signature(d.task, d.args ?? [], kw, opts, d.immutable === true);
    default:
      throw new ValidationError(`canvas type ${JSON.stringify(d.subtask_type)} is not supported`, { field: 'subtask_type', hint: 'Celeriac runs tasks, chains, groups and chords' });
  }
}
