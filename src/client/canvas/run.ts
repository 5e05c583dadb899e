/**
 * Sending a canvas from the client: `applyAsync(app)` on a signature,
 * chain, group or chord ends here.
 */
import type { JsonValue, SignatureDict } from '../../protocol/types.ts';
import type { FollowUpSender } from '../producer.ts';
import { AsyncResult } from '../result.ts';
import type { ResultStore } from '../results.ts';
import { applyDict, type Applied } from './apply.ts';
import { GroupResult } from './result-set.ts';
import { optionsToWire, type SignatureOptions } from './signature-options.ts';

/** The app a canvas is sent through (a Celeriac `App` is one). */
export interface CanvasHost {
  readonly producer: FollowUpSender;
  resultStore(): Promise<ResultStore | undefined>;
}

/** Options of `applyAsync` on a canvas: the signature options of its top element, and partial args. */
export interface CanvasApplyOptions extends SignatureOptions {
  /** Prepended to the args of the first task(s), as Celery's `apply_async(args)` on a signature. */
  args?: readonly unknown[];
}

/** Send `dict` through `host`; the store is returned for the result handles. */
export async function sendCanvas(host: CanvasHost, dict: SignatureDict, options: CanvasApplyOptions): Promise<{ applied: Applied; store: ResultStore | undefined }> {
  const { args, ...rest } = options;
  const store = await host.resultStore();
  const d: SignatureDict = { ...dict, options: { ...(dict.options ?? {}), ...(optionsToWire(rest) as Record<string, JsonValue>) } };
  const applied = await applyDict({ sendFollowUp: (f) => host.producer.sendFollowUp(f), store }, d, { ...(args ? { partialArgs: args } : {}) });
  return { applied, store };
}

/** Send and wrap the result in an `AsyncResult`. */
export async function sendForResult<R>(host: CanvasHost, dict: SignatureDict, options: CanvasApplyOptions): Promise<AsyncResult<R>> {
  const { applied, store } = await sendCanvas(host, dict, options);
  return new AsyncResult<R>(applied.id, store);
}

/** Send a group and wrap its members in a `GroupResult`. */
export async function sendForGroup<R extends readonly unknown[]>(host: CanvasHost, dict: SignatureDict, options: CanvasApplyOptions): Promise<GroupResult<R>> {
  const { applied, store } = await sendCanvas(host, dict, options);
  return new GroupResult<R>(applied.groupId ?? applied.id, (applied.members ?? []).map((id) => new AsyncResult(id, store)), store);
}
