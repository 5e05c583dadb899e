/**
 * The PostgreSQL engine's beat store (`core/beat-store.ts`): the lease and
 * the per-entry state in `<schema>.beat_lease` and `<schema>.beat_entry`
 * (the coordination tables of `schema.ts`), on the server's clock.
 *
 * - acquire is one `INSERT … ON CONFLICT DO UPDATE … WHERE` statement: the
 *   row lock it takes orders concurrent acquirers, and each sees the row as
 *   the one before it left it. The lease row is never deleted (a release
 *   empties `holder`), so its token is also the fencing counter and only
 *   grows.
 * - claim is one transaction that first locks the lease row (`SELECT … FOR
 *   UPDATE`), checks the token against it, then records the tick (and, with
 *   the outbox, inserts the task message and its NOTIFY). acquire and every
 *   claim of the namespace wait for that lock, so no lease can change hands
 *   between the check and the record, and two claims of one tick cannot
 *   both pass the "newer than the last" check: read committed suffices, no
 *   serializable retry loop is needed.
 */
import type pg from 'pg';
import type { BeatClaim, BeatClaimInput, BeatEntryState, BeatStore, BeatStoreOptions } from '../../core/beat-store.ts';
import { ident, inTransaction, NOW_MS, openPool, pgTarget } from './connection.ts';
import { isPgOutbox, pgTargetId, writeMessages } from './outbox.ts';
import { migrate } from './schema.ts';

interface EntryRow {
  name: string;
  last_tick: string;
  task_id: string;
  sent_at: string;
  token: string;
  total: string;
  skipped: string;
  confirmed: boolean;
  pending: string | null;
}

/** Open the beat store on the database of `options.url` (its coordination tables made or found). */
export async function openPgBeatStore(options: BeatStoreOptions): Promise<BeatStore> {
  const target = pgTarget(options.url, options.side, options.settings, options.logger);
  const pool = openPool(target, 'beat', 2);
  try {
    await migrate(pool, target.schema, 'coordination');
  } catch (err) {
    await pool.end();
    throw err;
  }
  return createPgBeatStore(pool, { schema: target.schema, namespace: options.namespace, target: pgTargetId(target) });
}

/** Options of {@link createPgBeatStore}. */
export interface PgBeatStoreOptions {
  /** The engine's schema (validated identifier). */
  schema: string;
  namespace: string;
  /** The database and schema `pool` writes to (`pgTargetId`): a broker's outbox publish is carried only when it names the same. */
  target: string;
}

