/**
 * Message rows as the SQLite broker stores them, and the outbox: a publish
 * another transaction on the same file writes (celeriac beat stores a
 * tick's record and its task message in one `BEGIN IMMEDIATE`, see
 * `core/broker.ts` `OutboxPublish`).
 */
import type { OutboxPublish, PublishItem } from '../../core/broker.ts';
import { parseIso } from '../../protocol/time.ts';
import type { MessageProperties } from '../../protocol/types.ts';
import { priorityStep } from '../virtual/priority.ts';
import type { SqliteDatabase } from './open.ts';
import { counterStatement } from './schema.ts';

/** `messages.state` of a row ready to be reserved. */
export const READY = 0;
/** `messages.state` of a row waiting for its eta. */
export const DELAYED = 2;

/** One row of `messages`, in the order of {@link INSERT_MESSAGE}'s columns after `seq`. */
export type MessageRow = readonly [
  queue: string,
  priority: number,
  state: number,
  notBefore: number,
  headers: string,
  properties: string,
  contentType: string,
  contentEncoding: string,
  body: Buffer | string,
];

export const INSERT_MESSAGE =
  'INSERT INTO messages (queue, priority, seq, state, not_before, headers, properties, content_type, content_encoding, body, published_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)';

/** The row of a publish: a future eta makes it a delayed row. */
export function messageRow({ queue, message, options }: PublishItem, now: number): MessageRow {
  const eta = typeof message.headers.eta === 'string' ? parseIso(message.headers.eta) : undefined;
  const delayed = eta !== undefined && eta > now;
  // Delivery details are the receiver's, not the message's.
  const { delivery_info: _i, delivery_tag: _t, body_encoding: _b, ...properties } = message.properties as MessageProperties & Record<string, unknown>;
  return [
    queue,
    priorityStep(options?.priority ?? message.properties.priority),
    delayed ? DELAYED : READY,
    delayed ? eta : 0,
    JSON.stringify(message.headers),
    JSON.stringify(properties),
    message.contentType,
    message.contentEncoding,
    message.body,
  ];
}

/** What the SQLite broker hands a beat store on the same file. */
export interface SqliteOutboxPublish extends OutboxPublish {
  readonly engine: 'sqlite';
  readonly rows: readonly MessageRow[];
}

/** Whether `p` is an SQLite outbox publish for the file at `path`. */
export function isSqliteOutbox(p: Pick<OutboxPublish, 'engine' | 'target'>, path: string): p is SqliteOutboxPublish {
  return p.engine === 'sqlite' && p.target === path && Array.isArray((p as Partial<SqliteOutboxPublish>).rows);
}

const writers = new WeakMap<SqliteDatabase, (rows: readonly MessageRow[], now: number) => void>();

/**
 * Insert `rows` on `db` (inside the caller's transaction), numbered by the
 * file's shared sequence as the broker numbers them.
 */
export function writeMessageRows(db: SqliteDatabase, rows: readonly MessageRow[], now: number): void {
  let write = writers.get(db);
  if (!write) {
    const insert = db.prepare(INSERT_MESSAGE);
    const counter = counterStatement(db);
    write = (rs, at) => {
      let seq = counter('broker.seq', rs.length) - rs.length;
      for (const r of rs) insert.run(r[0], r[1], ++seq, r[2], r[3], r[4], r[5], r[6], r[7], r[8], at);
    };
    writers.set(db, write);
  }
  write(rows, now);
}
