/**
 * Sending a canvas, as Celery 5.2.6 does, from its wire dicts: the client
 * sends a workflow with it, and a worker sends a chain's next step or a
 * chord's body with it (a Python-built workflow arrives as dicts).
 *
 * - task: one message; `link` → `callbacks`, `link_error` → `errbacks`,
 *   `chord` → the embed's `chord`, the remaining chain → the embed's `chain`.
 * - chain: ids fixed for every step first; the first step is sent with the
 *   rest in `embed.chain`, reversed (the next step is the last element);
 *   the chain's `link` goes to its last step, its `link_error` to every step.
 * - group: one message per task sharing `group` (the group id),
 *   `group_index` null.
 * - chord: the header size is written first (Redis: the `.s` key), then the
 *   header tasks with `group`, `group_index` 0…n-1 and `chord` = the body;
 *   the body (with the rest of a chain in its options) is sent by the
 *   worker that completes the header.
 */
import { ConfigError, ValidationError } from '../../errors.ts';
import { newId } from '../../protocol/ids.ts';
import { parseIso } from '../../protocol/time.ts';
import type { TaskMessageInput } from '../../protocol/task-message.ts';
import type { JsonValue, SignatureDict } from '../../protocol/types.ts';
import type { FollowUpSend } from '../producer.ts';
import type { ResultStore } from '../results.ts';

/** What sending a canvas needs: the Producer's follow-up path and the result store (for chords). */
export interface CanvasSender {
  sendFollowUp(follow: FollowUpSend): Promise<void>;
  store: ResultStore | undefined;
}

/** Where a canvas is sent from. */
export interface ApplyContext {
  /** Prepended to the args of every mutable signature (a parent's result). */
  partialArgs?: readonly unknown[];
  parentId?: string | null;
  rootId?: string | null;
  /** The rest of a chain (reversed) that follows this element. */
  chain?: SignatureDict[] | null;
  /** Options the element's first task(s) take on (a group's or chord's membership). */
  member?: Record<string, JsonValue>;
  now?: number;
}

/** What was sent: the id whose result is the canvas's result; for groups and chords, the group and its members. */
export interface Applied {
  id: string;
  groupId?: string;
  members?: string[];
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const list = (v: unknown): SignatureDict[] => (Array.isArray(v) ? (v as SignatureDict[]) : v && typeof v === 'object' ? [v as SignatureDict] : []);
const tasksOf = (d: SignatureDict): SignatureDict[] => list((d.kwargs as Record<string, unknown> | undefined)?.tasks);

/** A canvas's own options that a call passes on to its tasks (Celery's `sig.apply_async(**options)`): all but ids and links. */
function passedOn(o: Readonly<Record<string, JsonValue>> | undefined): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = {};
  for (const [k, v] of Object.entries(o ?? {})) if (!['task_id', 'link', 'link_error', 'chain', 'chord', 'group_id', 'group_index'].includes(k)) out[k] = v;
  return out;
}

function withOptions(d: SignatureDict, extra: Record<string, JsonValue>): SignatureDict {
  return { ...d, options: { ...(d.options ?? {}), ...extra } };
}

/** Fix the ids of a canvas before sending (Celery's `freeze`); returns the dict and the id of its result. */
export function freeze(d: SignatureDict): { dict: SignatureDict; id: string } {
  switch (d.subtask_type ?? null) {
    case null: {
      const id = str(d.options?.task_id) ?? newId();
      return { dict: withOptions(d, { task_id: id }), id };
    }
    case 'chain': {
      // The chain's own id is its last step's (the chain's result is that step's).
      const own = str(d.options?.task_id);
      const raw = tasksOf(d);
      const steps = raw.map((t, i) => freeze(own && i === raw.length - 1 ? withOptions(t, { task_id: own }) : t));
      if (steps.length === 0) throw new ValidationError('a chain needs at least one task', { field: 'tasks' });
      return { dict: { ...d, kwargs: { ...d.kwargs, tasks: steps.map((s) => s.dict as unknown as JsonValue) } }, id: steps[steps.length - 1]!.id };
    }
    case 'group': {
      const id = str(d.options?.task_id) ?? newId();
      return { dict: withOptions(d, { task_id: id }), id };
    }
    case 'chord': {
      const kw = d.kwargs as Record<string, JsonValue>;
      // The body's own id wins; the chord's id is the body's only when the body has none (Celery's
      // `body.freeze(task_id)`): a Python chain step carries the header group's id there.
      const own = str(d.options?.task_id);
      const rawBody = kw.body as unknown as SignatureDict;
      const body = freeze(own && !str(rawBody.options?.task_id) ? withOptions(rawBody, { task_id: own }) : rawBody);
      return { dict: { ...withOptions(d, { task_id: body.id }), kwargs: { ...kw, body: body.dict as unknown as JsonValue } }, id: body.id };
    }
    default:
      throw new ValidationError(`canvas type ${JSON.stringify(d.subtask_type)} is not supported`, { field: 'subtask_type', hint: 'Celeriac sends tasks, chains, groups and chords' });
  }
}

