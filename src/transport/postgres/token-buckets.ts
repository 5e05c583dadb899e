/**
 * The PostgreSQL engine's shared token buckets (`core/token-buckets.ts`):
 * one row of `<schema>.rate_buckets` per bucket (tokens left at `ts`), the
 * same arithmetic as Redis's `take-tokens-n.lua`, on the server's clock.
 *
 * A take is one transaction: an upsert locks every named row (created full
 * when missing, in name order so two takes over overlapping buckets cannot
 * deadlock) and returns it with the server's time after the lock; the
 * tokens are refilled and taken here, then written back. Row locks held to
 * the commit make the read-modify-write atomic across every client, and a
 * take with too few tokens in any bucket writes the refill only (all or
 * nothing).
 */
import type pg from 'pg';
import type { SharedTokenBuckets } from '../../core/token-buckets.ts';
import type { AdapterContext } from '../../core/adapter-context.ts';
import { ident, inTransaction, NOW_MS, openPool, pgTarget } from './connection.ts';
import { migrate } from './schema.ts';

/** Options of {@link openPgTokenBuckets}. */
export interface PgTokenBucketsOptions extends AdapterContext {
  url: string;
  side: 'broker' | 'backend';
  /** Names the connection (`celeriac:<role>`). */
  role: string;
}

/** Sweep rows past their expiry every this many takes (a row that old is full again anyway). */
const SWEEP_EVERY = 1024;

/** Open buckets on the database of `options.url` (its coordination tables made or found). */
export async function openPgTokenBuckets(options: PgTokenBucketsOptions): Promise<SharedTokenBuckets> {
  const target = pgTarget(options.url, options.side, options.settings, options.logger);
  const pool = openPool(target, options.role, 2);
  try {
    await migrate(pool, target.schema, 'coordination');
  } catch (err) {
    await pool.end();
    throw err;
  }
  return createPgTokenBuckets(pool, target.schema);
}

/** Buckets in `schema` on `pool` (which it owns: `close()` ends it). */
export function createPgTokenBuckets(pool: pg.Pool, schema: string): SharedTokenBuckets {
  const t = `${ident(schema)}.rate_buckets`;
  let takes = 0;

  async function take(buckets: readonly string[], n: number, limits: ReadonlyArray<{ rate: number; capacity: number }>): Promise<number> {
    if (buckets.length === 0) return 0;
    const byName = new Map(buckets.map((b, i) => [b, limits[i]!]));
    const names = [...byName.keys()].sort();
    const caps = names.map((b) => byName.get(b)!.capacity);
    return inTransaction(pool, async (client) => {
      // DO UPDATE (not DO NOTHING) so an existing row is locked and returned too; `now` is read per row, after its lock.
      const r = await client.query<{ name: string; tokens: number; ts: string; now: string }>(
        `INSERT INTO ${t} AS b (name, tokens, ts, expires_at)
         SELECT name, cap, ${NOW_MS}, 0 FROM unnest($1::text[], $2::float8[]) WITH ORDINALITY AS i(name, cap, k) ORDER BY k
         ON CONFLICT (name) DO UPDATE SET name = b.name
         RETURNING b.name, b.tokens, b.ts, ${NOW_MS} AS now`,
        [names, caps],
      );
      const now = Math.max(...r.rows.map((row) => Number(row.now)));
      const rows = new Map(r.rows.map((row) => [row.name, row]));
      let wait = 0;
      const left = names.map((name) => {
        const { rate, capacity } = byName.get(name)!;
        const row = rows.get(name)!;
        const ts = Number(row.ts);
        const tokens = now > ts ? Math.min(capacity, row.tokens + ((now - ts) * rate) / 1000) : row.tokens;
        if (tokens < n) wait = Math.max(wait, Math.ceil(((n - tokens) * 1000) / rate));
        return tokens;
      });
      const after = wait === 0 ? left.map((tk) => tk - n) : left;
      const expires = names.map((name) => {
        const { rate, capacity } = byName.get(name)!;
        return now + Math.ceil((capacity * 1000) / rate) + 1000;
      });
      await client.query(
        `UPDATE ${t} b SET tokens = v.tokens, ts = $3, expires_at = v.expires_at
         FROM unnest($1::text[], $2::float8[], $4::bigint[]) AS v(name, tokens, expires_at) WHERE b.name = v.name`,
        [names, after, now, expires],
      );
      return wait;
    });
  }

  return {
    async take(buckets, n, limits) {
      if (++takes % SWEEP_EVERY === 0) {
        // Best effort: a row left behind is only a full bucket's worth of disk.
        pool.query(`DELETE FROM ${t} WHERE expires_at < ${NOW_MS}`).catch(() => undefined);
      }
      return take(buckets, n, limits);
    },
    close: () => pool.end(),
  };
}
