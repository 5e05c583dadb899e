/**
 * The PostgreSQL engine's replay store (the `ReplayStore` of
 * `core/replay-store.ts`; the state machine is in `security/replay-guard.ts`):
 * one row per nonce in `<schema>_replay.replay`, a schema apart from the
 * queues so that a producer role can be denied it entirely (no `USAGE`;
 * see `celeriac secrets generate postgres-roles`): a producer can then
 * neither read nor erase the nonces that stop a captured signed message
 * from running twice. Claims are one `INSERT … ON CONFLICT … WHERE`
 * statement, atomic across every worker on the server; times are the
 * server's clock.
 */
import type pg from 'pg';
import type { ClaimResult, ReplayStore } from '../../core/replay-store.ts';
import type { ReplayStoreOptions } from '../../core/engine.ts';
import { ConfigError } from '../../errors.ts';
import { ident, NOW_MS, openPool, pgTarget, updatePoolCredentials, type PgTarget } from './connection.ts';
import { componentSchema, migrate } from './schema.ts';

/** Open the replay store on the server of `options.url` (migrating its table). */
export async function openPgReplayStore(options: ReplayStoreOptions): Promise<PgReplayStore> {
  if (options.url === undefined) throw new ConfigError('the PostgreSQL replay store needs a PostgreSQL URL', { hint: 'use a postgres:// broker or result backend, or securityReplayStore: local' });
  const target = pgTarget(options.url, options.side, options.settings, options.logger);
  const pool = openPool(target, 'replay', 2);
  try {
    await migrate(pool, target.schema, 'replay');
  } catch (err) {
    await pool.end();
    throw err;
  }
  return new PgReplayStore(pool, target);
}

export class PgReplayStore implements ReplayStore {
  readonly kind = 'postgres';
  readonly shared = true;
  private readonly t: string;
  private ops = 0;

  constructor(
    private readonly pool: pg.Pool,
    private target: PgTarget,
  ) {
    this.t = `${ident(componentSchema(target.schema, 'replay'))}.replay`;
  }

  async claim(nonce: string, holder: string, leaseMs: number, staleHolder?: string): Promise<ClaimResult> {
    if (++this.ops % 1024 === 0) {
      this.pool.query(`DELETE FROM ${this.t} WHERE until <= ${NOW_MS}`).catch((err: Error) => this.target.logger.warn({ err: err.message }, 'sweeping expired replay nonces failed'));
    }
    const stale = staleHolder === undefined ? '' : `H${staleHolder}`;
    for (let attempt = 0; ; attempt++) {
      // The statement's snapshot predates its own write: `prior` is the row as it was when the claim failed.
      const r = await this.pool.query<{ claimed: boolean; prior: string | null }>(
        `WITH c AS (
           INSERT INTO ${this.t} AS x (nonce, state, until) VALUES ($1, $2, ${NOW_MS} + $3::bigint)
           ON CONFLICT (nonce) DO UPDATE SET state = excluded.state, until = excluded.until
           WHERE x.until <= ${NOW_MS} OR ($4 <> '' AND x.state = $4)
           RETURNING 1)
         SELECT EXISTS (SELECT 1 FROM c) AS claimed, (SELECT state FROM ${this.t} WHERE nonce = $1) AS prior`,
        [nonce, `H${holder}`, leaseMs, stale],
      );
      const row = r.rows[0]!;
      if (row.claimed) return { state: 'claimed' };
      // A concurrent claim committed after this statement's snapshot: read again.
      if (row.prior === null) {
        if (attempt < 3) continue;
        const again = await this.pool.query<{ state: string }>(`SELECT state FROM ${this.t} WHERE nonce = $1`, [nonce]);
        if (!again.rows[0]) continue;
        row.prior = again.rows[0].state;
      }
      return row.prior === 'S' ? { state: 'settled' } : { state: 'held', holder: row.prior.slice(1) };
    }
  }

  async settle(nonce: string, ttlMs: number): Promise<void> {
    await this.pool.query(
      `INSERT INTO ${this.t} (nonce, state, until) VALUES ($1, 'S', ${NOW_MS} + $2::bigint) ON CONFLICT (nonce) DO UPDATE SET state = 'S', until = excluded.until`,
      [nonce, ttlMs],
    );
  }

  async release(nonce: string, holder: string): Promise<void> {
    await this.pool.query(`DELETE FROM ${this.t} WHERE nonce = $1 AND state = $2`, [nonce, `H${holder}`]);
  }

  async refresh(nonces: readonly string[], holder: string, leaseMs: number): Promise<void> {
    if (nonces.length === 0) return;
    await this.pool.query(`UPDATE ${this.t} SET until = ${NOW_MS} + $3::bigint WHERE nonce = ANY($1::text[]) AND state = $2 AND until > ${NOW_MS}`, [[...nonces], `H${holder}`, leaseMs]);
  }

  async updateCredentials(url: string): Promise<void> {
    this.target = await updatePoolCredentials(this.pool, this.target, url);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
