/**
 * The SQLite engine's beat store (`core/beat-store.ts`): two tables in the
 * database file every beat instance on the machine opens. Each
 * check-and-write runs in a `BEGIN IMMEDIATE` transaction (one writer at a
 * time across processes), so the fencing check and the record of a tick are
 * one atomic step. Times are this machine's clock, which every process
 * sharing the file shares. When beat's broker is this same file, the
 * tick's task message is inserted in that transaction too (the outbox).
 */
import type { BeatAcquire, BeatClaim, BeatClaimInput, BeatEntryState, BeatStore } from '../../core/beat-store.ts';
import type { SqliteDatabase } from './open.ts';
import { isSqliteOutbox, writeMessageRows } from './outbox.ts';

interface LeaseRow {
  holder: string;
  token: number;
  expires_at: number;
}

interface EntryRow {
  name: string;
  last_tick: number;
  task_id: string;
  sent_at: number;
  token: number;
  total: number;
  skipped: number;
  confirmed: number;
  pending: string | null;
}

/** A store on `db` (which it owns: `close()` closes it). */
export function createSqliteBeatStore(db: SqliteDatabase, namespace: string, path: string): BeatStore {
  // The lease row is never deleted (a release empties `holder`), so its token is also the fencing counter.
  db.exec(`CREATE TABLE IF NOT EXISTS celeriac_beat_lease (ns TEXT PRIMARY KEY, holder TEXT NOT NULL, token INTEGER NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS celeriac_beat_entry (ns TEXT NOT NULL, name TEXT NOT NULL, last_tick INTEGER NOT NULL, task_id TEXT NOT NULL, sent_at INTEGER NOT NULL,
  token INTEGER NOT NULL, total INTEGER NOT NULL, skipped INTEGER NOT NULL, confirmed INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (ns, name)) WITHOUT ROWID;`);
  // Files made before the column existed get it (the message kept until its publish is confirmed).
  if (!(db.prepare('PRAGMA table_info(celeriac_beat_entry)').all() as Array<{ name: string }>).some((c) => c.name === 'pending')) {
    db.exec('ALTER TABLE celeriac_beat_entry ADD COLUMN pending TEXT');
  }
  const getLease = db.prepare('SELECT holder, token, expires_at FROM celeriac_beat_lease WHERE ns = ?');
  const putLease = db.prepare('INSERT INTO celeriac_beat_lease (ns, holder, token, expires_at) VALUES (?, ?, ?, ?) ON CONFLICT (ns) DO UPDATE SET holder = excluded.holder, token = excluded.token, expires_at = excluded.expires_at');
  const freeLease = db.prepare("UPDATE celeriac_beat_lease SET holder = '', expires_at = 0 WHERE ns = ? AND holder = ? AND token = ?");
  const getEntry = db.prepare('SELECT last_tick, total, skipped FROM celeriac_beat_entry WHERE ns = ? AND name = ?');
  const putEntry = db.prepare(
    'INSERT OR REPLACE INTO celeriac_beat_entry (ns, name, last_tick, task_id, sent_at, token, total, skipped, confirmed, pending) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
  );
  const confirmEntry = db.prepare('UPDATE celeriac_beat_entry SET confirmed = 1, pending = NULL WHERE ns = ? AND name = ? AND last_tick = ?');
  const allEntries = db.prepare('SELECT name, last_tick, task_id, sent_at, token, total, skipped, confirmed, pending FROM celeriac_beat_entry WHERE ns = ? ORDER BY name');

  const acquireTx = db.transaction((holder: string, leaseMs: number): BeatAcquire => {
    const now = Date.now();
    const row = getLease.get(namespace) as LeaseRow | undefined;
    if (row && row.holder !== '' && row.holder !== holder && row.expires_at > now) return { leader: false, holder: row.holder, expiresAt: row.expires_at };
    const keep = row !== undefined && row.holder === holder && row.expires_at > now;
    const token = keep ? row.token : (row?.token ?? 0) + 1;
    putLease.run(namespace, holder, token, now + leaseMs);
    return { leader: true, token, expiresAt: now + leaseMs };
  });
  const claimTx = db.transaction((input: BeatClaimInput): BeatClaim => {
    const now = Date.now();
    const lease = getLease.get(namespace) as LeaseRow | undefined;
    if (!lease || lease.holder === '' || lease.token !== input.token || lease.expires_at <= now) return { state: 'fenced' };
    const prev = getEntry.get(namespace, input.entry) as Pick<EntryRow, 'last_tick' | 'total' | 'skipped'> | undefined;
    if (prev && prev.last_tick >= input.tick) return { state: 'done', lastTick: prev.last_tick };
    const carried = input.publish !== undefined && isSqliteOutbox(input.publish, path) ? input.publish : undefined;
    putEntry.run(namespace, input.entry, input.tick, input.taskId, now, input.token, (prev?.total ?? 0) + 1, (prev?.skipped ?? 0) + input.skipped, carried ? 1 : 0, carried ? null : (input.pending ?? null));
    if (carried) writeMessageRows(db, carried.rows, now);
    return { state: 'claimed', published: carried !== undefined };
  });

  return {
    kind: 'sqlite',
    canCarry: (p) => p.engine === 'sqlite' && p.target === path,
    acquire: async (holder, leaseMs) => acquireTx.immediate(holder, Math.ceil(leaseMs)),
    async release(holder, token) {
      freeLease.run(namespace, holder, token);
    },
    claim: async (input) => claimTx.immediate(input),
    async confirm(entry, tick) {
      confirmEntry.run(namespace, entry, tick);
    },
    async read() {
      const now = Date.now();
      const row = getLease.get(namespace) as LeaseRow | undefined;
      const lease = row && row.holder !== '' && row.expires_at > now ? { holder: row.holder, token: row.token, expiresAt: row.expires_at } : undefined;
      const entries: BeatEntryState[] = (allEntries.all(namespace) as EntryRow[]).map((r) => ({
        name: r.name,
        lastTick: r.last_tick,
        taskId: r.task_id,
        sentAt: r.sent_at,
        token: r.token,
        total: r.total,
        skipped: r.skipped,
        confirmed: r.confirmed === 1,
        ...(r.pending !== null ? { pending: r.pending } : {}),
      }));
      return { lease, entries };
    },
    async close() {
      db.close();
    },
  };
}
