/**
 * Revoked task ids: a local set checked at intake and before a task runs
 * (cheap: one Map lookup, and none while nothing is revoked), and a shared
 * `RevokedStore` so a restart or another worker still honours a revoke.
 */
import type { ResultBackend } from '../../core/backend.ts';
import type { RevokedStore } from '../../core/revoked-store.ts';

/** Celery keeps at most 50 000 revoked ids (`REVOKES_MAX`) for 3 h (`REVOKE_EXPIRES`). */
export const REVOKES_MAX = 50_000;
export const REVOKE_EXPIRES_S = 10_800;

/** The ids this worker honours, each with its expiry. */
export class RevokedSet {
  private readonly ids = new Map<string, number>();

  get size(): number {
    return this.ids.size;
  }

  has(id: string, now = Date.now()): boolean {
    if (this.ids.size === 0) return false;
    const until = this.ids.get(id);
    if (until === undefined) return false;
    if (until > now) return true;
    this.ids.delete(id);
    return false;
  }

  add(id: string, until: number): void {
    this.ids.delete(id);
    this.ids.set(id, Math.max(until, this.ids.get(id) ?? 0));
    // Oldest first out, as Celery's LimitedSet.
    while (this.ids.size > REVOKES_MAX) this.ids.delete(this.ids.keys().next().value as string);
  }

  merge(entries: ReadonlyMap<string, number>, now = Date.now()): void {
    for (const [id, until] of entries) if (until > now) this.add(id, until);
  }

  list(now = Date.now()): string[] {
    return [...this.ids].filter(([, until]) => until > now).map(([id]) => id);
  }
}

/** Backend key of the shared revoked list. */
export const REVOKED_KEY = 'celeriac-revoked';

/** Name of the revoked ids' expiring set on backends that keep one (Redis: `celeriac:revoked:tasks`). */
export const REVOKED_SET = 'tasks';

/**
 * A `RevokedStore` on any result backend. Backends with an expiring id set
 * (Redis, SQLite, memory) keep a row or member per id, added atomically, so
 * two workers recording different revokes at the same instant both keep
 * theirs. Others keep one record holding every id, merged on each write
 * (there two revokes written at the same instant can lose one; the
 * broadcast still reached both workers). The record written by earlier
 * versions is still read.
 */
export function backendRevokedStore(backend: Pick<ResultBackend, 'get' | 'store' | 'expiringIdSet'>): RevokedStore {
  const set = backend.expiringIdSet?.(REVOKED_SET);
  const loadRecord = async (): Promise<Map<string, number>> => decode(await backend.get(REVOKED_KEY));
  if (set) {
    return {
      async load() {
        const [ids, legacy] = await Promise.all([set.load(), loadRecord().catch(() => new Map<string, number>())]);
        const now = Date.now();
        for (const [id, until] of legacy) if (until > now && until > (ids.get(id) ?? 0)) ids.set(id, until);
        return ids;
      },
      add: (ids, ttlSeconds) => set.add(ids.map((id) => [id, Date.now() + ttlSeconds * 1000] as const), REVOKES_MAX),
    };
  }
  return {
    load: loadRecord,
    async add(ids, ttlSeconds) {
      const now = Date.now();
      const all = await loadRecord();
      for (const id of ids) all.set(id, Math.max(all.get(id) ?? 0, now + ttlSeconds * 1000));
      const live = [...all].filter(([, until]) => until > now).slice(-REVOKES_MAX);
      const longest = Math.ceil((Math.max(...live.map(([, u]) => u)) - now) / 1000);
      await backend.store([{ taskId: REVOKED_KEY, state: 'REVOKED', payload: Buffer.from(JSON.stringify(live)) }], { expiresSeconds: Math.max(1, longest) });
    },
  };
}

function decode(b: Buffer | undefined): Map<string, number> {
  const out = new Map<string, number>();
  if (!b) return out;
  try {
    const v = JSON.parse(b.toString('utf8')) as unknown;
    if (!Array.isArray(v)) return out;
    for (const e of v) if (Array.isArray(e) && typeof e[0] === 'string' && typeof e[1] === 'number') out.set(e[0], e[1]);
  } catch {
    // A damaged record is treated as empty: revokes are best effort, as in Celery.
  }
  return out;
}

/** A store kept in this process only (no result backend). */
export function memoryRevokedStore(): RevokedStore {
  const ids = new Map<string, number>();
  return {
    async add(list, ttlSeconds) {
      for (const id of list) ids.set(id, Date.now() + ttlSeconds * 1000);
    },
    async load() {
      return new Map(ids);
    },
  };
}