/** The message of one task signature in its context. */
export function taskFollowUp(d: SignatureDict, ctx: ApplyContext): FollowUpSend & { input: TaskMessageInput } {
  const o: Record<string, JsonValue> = { ...(d.options ?? {}), ...(ctx.member ?? {}) };
  const now = ctx.now ?? Date.now();
  const id = str(o.task_id) ?? newId();
  const countdown = num(o.countdown);
  const eta = countdown !== undefined ? now + countdown * 1000 : str(o.eta) ? (parseIso(o.eta as string) ?? null) : null;
  const expiresOpt = o.expires;
  const expires = typeof expiresOpt === 'number' ? now + expiresOpt * 1000 : typeof expiresOpt === 'string' ? (parseIso(expiresOpt) ?? null) : null;
  const callbacks = list(o.link);
  const errbacks = list(o.link_error);
  const chain = ctx.chain ?? list(o.chain);
  const chord = o.chord && typeof o.chord === 'object' && !Array.isArray(o.chord) ? (o.chord as unknown as SignatureDict) : null;
  const args = d.immutable ? [...(d.args ?? [])] : [...(ctx.partialArgs ?? []), ...(d.args ?? [])];
  return {
    queue: str(o.queue),
    input: {
      task: d.task,
      id,
      args,
      kwargs: (d.kwargs ?? {}) as Record<string, unknown>,
      eta,
      expires,
      group: str(o.group_id) ?? null,
      groupIndex: num(o.group_index) ?? null,
      timeLimit: [num(o.time_limit) ?? null, num(o.soft_time_limit) ?? null],
      rootId: ctx.rootId ?? str(o.root_id) ?? id,
      parentId: ctx.parentId ?? str(o.parent_id) ?? null,
      shadow: str(o.shadow) ?? null,
      ignoreResult: o.ignore_result === true,
      ...(num(o.priority) !== undefined ? { priority: num(o.priority)! } : {}),
      ...(str(o.reply_to) ? { replyTo: str(o.reply_to)! } : {}),
      now,
      embed: {
        callbacks: callbacks.length > 0 ? callbacks : null,
        errbacks: errbacks.length > 0 ? errbacks : null,
        chain: chain.length > 0 ? chain : null,
        chord,
      },
    },
  };
}

/** Number of parts a chord header element contributes (Celery's `_chord._descend`). */
export function chordSize(d: SignatureDict): number {
  switch (d.subtask_type ?? null) {
    case 'group':
      return tasksOf(d).reduce((n, t) => n + chordSize(t), 0);
    case 'chain': {
      const steps = tasksOf(d);
      for (let i = steps.length - 1; i >= 0; i--) {
        const n = chordSize(steps[i]!);
        if (n > 0) return n;
      }
      return 0;
    }
    case 'chord':
      return chordSize((d.kwargs as Record<string, JsonValue>).body as unknown as SignatureDict);
    default:
      return 1;
  }
}

/** Flatten nested groups into their tasks (Celery unrolls them too). */
function flattenGroup(tasks: readonly SignatureDict[]): SignatureDict[] {
  return tasks.flatMap((t) => (t.subtask_type === 'group' ? flattenGroup(tasksOf(t)) : [t]));
}

/** Send a canvas dict; resolves once the broker holds every message it sends now. */
export async function applyDict(sender: CanvasSender, dict: SignatureDict, ctx: ApplyContext = {}): Promise<Applied> {
  const { dict: d, id } = freeze(dict);
  switch (d.subtask_type ?? null) {
    case null: {
      await sender.sendFollowUp(taskFollowUp(d, ctx));
      return { id };
    }
    case 'chain':
      return applyChain(sender, d, ctx, id);
    case 'group':
      return applyGroup(sender, d, ctx, undefined);
    default:
      return applyChord(sender, d, ctx);
  }
}

