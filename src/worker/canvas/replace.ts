/**
 * `currentTask().replace(sig)` and `currentTask().addToChord(sig)`, as
 * Celery 5.2.6's `Task.replace` and `Task.add_to_chord` behave on the wire:
 *
 * replace: the replacement's final task (a chain's last step, a chord's
 * body) takes the task's id and its chord membership (`task_id`,
 * `group_id`, `group_index`, `chord`); the task's callbacks and errbacks
 * are linked to the replacement (a chain's `link` reaches its last step,
 * its `link_error` every step); the rest of the task's chain follows the
 * replacement with the same ids as before; a group becomes a chord whose
 * body is `celery.accumulate(index=0)` (so its list of results can be
 * linked on). The replacement is sent with `parent_id` the task's id and
 * the task's `root_id`. The task itself stores nothing (Celery's
 * `Ignore`): its id's record is written by the replacement.
 *
 * addToChord: the new part gets the task's chord membership and
 * `root_id`, the join's count goes up by one (Redis: `INCR .t`, which
 * Celery's `on_chord_part_return` adds to `.s`), then the part is sent.
 */
import { applyDict, freeze, type ApplyContext } from '../../client/canvas/apply.ts';
import { ConfigError, ValidationError } from '../../errors.ts';
import type { ChordAddition } from '../../core/task-context.ts';
import type { JsonValue, SignatureDict } from '../../protocol/types.ts';
import { workerSender, type CanvasRequest, type CanvasWorker } from './sender.ts';

type Use = 'replace' | 'addToChord';

const CANVAS_HINT = 'pass sig(task, args), si(...), chain(...), group(...) or chord(...) from celeriac, or a Celery signature dict';

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return `an object without a task name (keys: ${Object.keys(v).slice(0, 5).join(', ') || 'none'})`;
  return `a ${typeof v}`;
}

/** The signature dict of what a task passed to `replace()`/`addToChord()`; `ValidationError` when it is none. */
export function signatureDictOf(value: unknown, use: Use): SignatureDict {
  let d: unknown = value;
  if (isRecord(value) && typeof value.toDict === 'function') d = (value.toDict as () => unknown)();
  if (!isRecord(d) || typeof d.task !== 'string' || d.task.length === 0) {
    throw new ValidationError(`${use}() takes a signature, got ${describe(d)}`, { field: 'signature', hint: CANVAS_HINT });
  }
  for (const key of ['options', 'kwargs'] as const) {
    if (d[key] !== undefined && d[key] !== null && !isRecord(d[key])) throw new ValidationError(`${use}(): the signature's ${key} is not an object`, { field: `signature.${key}`, hint: CANVAS_HINT });
  }
  if (d.args !== undefined && d.args !== null && !Array.isArray(d.args)) throw new ValidationError(`${use}(): the signature's args is not a list`, { field: 'signature.args', hint: CANVAS_HINT });
  const type = d.subtask_type ?? null;
  if (type !== null && !['chain', 'group', 'chord'].includes(type as string)) {
    throw new ValidationError(`${use}(): canvas type ${JSON.stringify(type)} is not supported`, { field: 'signature.subtask_type', hint: 'use a task, chain, group or chord' });
  }
  return { args: [], kwargs: {}, options: {}, subtask_type: null, immutable: false, ...(d as object), task: d.task } as SignatureDict;
}

const tasksOf = (d: SignatureDict): SignatureDict[] => {
  const t = (d.kwargs as Record<string, unknown> | undefined)?.tasks;
  return Array.isArray(t) ? (t as SignatureDict[]) : [];
};

function withOptions(d: SignatureDict, extra: Record<string, JsonValue>): SignatureDict {
  return { ...d, options: { ...(d.options ?? {}), ...extra } };
}

/**
 * `extra` set on the task whose result is the canvas's result: a task
 * itself, a chain's last step, a chord's body (each looked into in turn).
 */
export function onFinalTask(d: SignatureDict, extra: Record<string, JsonValue>, use: Use): SignatureDict {
  switch (d.subtask_type ?? null) {
    case null:
      return withOptions(d, extra);
    case 'chain': {
      const steps = tasksOf(d);
      if (steps.length === 0) throw new ValidationError(`${use}(): the chain is empty`, { field: 'signature.kwargs.tasks', hint: 'give the chain at least one task' });
      const last = onFinalTask(steps[steps.length - 1]!, extra, use);
      return { ...d, kwargs: { ...d.kwargs, tasks: [...steps.slice(0, -1), last] as unknown as JsonValue } };
    }
    case 'chord': {
      const kw = d.kwargs as Record<string, JsonValue>;
      if (!isRecord(kw.body)) throw new ValidationError(`${use}(): the chord has no body`, { field: 'signature.kwargs.body', hint: 'build it with chord(header, body)' });
      return { ...d, kwargs: { ...kw, body: onFinalTask(kw.body as unknown as SignatureDict, extra, use) as unknown as JsonValue } };
    }
    default:
      throw new ValidationError(`${use}(): a workflow whose result is a group's (a chain ending in a group, a chord whose body is a group) has no final task to take this task's place`, {
        field: 'signature',
        hint: 'end it with a task, or pass the group itself (it is run as a chord collecting its results)',
      });
  }
}

