/**
 * Remote control inside a prefork child: the commands its supervisor
 * forwards over IPC (already admitted by the supervisor's control guard,
 * which audits them) run on this process's control host, with the same
 * handlers and reply shapes as a solo worker's mailbox; and the limits set
 * by remote control before this child started are applied to the app
 * before it consumes.
 */
import { COMMANDS, type ControlHost } from '../control/commands.ts';
import type { WorkerRuntime } from '../runtime.ts';
import type { ChildOverrides, FromChild } from './supervisor-ipc.ts';

/** Commands a supervisor may forward to its children (those that change or read a child's own state). */
export const FORWARDED = new Set(['active', 'reserved', 'scheduled', 'rate_limit', 'time_limit', 'pool_grow', 'pool_shrink', 'add_consumer', 'cancel_consumer', 'enable_events', 'disable_events']);

/** Run one forwarded command; never throws (a failure is the reply's `error`). */
export async function runForwarded(host: ControlHost | undefined, m: { seq: number; method: string; args: Record<string, unknown> }): Promise<FromChild> {
  const spec = FORWARDED.has(m.method) && Object.hasOwn(COMMANDS, m.method) ? COMMANDS[m.method] : undefined;
  if (!spec) return { t: 'control-reply', seq: m.seq, error: `command ${JSON.stringify(m.method)} is not forwarded to worker processes` };
  if (!host) return { t: 'control-reply', seq: m.seq, error: 'this worker process has no control host (remote control is off)' };
  try {
    return { t: 'control-reply', seq: m.seq, result: await spec.run({ host, clock: () => 0 }, m.args) };
  } catch (err) {
    return { t: 'control-reply', seq: m.seq, error: err instanceof Error ? err.message : String(err) };
  }
}

/** Set the limits remote control changed on the app's task definitions (before the worker starts). */
export function applyOverrides(app: WorkerRuntime, o: ChildOverrides | undefined): void {
  if (!o) return;
  for (const [name, rate] of Object.entries(o.rateLimits)) {
    const def = app.registry.get(name);
    if (def) def.options.rateLimit = rate ?? undefined;
  }
  for (const [name, { soft, hard }] of Object.entries(o.timeLimits)) {
    const def = app.registry.get(name);
    if (!def) continue;
    def.options.softTimeLimit = soft ?? undefined;
    def.options.timeLimit = hard ?? undefined;
  }
}
