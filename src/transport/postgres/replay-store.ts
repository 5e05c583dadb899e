/**
 * The PostgreSQL engine's replay store (the `ReplayStore` of
 * `core/replay-store.ts`; the state machine is in `security/replay-guard.ts`):
 * one row per nonce in `<schema>_replay.replay`, a schema apart from the
 * queues so that a producer role can be denied it entirely (no `USAGE`;
 * see `celeriac secrets generate postgres-roles`): a producer can then
 * neither read nor erase the nonces that stop a captured signed message
 * from running twice. Claims are `INSERT … ON CONFLICT … WHERE`
 * statements, atomic across every worker on the server (those of one turn
 * of the event loop share one); times are the server's clock.
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

type Op =
  | { kind: 'claim'; nonce: string; holder: string; leaseMs: number; stale: string; resolve: (r: ClaimResult) => void; reject: (e: unknown) => void }
  | { kind: 'settle'; nonce: string; ttlMs: number; resolve: (r: void) => void; reject: (e: unknown) => void }
  | { kind: 'release'; nonce: string; holder: string; resolve: (r: void) => void; reject: (e: unknown) => void };

/** An operation as queued, before its promise exists. */
type OpInput = Op extends infer O ? (O extends Op ? Omit<O, 'resolve' | 'reject'> : never) : never;

