/**
 * Message rows as the PostgreSQL broker inserts them, and the outbox: a
 * publish that another transaction on the same database and schema writes
 * (celeriac beat inserts a tick's record and its task message in one
 * transaction, see `core/broker.ts` `OutboxPublish`). The NOTIFY that wakes
 * idle consumers is sent inside that transaction: PostgreSQL delivers it at
 * commit, and not at all on rollback, so the wake-up follows the row.
 */
import type pg from 'pg';
import type { OutboxPublish, PublishItem } from '../../core/broker.ts';
import { parseIso } from '../../protocol/time.ts';
import type { MessageProperties } from '../../protocol/types.ts';
import { priorityStep } from '../virtual/priority.ts';
import { NOW_MS, type PgTarget } from './connection.ts';

/** `messages.state` of a row ready to be reserved. */
export const READY = 0;
/** `messages.state` of a row waiting for its eta. */
export const DELAYED = 2;

/** Rows of `messages` as parallel arrays (the parameters `$1`–`$9` of {@link insertMessagesSql}). */
export type MessageColumns = [
  queues: string[],
  priorities: number[],
  states: number[],
  notBefore: string[],
  headers: string[],
  properties: string[],
  contentTypes: string[],
  contentEncodings: string[],
  bodies: Buffer[],
];

/** The rows of `items`, in their order; a future eta makes a delayed row. */
export function messageColumns(items: readonly PublishItem[], now: number): MessageColumns {
  const cols: MessageColumns = [[], [], [], [], [], [], [], [], []];
  for (const { queue, message, options } of items) {
    const eta = typeof message.headers.eta === 'string' ? parseIso(message.headers.eta) : undefined;
    const delayed = eta !== undefined && eta > now;
    // Delivery details are the receiver's, not the message's.
    const { delivery_info: _i, delivery_tag: _t, body_encoding: _b, ...properties } = message.properties as MessageProperties & Record<string, unknown>;
    cols[0].push(queue);
    cols[1].push(priorityStep(options?.priority ?? message.properties.priority));
    cols[2].push(delayed ? DELAYED : READY);
    cols[3].push(String(delayed ? eta : 0));
    cols[4].push(JSON.stringify(message.headers));
    cols[5].push(JSON.stringify(properties));
    cols[6].push(message.contentType);
    cols[7].push(message.contentEncoding);
    cols[8].push(message.body);
  }
  return cols;
}

/**
 * One statement that inserts the rows of `$1`–`$9` into `<s>.messages`
 * (numbered in their order by the schema's sequence) and NOTIFYs channel
 * `$10` once per queue. `s` is the quoted schema.
 */
export function insertMessagesSql(s: string): string {
  // WITH ORDINALITY keeps the items' order in their sequence numbers (FIFO as sent).
  return `WITH ins AS (
      INSERT INTO ${s}.messages (queue, priority, seq, state, not_before, headers, properties, content_type, content_encoding, body, published_at)
      SELECT q, p, nextval('${s}.message_seq'), st, nb, h, pr, ct, ce, b, ${NOW_MS}
      FROM unnest($1::text[], $2::smallint[], $3::smallint[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bytea[]) WITH ORDINALITY AS i(q, p, st, nb, h, pr, ct, ce, b, n)
      ORDER BY n
      RETURNING queue)
    SELECT count(pg_notify($10, q)) FROM (SELECT DISTINCT queue AS q FROM ins) d`;
}

/**
 * The database and schema a target writes to: `host:port/database/schema`.
 * Two URLs with the same id reach the same tables (a different user or
 * password does not matter); a host spelled differently (`localhost`,
 * `127.0.0.1`) gives another id, so the outbox is not used, which is safe.
 */
export function pgTargetId(t: PgTarget): string {
  return `${t.parsed.host.toLowerCase()}:${t.parsed.port ?? 5432}/${t.parsed.database}/${t.schema}`;
}

/** What the PostgreSQL broker hands a beat store on the same database and schema. */
export interface PgOutboxPublish extends OutboxPublish {
  readonly engine: 'postgres';
  /** The rows to insert, with {@link insertMessagesSql} of the target's schema. */
  readonly columns: MessageColumns;
}

/** Whether `p` is a PostgreSQL outbox publish for `target` (a {@link pgTargetId}). */
export function isPgOutbox(p: Pick<OutboxPublish, 'engine' | 'target'>, target: string): p is PgOutboxPublish {
  return p.engine === 'postgres' && p.target === target && Array.isArray((p as Partial<PgOutboxPublish>).columns);
}

/**
 * Insert the rows of `columns` on `client` (inside the caller's
 * transaction) and queue their NOTIFY on `channel` for its commit.
 */
export async function writeMessages(client: pg.ClientBase | pg.Pool, s: string, channel: string, columns: MessageColumns): Promise<void> {
  await client.query(insertMessagesSql(s), [...columns, channel]);
}