/** A store on `pool` (which it owns: `close()` ends it). */
export function createPgBeatStore(pool: pg.Pool, options: PgBeatStoreOptions): BeatStore {
  const { namespace: ns, target } = options;
  const s = ident(options.schema);
  const queueChannel = `${options.schema}_queue`;

  async function claim(input: BeatClaimInput): Promise<BeatClaim> {
    const carried = input.publish !== undefined && isPgOutbox(input.publish, target) ? input.publish : undefined;
    return inTransaction(pool, async (client) => {
      // The lease row's lock is held to the commit: the check below stays true while the tick is recorded.
      const lease = await client.query<{ live: boolean }>(
        `SELECT holder <> '' AND token = $2 AND expires_at > ${NOW_MS} AS live FROM ${s}.beat_lease WHERE ns = $1 FOR UPDATE`,
        [ns, input.token],
      );
      // A statement of its own, after the lock: under read committed it sees every claim committed
      // before the lock was granted (a subquery of the locking statement would see its older snapshot).
      const live = lease.rows[0]?.live === true;
      const last = live ? (await client.query<{ last_tick: string }>(`SELECT last_tick FROM ${s}.beat_entry WHERE ns = $1 AND name = $2`, [ns, input.entry])).rows[0] : undefined;
      let out: BeatClaim;
      if (!live) out = { state: 'fenced' };
      else if (last && Number(last.last_tick) >= input.tick) out = { state: 'done', lastTick: Number(last.last_tick) };
      else {
        await client.query(
          `INSERT INTO ${s}.beat_entry AS e (ns, name, last_tick, task_id, sent_at, token, total, skipped, confirmed, pending)
           VALUES ($1, $2, $3, $4, ${NOW_MS}, $5, 1, $6, $7, $8)
           ON CONFLICT (ns, name) DO UPDATE SET last_tick = excluded.last_tick, task_id = excluded.task_id, sent_at = excluded.sent_at,
             token = excluded.token, total = e.total + 1, skipped = e.skipped + excluded.skipped, confirmed = excluded.confirmed, pending = excluded.pending`,
          [ns, input.entry, input.tick, input.taskId, input.token, input.skipped, carried !== undefined, carried ? null : (input.pending ?? null)],
        );
        // The message and its NOTIFY commit with the record, or neither does.
        if (carried) await writeMessages(client, s, queueChannel, carried.columns);
        out = { state: 'claimed', published: carried !== undefined };
      }
      return out;
    });
  }

  return {
    kind: 'postgres',
    canCarry: (p) => p.engine === 'postgres' && p.target === target,
    async acquire(holder, leaseMs) {
      // Free, lapsed or ours: take it (a new token unless it is ours and live). Held by another: no row comes back.
      const r = await pool.query<{ token: string; expires_at: string }>(
        `INSERT INTO ${s}.beat_lease AS l (ns, holder, token, expires_at) VALUES ($1, $2, 1, ${NOW_MS} + $3::bigint)
         ON CONFLICT (ns) DO UPDATE SET
           token = CASE WHEN l.holder = excluded.holder AND l.expires_at > ${NOW_MS} THEN l.token ELSE l.token + 1 END,
           holder = excluded.holder, expires_at = excluded.expires_at
         WHERE l.holder = '' OR l.holder = excluded.holder OR l.expires_at <= ${NOW_MS}
         RETURNING token, expires_at`,
        [ns, holder, Math.ceil(leaseMs)],
      );
      const won = r.rows[0];
      if (won) return { leader: true, token: Number(won.token), expiresAt: Number(won.expires_at) };
      const other = await pool.query<{ holder: string; expires_at: string }>(`SELECT holder, expires_at FROM ${s}.beat_lease WHERE ns = $1`, [ns]);
      // Released or lapsed between the two statements: report the lease as it was (the caller asks again next round).
      return { leader: false, holder: other.rows[0]?.holder ?? '', expiresAt: Number(other.rows[0]?.expires_at ?? 0) };
    },
    async release(holder, token) {
      await pool.query(`UPDATE ${s}.beat_lease SET holder = '', expires_at = 0 WHERE ns = $1 AND holder = $2 AND token = $3`, [ns, holder, token]);
    },
    claim,
    async confirm(entry, tick) {
      await pool.query(`UPDATE ${s}.beat_entry SET confirmed = true, pending = NULL WHERE ns = $1 AND name = $2 AND last_tick = $3`, [ns, entry, tick]);
    },
    async read() {
      const l = await pool.query<{ holder: string; token: string; expires_at: string }>(
        `SELECT holder, token, expires_at FROM ${s}.beat_lease WHERE ns = $1 AND holder <> '' AND expires_at > ${NOW_MS}`,
        [ns],
      );
      const e = await pool.query<EntryRow>(
        `SELECT name, last_tick, task_id, sent_at, token, total, skipped, confirmed, pending FROM ${s}.beat_entry WHERE ns = $1 ORDER BY name`,
        [ns],
      );
      const lease = l.rows[0] ? { holder: l.rows[0].holder, token: Number(l.rows[0].token), expiresAt: Number(l.rows[0].expires_at) } : undefined;
      const entries: BeatEntryState[] = e.rows.map((r) => ({
        name: r.name,
        lastTick: Number(r.last_tick),
        taskId: r.task_id,
        sentAt: Number(r.sent_at),
        token: Number(r.token),
        total: Number(r.total),
        skipped: Number(r.skipped),
        confirmed: r.confirmed,
        ...(r.pending !== null ? { pending: r.pending } : {}),
      }));
      return { lease, entries };
    },
    async close() {
      await pool.end();
    },
  };
}
