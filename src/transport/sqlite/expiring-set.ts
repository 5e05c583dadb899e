/**
 * The SQLite backend's expiring id sets (core/backend.ts `ExpiringIdSet`):
 * a row per id in `expiring_ids`, added in one write transaction (a later
 * expiry wins), so processes sharing the file never lose each other's ids.
 */
import type { ExpiringIdSet } from '../../core/backend.ts';
import type { SqliteDatabase } from './open.ts';

export function sqliteExpiringIdSet(name: string, db: () => SqliteDatabase, write: <T>(fn: () => T) => T): ExpiringIdSet {
  return {
    async add(entries, maxSize) {
      if (entries.length === 0) return;
      const d = db();
      const upsert = d.prepare('INSERT INTO expiring_ids (name, id, until) VALUES (?, ?, ?) ON CONFLICT (name, id) DO UPDATE SET until = max(until, excluded.until)');
      const expire = d.prepare('DELETE FROM expiring_ids WHERE name = ? AND until <= ?');
      const count = d.prepare('SELECT count(*) AS n FROM expiring_ids WHERE name = ?');
      const trim = d.prepare('DELETE FROM expiring_ids WHERE name = ? AND id IN (SELECT id FROM expiring_ids WHERE name = ? ORDER BY until LIMIT ?)');
      write(() => {
        for (const [id, until] of entries) upsert.run(name, id, Math.round(until));
        expire.run(name, Date.now());
        const over = (count.get(name) as { n: number }).n - maxSize;
        if (over > 0) trim.run(name, name, over);
      });
    },
    async load() {
      const rows = db().prepare('SELECT id, until FROM expiring_ids WHERE name = ? AND until > ?').all(name, Date.now()) as Array<{ id: string; until: number }>;
      return new Map(rows.map((r) => [r.id, r.until]));
    },
  };
}
