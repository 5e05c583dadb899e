/**
 * What a worker knows about task runs that were lost: a process that died
 * under them, a hard time limit, a result that could not be settled. Every
 * broker gives such a message back (Redis and SQLite by the supervisor's
 * recovery or the visibility timeout, RabbitMQ when the channel closes), so
 * without a count a poison task runs and crashes for ever.
 *
 * The supervisor keeps the ledger and sends each change to its children
 * before the message can come back; a child looks a redelivered message up
 * before running it:
 *
 * - a run lost while the task ran alone in its process is the task's doing
 *   (`crashes`); a run lost beside other tasks makes each of them a suspect
 *   (`suspects`) that then runs alone, so the next loss is attributed
 *   for certain (bisecting by running the suspects one at a time);
 * - past the limit (`taskMaxRedeliveries`) the message is dead-lettered
 *   with the reason and one FAILURE record;
 * - `final` marks a message whose FAILURE is already written (a hard time
 *   limit, a WorkerLostError): a copy that comes back anyway (RabbitMQ
 *   requeues what a dead channel held) is dead-lettered without running.
 *
 * The ledger lives in the memory of one worker node (bounded, oldest
 * entries dropped first): it bounds the loop on each node; several nodes
 * each bound it on their own.
 */

export interface LossEntry {
  /** Lost runs attributed to this task for certain (it ran alone in the process that died). */
  crashes: number;
  /** Lost runs beside other tasks (any of them may have been the cause). */
  suspects: number;
  /** Hard time limits exceeded. */
  timeLimits: number;
  /** Runs whose result or ack could not be settled (the message was given back). */
  settles: number;
  /** A FAILURE was stored and the message must not run again. */
  final: boolean;
}

export type LossKind = 'crash' | 'suspect' | 'timeLimit' | 'settle';

const FIELD: Record<LossKind, 'crashes' | 'suspects' | 'timeLimits' | 'settles'> = { crash: 'crashes', suspect: 'suspects', timeLimit: 'timeLimits', settle: 'settles' };

/** Entries kept by default: one per task id whose run was lost recently. */
const DEFAULT_MAX_ENTRIES = 10_000;

export class LossLedger {
  private readonly entries = new Map<string, LossEntry>();

  constructor(private readonly maxEntries = DEFAULT_MAX_ENTRIES) {}

  get size(): number {
    return this.entries.size;
  }

  get(id: string): LossEntry | undefined {
    return this.entries.get(id);
  }

  /** Count one lost run of `id`; returns the updated entry. */
  record(id: string, kind: LossKind): LossEntry {
    const e = this.entries.get(id) ?? { crashes: 0, suspects: 0, timeLimits: 0, settles: 0, final: false };
    e[FIELD[kind]]++;
    this.set(id, e);
    return e;
  }

  /** Mark `id` as settled for good (its FAILURE is stored): a copy that comes back is not run. */
  finalize(id: string): LossEntry {
    const e = this.entries.get(id) ?? { crashes: 0, suspects: 0, timeLimits: 0, settles: 0, final: false };
    e.final = true;
    this.set(id, e);
    return e;
  }

  /** Replace an entry (a child applying its supervisor's update). */
  set(id: string, entry: LossEntry): void {
    // Re-inserting keeps the Map in recency order: the oldest entry is the first.
    this.entries.delete(id);
    this.entries.set(id, entry);
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }

  /** The task ran to its end: forget it. */
  forget(id: string): boolean {
    return this.entries.delete(id);
  }

  /** Every entry, for a new child. */
  all(): Array<[string, LossEntry]> {
    return [...this.entries];
  }
}

/** Lost runs that count against the redelivery limit. */
export function lostRuns(e: LossEntry): number {
  return e.crashes + e.timeLimits + e.settles;
}

/** Why a message was dead-lettered, in words (also the FAILURE's message). */
export function lossReason(e: LossEntry): string {
  if (e.timeLimits > 0 && e.timeLimits >= e.crashes && e.timeLimits >= e.settles) return `hard time limit exceeded ${e.timeLimits} time${e.timeLimits === 1 ? '' : 's'}`;
  if (e.crashes >= e.settles) return `crashed its worker process ${e.crashes} time${e.crashes === 1 ? '' : 's'}`;
  return `its result could not be settled ${e.settles} time${e.settles === 1 ? '' : 's'}`;
}

/**
 * The ledger shared by every worker node through the result backend: one
 * small record per task id with lost runs (`celeriac-loss:<id>`, expiring
 * with results), so a poison message that moves between nodes is still
 * counted once. Read when a redelivered message arrives without a local
 * entry, written after each lost run.
 */
export interface SharedLossStore {
  get(taskId: string): Promise<Buffer | undefined>;
  getMany(taskIds: readonly string[]): Promise<Array<Buffer | undefined>>;
  store(records: ReadonlyArray<{ taskId: string; state: string; payload: Buffer }>, options?: { expiresSeconds?: number }): Promise<void>;
}

/** Backend key of a task's shared loss record. */
export function lossKey(id: string): string {
  return `celeriac-loss:${id}`;
}

export function encodeLoss(e: LossEntry): Buffer {
  return Buffer.from(JSON.stringify([e.crashes, e.suspects, e.timeLimits, e.settles, e.final ? 1 : 0]));
}

export function decodeLoss(b: Buffer | undefined): LossEntry | undefined {
  if (!b || b.length > 256) return undefined;
  try {
    const v = JSON.parse(b.toString('utf8')) as unknown;
    if (!Array.isArray(v) || v.length !== 5 || !v.every((x) => Number.isInteger(x) && (x as number) >= 0 && (x as number) < 1e6)) return undefined;
    const [crashes, suspects, timeLimits, settles, final] = v as number[];
    return { crashes: crashes!, suspects: suspects!, timeLimits: timeLimits!, settles: settles!, final: final === 1 };
  } catch {
    return undefined;
  }
}

/** Each counter at the larger of the two (what another node counted is kept). */
export function mergeLoss(a: LossEntry | undefined, b: LossEntry | undefined): LossEntry | undefined {
  if (!a) return b && { ...b };
  if (!b) return { ...a };
  return { crashes: Math.max(a.crashes, b.crashes), suspects: Math.max(a.suspects, b.suspects), timeLimits: Math.max(a.timeLimits, b.timeLimits), settles: Math.max(a.settles, b.settles), final: a.final || b.final };
}

/** Bring the shared records of `ids` into the local ledger. */
export async function pullShared(ledger: LossLedger, store: SharedLossStore, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  const got = await store.getMany(ids.map(lossKey));
  ids.forEach((id, i) => {
    const merged = mergeLoss(ledger.get(id), decodeLoss(got[i]));
    if (merged) ledger.set(id, merged);
  });
}

/** Write the local entries of `ids` to the shared store. */
export async function pushShared(ledger: LossLedger, store: SharedLossStore, ids: readonly string[], expiresSeconds: number): Promise<void> {
  const records = [];
  for (const id of ids) {
    const e = ledger.get(id);
    if (e) records.push({ taskId: lossKey(id), state: 'LOSS', payload: encodeLoss(e) });
  }
  if (records.length > 0) await store.store(records, { expiresSeconds });
}
