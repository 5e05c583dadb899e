/**
 * Saved groups and chord joins in SQLite: the equivalent of Celery's Redis
 * join (`.j` parts, `.s` size) as rows, counted inside one write
 * transaction, so exactly one header part completes a chord whichever
 * process stores it.
 */
import type { ChordPart, StoreOptions } from '../../core/backend.ts';
import type { SqliteDatabase } from './open.ts';

/** Runs `fn` in a write transaction (the backend's, with its busy retries). */
export type WriteTx = <T>(fn: () => T) => T;

/** The canvas operations of the SQLite backend. */
export interface SqliteCanvas {
  saveGroup(groupId: string, payload: Buffer, options?: StoreOptions): void;
  getGroup(groupId: string): Buffer | undefined;
  forgetGroup(groupId: string): void;
  setChordSize(groupId: string, size: number, options?: StoreOptions): void;
  chordPartReturn(part: ChordPart, options?: StoreOptions): Buffer[] | undefined;
  addToChord(groupId: string, count: number, options?: StoreOptions): void;
}

const expiry = (options: StoreOptions | undefined, now: number): number | null => (options?.expiresSeconds ? now + options.expiresSeconds * 1000 : null);

/** Prepare the statements once the schema is migrated. */
export function sqliteCanvas(db: SqliteDatabase, write: WriteTx): SqliteCanvas {
  const s = {
    saveGroup: db.prepare('INSERT INTO groups (group_id, payload, expires_at) VALUES (?, ?, ?) ON CONFLICT (group_id) DO UPDATE SET payload = excluded.payload, expires_at = excluded.expires_at'),
    getGroup: db.prepare('SELECT payload FROM groups WHERE group_id = ? AND (expires_at IS NULL OR expires_at > ?)'),
    forgetGroup: db.prepare('DELETE FROM groups WHERE group_id = ?'),
    setSize: db.prepare('INSERT INTO chords (group_id, size, expires_at) VALUES (?, ?, ?) ON CONFLICT (group_id) DO UPDATE SET size = excluded.size, expires_at = excluded.expires_at'),
    touch: db.prepare('INSERT INTO chords (group_id, size, expires_at) VALUES (?, NULL, ?) ON CONFLICT (group_id) DO UPDATE SET expires_at = excluded.expires_at'),
    addPart: db.prepare('INSERT OR IGNORE INTO chord_parts (group_id, score, entry) VALUES (?, ?, ?)'),
    state: db.prepare('SELECT c.size AS size, c.expires_at AS expires_at, (SELECT count(*) FROM chord_parts p WHERE p.group_id = c.group_id) AS n FROM chords c WHERE c.group_id = ?'),
    parts: db.prepare('SELECT entry FROM chord_parts WHERE group_id = ? ORDER BY score, entry'),
    dropParts: db.prepare('DELETE FROM chord_parts WHERE group_id = ?'),
    dropChord: db.prepare('DELETE FROM chords WHERE group_id = ?'),
    // Parts are added by header tasks, which run after the size was written: the size itself grows
    // (Redis keeps a separate `.t` only because Celery does). No size: the join is gone, as on Redis.
    grow: db.prepare('UPDATE chords SET size = size + ?, expires_at = ? WHERE group_id = ? AND size IS NOT NULL'),
  };
  return {
    saveGroup: (groupId, payload, options) => void write(() => s.saveGroup.run(groupId, payload, expiry(options, Date.now()))),
    getGroup: (groupId) => (s.getGroup.get(groupId, Date.now()) as { payload: Buffer } | undefined)?.payload,
    forgetGroup: (groupId) => void write(() => s.forgetGroup.run(groupId)),
    addToChord: (groupId, count, options) => void write(() => s.grow.run(count, expiry(options, Date.now()), groupId)),
    setChordSize: (groupId, size, options) => void write(() => s.setSize.run(groupId, size, expiry(options, Date.now()))),
    chordPartReturn: (part, options) =>
      write(() => {
        const now = Date.now();
        const current = s.state.get(part.groupId) as { size: number | null; expires_at: number | null; n: number } | undefined;
        // An expired join starts over, as the Redis keys would have vanished.
        if (current?.expires_at != null && current.expires_at <= now) {
          s.dropParts.run(part.groupId);
          s.dropChord.run(part.groupId);
        }
        s.touch.run(part.groupId, expiry(options, now));
        s.addPart.run(part.groupId, part.groupIndex ?? Number.MAX_VALUE, part.entry);
        const st = s.state.get(part.groupId) as { size: number | null; n: number };
        if (st.size === null || st.n !== st.size) return undefined;
        const parts = (s.parts.all(part.groupId) as Array<{ entry: Buffer }>).map((r) => r.entry);
        s.dropParts.run(part.groupId);
        s.dropChord.run(part.groupId);
        return parts;
      }),
  };
}
