/** The memory backend's expiring id sets (core/backend.ts `ExpiringIdSet`): one Map per name, in this process. */
import type { ExpiringIdSet } from '../../core/backend.ts';

export function memoryExpiringIdSet(ids: Map<string, number>): ExpiringIdSet {
  return {
    async add(entries, maxSize) {
      const now = Date.now();
      for (const [id, until] of entries) ids.set(id, Math.max(until, ids.get(id) ?? 0));
      for (const [id, until] of ids) if (until <= now) ids.delete(id);
      if (ids.size > maxSize) {
        const soonest = [...ids].sort((a, b) => a[1] - b[1]).slice(0, ids.size - maxSize);
        for (const [id] of soonest) ids.delete(id);
      }
    },
    async load() {
      const now = Date.now();
      return new Map([...ids].filter(([, until]) => until > now));
    },
  };
}
