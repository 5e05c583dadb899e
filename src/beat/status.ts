/**
 * What `celeriac beat status` prints (and what a dashboard reads): the
 * lease and, per entry, its schedule, last run and next run, from the
 * store every instance shares.
 */
import type { BeatStore } from '../core/beat-store.ts';
import type { BeatEntry } from './schedule.ts';

/** One entry's row. */
export interface BeatEntryStatus {
  name: string;
  task: string | undefined;
  schedule: string | undefined;
  catchUp: string | undefined;
  lastTick: string | undefined;
  lastSentAt: string | undefined;
  lastTaskId: string | undefined;
  /** False when the last tick was claimed but its publish never confirmed (the leader stopped in between). */
  lastConfirmed: boolean | undefined;
  total: number;
  skipped: number;
  nextRun: string | undefined;
  /** In the store but not in the schedule loaded now (renamed or removed). */
  orphan: boolean;
}

/** The whole status. */
export interface BeatStatus {
  leader: { holder: string; token: number; expiresAt: string } | undefined;
  entries: BeatEntryStatus[];
}

const iso = (ms: number | undefined): string | undefined => (ms === undefined || !Number.isFinite(ms) ? undefined : new Date(ms).toISOString());

/** Read the status of `store`, joined with the schedule `entries` (may be empty). */
export async function readBeatStatus(store: Pick<BeatStore, 'read'>, entries: readonly BeatEntry[], now = Date.now()): Promise<BeatStatus> {
  const { lease, entries: state } = await store.read();
  const byName = new Map(state.map((s) => [s.name, s]));
  const rows: BeatEntryStatus[] = entries.map((e) => {
    const s = byName.get(e.name);
    return {
      name: e.name,
      task: e.task,
      schedule: e.timetable.describe,
      catchUp: e.catchUp,
      lastTick: iso(s?.lastTick),
      lastSentAt: iso(s?.sentAt),
      lastTaskId: s?.taskId,
      lastConfirmed: s?.confirmed,
      total: s?.total ?? 0,
      skipped: s?.skipped ?? 0,
      nextRun: iso(e.timetable.nextAfter(Math.max(now, s?.lastTick ?? 0))),
      orphan: false,
    };
  });
  for (const s of state) {
    if (entries.some((e) => e.name === s.name)) continue;
    rows.push({ name: s.name, task: undefined, schedule: undefined, catchUp: undefined, lastTick: iso(s.lastTick), lastSentAt: iso(s.sentAt), lastTaskId: s.taskId, lastConfirmed: s.confirmed, total: s.total, skipped: s.skipped, nextRun: undefined, orphan: true });
  }
  return { leader: lease ? { holder: lease.holder, token: lease.token, expiresAt: new Date(lease.expiresAt).toISOString() } : undefined, entries: rows };
}

/** A readable table of `status`. */
export function formatBeatStatus(status: BeatStatus): string {
  const lines = [status.leader ? `leader: ${status.leader.holder} (fencing token ${status.leader.token}, lease until ${status.leader.expiresAt})` : 'leader: none (no beat holds the lease)'];
  if (status.entries.length === 0) lines.push('no entries');
  for (const e of status.entries) {
    lines.push(
      `${e.name}${e.orphan ? ' (not in the loaded schedule)' : ''}`,
      ...(e.task ? [`  task      ${e.task}  ${e.schedule}  catchUp: ${e.catchUp}`] : []),
      `  last run  ${e.lastTick ?? 'never'}${e.lastSentAt ? `  (claimed ${e.lastSentAt}, id ${e.lastTaskId}${e.lastConfirmed === false ? ', publish not confirmed: in flight, or the leader stopped before sending it' : ''})` : ''}`,
      `  sent      ${e.total}  passed over: ${e.skipped}`,
      ...(e.nextRun ? [`  next run  ${e.nextRun}`] : []),
    );
  }
  return lines.join('\n');
}
