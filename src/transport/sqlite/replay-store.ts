/**
 * The SQLite engine's replay store (the `ReplayStore` of
 * `core/replay-store.ts`; the state machine is in `security/replay-guard.ts`).
 */
import type { ClaimResult, ReplayStore } from '../../core/replay-store.ts';

/** The subset of better-sqlite3 the SQLite store uses. */
export interface ReplaySqliteDatabase {
  exec(sql: string): unknown;
  prepare(sql: string): { run(...params: unknown[]): unknown; get(...params: unknown[]): unknown };
  transaction<A extends unknown[], R>(fn: (...args: A) => R): { immediate(...args: A): R };
  close(): unknown;
}

/**
 * SQLite store: a `celeriac_replay` table in the broker's database file,
 * shared by every process on the machine that uses that file. Claims run
 * in `BEGIN IMMEDIATE` transactions, so they are atomic across processes.
 */
export class SqliteReplayStore implements ReplayStore {
  readonly kind = 'sqlite';
  readonly shared = true;
  private readonly db: ReplaySqliteDatabase;
  private readonly claimTx: (nonce: string, holder: string, leaseMs: number, now: number, stale: string) => ClaimResult;
  private readonly stmts: {
    settle: { run(...p: unknown[]): unknown };
    release: { run(...p: unknown[]): unknown };
    refresh: { run(...p: unknown[]): unknown };
    sweep: { run(...p: unknown[]): unknown };
  };
  private ops = 0;

  constructor(db: ReplaySqliteDatabase) {
    this.db = db;
    db.exec('CREATE TABLE IF NOT EXISTS celeriac_replay (nonce TEXT PRIMARY KEY, state TEXT NOT NULL, until INTEGER NOT NULL) WITHOUT ROWID');
    const get = db.prepare('SELECT state, until FROM celeriac_replay WHERE nonce = ?');
    const put = db.prepare('INSERT OR REPLACE INTO celeriac_replay (nonce, state, until) VALUES (?, ?, ?)');
    this.stmts = {
      settle: put,
      release: db.prepare('DELETE FROM celeriac_replay WHERE nonce = ? AND state = ?'),
      refresh: db.prepare('UPDATE celeriac_replay SET until = ? WHERE nonce = ? AND state = ? AND until > ?'),
      sweep: db.prepare('DELETE FROM celeriac_replay WHERE until <= ?'),
    };
    const tx = db.transaction((nonce: string, holder: string, leaseMs: number, now: number, stale: string): ClaimResult => {
      const row = get.get(nonce) as { state: string; until: number } | undefined;
      if (!row || row.until <= now || (stale !== '' && row.state === stale)) {
        put.run(nonce, `H${holder}`, now + leaseMs);
        return { state: 'claimed' };
      }
      return row.state === 'S' ? { state: 'settled' } : { state: 'held', holder: row.state.slice(1) };
    });
    this.claimTx = (...args) => tx.immediate(...args);
  }

  async claim(nonce: string, holder: string, leaseMs: number, staleHolder?: string): Promise<ClaimResult> {
    const now = Date.now();
    if (++this.ops % 1024 === 0) this.stmts.sweep.run(now);
    return this.claimTx(nonce, holder, leaseMs, now, staleHolder === undefined ? '' : `H${staleHolder}`);
  }

  async settle(nonce: string, ttlMs: number): Promise<void> {
    this.stmts.settle.run(nonce, 'S', Date.now() + ttlMs);
  }

  async release(nonce: string, holder: string): Promise<void> {
    this.stmts.release.run(nonce, `H${holder}`);
  }

  async refresh(nonces: readonly string[], holder: string, leaseMs: number): Promise<void> {
    const now = Date.now();
    for (const n of nonces) this.stmts.refresh.run(now + leaseMs, n, `H${holder}`, now);
  }

  async close(): Promise<void> {
    this.db.close();
  }
}
