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