const list = (v: unknown): JsonValue[] => (Array.isArray(v) ? (v as JsonValue[]) : isRecord(v) ? [v as JsonValue] : []);

/** Celery's `celery.accumulate.s(index=0)`: a chord body that returns the header's list of results. */
const ACCUMULATE_BODY: SignatureDict = { task: 'celery.accumulate', args: [], kwargs: { index: 0 }, options: {}, subtask_type: null, immutable: false };

/** Check a replacement before the task ends (Celery's `ImproperlyConfigured` cases). */
export function checkReplacement(d: SignatureDict): void {
  if (d.options && d.options.chord !== undefined && d.options.chord !== null) {
    throw new ValidationError('replace(): a signature replacing a task must not be part of a chord', {
      field: 'signature.options.chord',
      hint: "pass it without its chord: the task's own chord membership moves to the replacement",
    });
  }
  onFinalTask(d.subtask_type === 'group' ? ACCUMULATE_BODY : d, {}, 'replace');
}

/**
 * What replacing `req` with `d` sends: the canvas dict and where it is sent
 * from. `queue` is where the task came from: a group's `celery.accumulate`
 * body goes there (Celery routes it to the default queue, which a worker
 * set up with `-Q` may not read; every Celery and Celeriac worker has the
 * builtin, and one reads the task's queue).
 */
export function replacementOf(req: CanvasRequest, d: SignatureDict, queue?: string): { dict: SignatureDict; ctx: ApplyContext } {
  checkReplacement(d);
  let r = d;
  if ((r.subtask_type ?? null) === 'group') {
    const body: SignatureDict = queue ? withOptions(ACCUMULATE_BODY, { queue }) : ACCUMULATE_BODY;
    // The header keeps the group (its id, if frozen, is the join's group id).
    r = { task: 'celery.chord', args: [], kwargs: { kwargs: {}, header: r as unknown as JsonValue, body: body as unknown as JsonValue }, options: {}, subtask_type: 'chord', immutable: false };
  }
  const callbacks = req.embed.callbacks ?? [];
  const errbacks = req.embed.errbacks ?? [];
  const links: Record<string, JsonValue> = {};
  if (callbacks.length > 0) links.link = [...list(r.options?.link), ...(callbacks as unknown as JsonValue[])];
  if (errbacks.length > 0) links.link_error = [...list(r.options?.link_error), ...(errbacks as unknown as JsonValue[])];
  if (Object.keys(links).length > 0) r = withOptions(r, links);
  r = onFinalTask(r, { task_id: req.id, group_id: req.group, group_index: req.groupIndex, chord: req.embed.chord as unknown as JsonValue }, 'replace');
  return { dict: r, ctx: { parentId: req.id, rootId: req.rootId, chain: req.embed.chain && req.embed.chain.length > 0 ? req.embed.chain : null } };
}

/** Send the replacement of `req` (the worker then acks the task and stores nothing for it). */
export async function sendReplacement(w: CanvasWorker, req: CanvasRequest, d: SignatureDict, queue?: string): Promise<string> {
  const { dict, ctx } = replacementOf(req, d, queue);
  return (await applyDict(workerSender(w), dict, ctx)).id;
}

/** The part `addToChord()` adds to `req`'s chord: membership set and ids fixed. */
export function chordAdditionOf(req: CanvasRequest, d: SignatureDict): { dict: SignatureDict; id: string; groupId: string } {
  const chord = req.embed.chord;
  if (!chord || !req.group) {
    throw new ValidationError(`addToChord(): task ${req.task}[${req.id}] is not part of a chord header`, {
      hint: 'call it from a task sent in a chord header (chord([...], body)); to start more work elsewhere, send it with applyAsync()',
    });
  }
  const type = d.subtask_type ?? null;
  if (type !== null && type !== 'chain') {
    throw new ValidationError(`addToChord(): a ${type} adds more than one part`, { field: 'signature.subtask_type', hint: 'add each task with its own addToChord() call, or add a chain (its last step is the part)' });
  }
  const member = onFinalTask(d, { group_id: req.group, group_index: req.groupIndex, chord: chord as unknown as JsonValue, root_id: req.rootId }, 'addToChord');
  const { dict, id } = freeze(member);
  return { dict, id, groupId: req.group };
}

/** Add `d` to `req`'s chord: count it in the join, then send it unless `lazy`. */
export async function addToChord(w: CanvasWorker, req: CanvasRequest, d: SignatureDict, lazy: boolean): Promise<ChordAddition> {
  const { dict, id, groupId } = chordAdditionOf(req, d);
  const backend = w.store?.backend;
  if (!backend?.addToChord) {
    throw new ConfigError(`addToChord(): ${backend ? `the ${backend.kind} result backend` : 'this worker has no result backend, so it'} cannot grow a chord`, {
      hint: 'use a Redis, SQLite or memory result backend for chords',
    });
  }
  await backend.addToChord(groupId, 1, { expiresSeconds: w.store!.expires });
  if (!lazy) await applyDict(workerSender(w), dict, { parentId: req.id, rootId: req.rootId });
  return { id, signature: dict };
}