async function applyChain(sender: CanvasSender, d: SignatureDict, ctx: ApplyContext, id: string): Promise<Applied> {
  const o = d.options ?? {};
  let steps = tasksOf(d);
  const errbacks = list(o.link_error);
  if (errbacks.length > 0) steps = steps.map((s) => withOptions(s, { link_error: [...list(s.options?.link_error), ...errbacks] as unknown as JsonValue }));
  const callbacks = list(o.link);
  if (callbacks.length > 0) {
    const last = steps[steps.length - 1]!;
    steps = [...steps.slice(0, -1), withOptions(last, { link: [...list(last.options?.link), ...callbacks] as unknown as JsonValue })];
  }
  // A chain that follows this one (a chain step that is itself a chain, a replaced chain step) comes
  // after our steps: the list is reversed (the next step last), so it goes first.
  const rest = [...(ctx.chain ?? []), ...steps.slice(1).reverse()];
  // The chain's other options go to its first step, as Celery's `first_task.apply_async(**options)`.
  const first = withOptions(steps[0]!, passedOn(o));
  const applied = await applyDict(sender, first, { ...ctx, chain: rest });
  return { ...applied, id };
}

/** Send a group's tasks; `chordBody` makes it a chord header (indices and the body in each message). */
async function applyGroup(sender: CanvasSender, d: SignatureDict, ctx: ApplyContext, chordBody: SignatureDict | undefined, groupId?: string): Promise<Applied> {
  const gid = groupId ?? str(d.options?.task_id) ?? newId();
  const tasks = flattenGroup(tasksOf(d));
  const members: string[] = [];
  for (let i = 0; i < tasks.length; i++) {
    // The group's options apply to every member (they override the member's own, as in Celery).
    const member: Record<string, JsonValue> = { ...passedOn(d.options), group_id: gid };
    if (chordBody) {
      member.group_index = i;
      member.chord = chordBody as unknown as JsonValue;
    }
    members.push(await applyMember(sender, tasks[i]!, { ...ctx, chain: null, member }));
  }
  return { id: gid, groupId: gid, members };
}

/** One group member: a task takes the membership; a chain gives it to its last step. */
async function applyMember(sender: CanvasSender, t: SignatureDict, ctx: ApplyContext): Promise<string> {
  if ((t.subtask_type ?? null) === null) return (await applyDict(sender, t, ctx)).id;
  if (t.subtask_type === 'chain') {
    const steps = tasksOf(t);
    const last = steps[steps.length - 1];
    if (last && (last.subtask_type ?? null) === null) {
      const chained = { ...t, kwargs: { ...t.kwargs, tasks: [...steps.slice(0, -1), withOptions(last, ctx.member ?? {})] as unknown as JsonValue } };
      return (await applyDict(sender, chained, { ...ctx, member: undefined })).id;
    }
  }
  throw new ValidationError(`a ${t.subtask_type} inside a group or chord header is not supported`, { field: 'tasks', hint: 'use tasks, or chains ending in a task, as group members' });
}

async function applyChord(sender: CanvasSender, d: SignatureDict, ctx: ApplyContext): Promise<Applied> {
  const kw = d.kwargs as Record<string, JsonValue>;
  const header = list(kw.header).flatMap((h) => (h.subtask_type === 'group' ? flattenGroup(tasksOf(h)) : [h]));
  // A Python-frozen header (a group dict) names the group id Celery would use.
  const headerGroup = Array.isArray(kw.header) ? undefined : list(kw.header)[0];
  const opts: Record<string, JsonValue> = { ...(d.options ?? {}) };
  delete opts.task_id;
  // The chord's own options and the rest of a chain travel with the body (Celery's `body.options.update`).
  let body = withOptions(kw.body as unknown as SignatureDict, opts);
  if (ctx.chain && ctx.chain.length > 0) body = withOptions(body, { chain: ctx.chain as unknown as JsonValue });
  const bodyId = freeze(body);
  if (header.length === 0) {
    // Nothing will complete the header: the body runs now, with no results (as Celery does).
    await applyDict(sender, bodyId.dict, { ...ctx, chain: null, partialArgs: [[]] });
    return { id: bodyId.id, groupId: newId(), members: [] };
  }
  const backend = sender.store?.backend;
  if (!backend?.setChordSize || !backend.chordPartReturn) {
    throw new ConfigError(`a chord needs a result backend with a chord join; ${backend ? `the ${backend.kind} backend has none` : 'this app has no result backend'}`, {
      hint: 'use a Redis, SQLite or memory result backend for chords',
    });
  }
  const gid = str(headerGroup?.options?.task_id) ?? newId();
  await backend.setChordSize(gid, header.reduce((n, h) => n + chordSize(h), 0), { expiresSeconds: sender.store!.expires });
  // The chord's options reach the header tasks too (Celery's `header(*args, task_id=group_id, **options)`).
  const group: SignatureDict = { task: 'celery.group', args: [], kwargs: { tasks: header as unknown as JsonValue }, options: passedOn(opts), subtask_type: 'group', immutable: false };
  const applied = await applyGroup(sender, group, { ...ctx, chain: null }, bodyId.dict, gid);
  return { id: bodyId.id, groupId: gid, members: applied.members ?? [] };
}