export class PgReplayStore implements ReplayStore {
  readonly kind = 'postgres';
  readonly shared = true;
  private readonly t: string;
  private ops = 0;
  /**
   * Claims, settles and releases made in one turn of the event loop, run in
   * order as few statements (one commit each, instead of one per nonce: a
   * worker admits and acks whole reserve batches at a time).
   */
  private queue: Op[] = [];
  private scheduled = false;
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly pool: pg.Pool,
    private target: PgTarget,
  ) {
    this.t = `${ident(componentSchema(target.schema, 'replay'))}.replay`;
  }

  private enqueue<R>(op: OpInput): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ ...op, resolve, reject } as unknown as Op);
      if (this.scheduled) return;
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        const batch = this.queue;
        this.queue = [];
        this.chain = this.chain.then(() => this.run(batch));
      });
    });
  }

  /** Run a turn's operations in order: consecutive ones of one kind on distinct nonces share a statement. */
  private async run(batch: Op[]): Promise<void> {
    const segments: Op[][] = [];
    let seen = new Set<string>();
    for (const op of batch) {
      const last = segments[segments.length - 1];
      if (!last || last[0]!.kind !== op.kind || op.kind === 'release' || seen.has(op.nonce)) {
        segments.push([op]);
        seen = new Set([op.nonce]);
      } else {
        last.push(op);
        seen.add(op.nonce);
      }
    }
    for (const seg of segments) {
      try {
        if (seg[0]!.kind === 'claim') await this.claimMany(seg as Array<Extract<Op, { kind: 'claim' }>>);
        else if (seg[0]!.kind === 'settle') await this.settleMany(seg as Array<Extract<Op, { kind: 'settle' }>>);
        else await this.releaseOne(seg[0] as Extract<Op, { kind: 'release' }>);
      } catch (err) {
        for (const op of seg) op.reject(err);
      }
    }
  }

  async claim(nonce: string, holder: string, leaseMs: number, staleHolder?: string): Promise<ClaimResult> {
    if (++this.ops % 1024 === 0) {
      this.pool.query(`DELETE FROM ${this.t} WHERE until <= ${NOW_MS}`).catch((err: Error) => this.target.logger.warn({ err: err.message }, 'sweeping expired replay nonces failed'));
    }
    return this.enqueue<ClaimResult>({ kind: 'claim', nonce, holder: `H${holder}`, leaseMs, stale: staleHolder === undefined ? '' : `H${staleHolder}` });
  }

  /** Claims of distinct nonces in one statement; its snapshot predates its writes, so `prior` is each row as it was. */
  private async claimMany(ops: Array<Extract<Op, { kind: 'claim' }>>): Promise<void> {
    const r = await this.pool.query<{ nonce: string; claimed: boolean; prior: string | null }>(
      `WITH input AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) AS i(nonce, holder, lease, stale)),
       c AS (
         INSERT INTO ${this.t} AS x (nonce, state, until) SELECT nonce, holder, ${NOW_MS} + lease FROM input
         ON CONFLICT (nonce) DO UPDATE SET state = excluded.state, until = excluded.until
         WHERE x.until <= ${NOW_MS} OR EXISTS (SELECT 1 FROM input s WHERE s.nonce = x.nonce AND s.stale <> '' AND s.stale = x.state)
         RETURNING nonce)
       SELECT i.nonce, EXISTS (SELECT 1 FROM c WHERE c.nonce = i.nonce) AS claimed, (SELECT state FROM ${this.t} p WHERE p.nonce = i.nonce) AS prior FROM input i`,
      [ops.map((o) => o.nonce), ops.map((o) => o.holder), ops.map((o) => o.leaseMs), ops.map((o) => o.stale)],
    );
    const rows = new Map(r.rows.map((row) => [row.nonce, row]));
    for (const op of ops) {
      const row = rows.get(op.nonce);
      if (row?.claimed) op.resolve({ state: 'claimed' });
      else if (row?.prior) op.resolve(row.prior === 'S' ? { state: 'settled' } : { state: 'held', holder: row.prior.slice(1) });
      // A concurrent claim committed after this statement's snapshot: ask again on its own.
      else this.claimOne(op).then(op.resolve, op.reject);
    }
  }

  private async claimOne(op: Extract<Op, { kind: 'claim' }>): Promise<ClaimResult> {
    for (let attempt = 0; ; attempt++) {
      const r = await this.pool.query<{ claimed: boolean; prior: string | null }>(
        `WITH c AS (
           INSERT INTO ${this.t} AS x (nonce, state, until) VALUES ($1, $2, ${NOW_MS} + $3::bigint)
           ON CONFLICT (nonce) DO UPDATE SET state = excluded.state, until = excluded.until
           WHERE x.until <= ${NOW_MS} OR ($4 <> '' AND x.state = $4)
           RETURNING 1)
         SELECT EXISTS (SELECT 1 FROM c) AS claimed, (SELECT state FROM ${this.t} WHERE nonce = $1) AS prior`,
        [op.nonce, op.holder, op.leaseMs, op.stale],
      );
      const row = r.rows[0]!;
      if (row.claimed) return { state: 'claimed' };
      if (row.prior !== null) return row.prior === 'S' ? { state: 'settled' } : { state: 'held', holder: row.prior.slice(1) };
      if (attempt >= 5) throw new Error(`replay nonce ${op.nonce} changed under every claim; giving up`);
    }
  }

  settle(nonce: string, ttlMs: number): Promise<void> {
    return this.enqueue<void>({ kind: 'settle', nonce, ttlMs });
  }

  private async settleMany(ops: Array<Extract<Op, { kind: 'settle' }>>): Promise<void> {
    await this.pool.query(
      `INSERT INTO ${this.t} (nonce, state, until) SELECT nonce, 'S', ${NOW_MS} + ttl FROM unnest($1::text[], $2::bigint[]) AS i(nonce, ttl)
       ON CONFLICT (nonce) DO UPDATE SET state = 'S', until = excluded.until`,
      [ops.map((o) => o.nonce), ops.map((o) => o.ttlMs)],
    );
    for (const op of ops) op.resolve();
  }

  release(nonce: string, holder: string): Promise<void> {
    return this.enqueue<void>({ kind: 'release', nonce, holder: `H${holder}` });
  }

  private async releaseOne(op: Extract<Op, { kind: 'release' }>): Promise<void> {
    await this.pool.query(`DELETE FROM ${this.t} WHERE nonce = $1 AND state = $2`, [op.nonce, op.holder]);
    op.resolve();
  }

  async refresh(nonces: readonly string[], holder: string, leaseMs: number): Promise<void> {
    if (nonces.length === 0) return;
    await this.pool.query(`UPDATE ${this.t} SET until = ${NOW_MS} + $3::bigint WHERE nonce = ANY($1::text[]) AND state = $2 AND until > ${NOW_MS}`, [[...nonces], `H${holder}`, leaseMs]);
  }

  async updateCredentials(url: string): Promise<void> {
    this.target = await updatePoolCredentials(this.pool, this.target, url);
  }

  async close(): Promise<void> {
    // What was queued before close still runs.
    await new Promise<void>((r) => setImmediate(r));
    await this.chain;
    await this.pool.end();
  }
}
