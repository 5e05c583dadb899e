/**
 * Oversized SQLite rows are never read (issue 20 #7, SQLite part): the
 * reserve measures each row in SQL (`octet_length`, which reads only the
 * record header) and never takes one over the body limit; once the rows
 * that fit are taken, an oversized one is moved to the dead-letter table
 * unread (its id, size and the reason; no body), reported like any
 * malformed message, and never redriven. Delayed rows and broadcasts get
 * the same check.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createSqliteBroker, type MessageRow, type SqliteBroker } from '../../../src/transport/sqlite/broker.ts';
import type { BroadcastDelivery, Delivery } from '../../../src/core/broker.ts';
import { JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';
import { sqliteUrlForPath } from '../../../src/transport/sqlite/open.ts';
import { sleep, waitFor } from '../../helpers/services.ts';

const MAX = 64 * 1024;
const BIG = 8 * 1024 * 1024;
const task = (id: string, size: number, eta?: number) => buildTaskMessage({ task: 't.x', id, args: ['x'.repeat(size)], kwargs: {}, ...(eta ? { eta } : {}) }, JSON_SERIALIZER);

/** Record the largest body the broker hands to its consumer (read from the database into this process). */
function largestRead(broker: SqliteBroker): { largest: number; restore(): void } {
  const state = { largest: 0, restore: () => undefined as void };
  const reserve = broker.reserve.bind(broker);
  broker.reserve = (...args: Parameters<SqliteBroker['reserve']>): MessageRow[] => {
    const rows = reserve(...args);
    for (const r of rows) state.largest = Math.max(state.largest, r.body.length, r.headers.length);
    return rows;
  };
  state.restore = () => {
    broker.reserve = reserve;
  };
  return state;
}

describe('sqlite oversized messages', () => {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-sqlite-big-'));
  const broker = createSqliteBroker({ url: sqliteUrlForPath(join(dir, 'b.db')), logger: createLogger({ level: 'silent' }), settings: resolveSettings({ decodeLimits: { maxBytes: MAX } }) });
  after(async () => {
    await broker.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a row over the limit is never read: dead-lettered unread (id, size, reason, no body) once the rows that fit are served; never redriven', async () => {
    await broker.publish('bq', task('small-1', 10));
    await broker.publish('bq', task('big-1', BIG));
    await broker.publish('bq', task('small-2', 10));
    const spy = largestRead(broker);
    const got: Delivery[] = [];
    const malformed: Array<{ id: string | undefined; reason: string }> = [];
    // A window of one: the big row sits between two that fit and is skipped, not read, while they are served.
    const c = await broker.consume(['bq'], { prefetch: 1, onMalformed: (m) => malformed.push(m) }, (d) => {
      got.push(d);
      void d.ack();
    });
    await waitFor(() => got.length === 2 && malformed.length === 1, 10_000, 'two small, one oversized');
    await c.cancel();
    spy.restore();
    assert.deepEqual(got.map((d) => d.message.headers.id), ['small-1', 'small-2']);
    assert.ok(spy.largest < MAX, `a ${spy.largest}-byte value was read from the database`);
    assert.equal(malformed[0]!.id, 'big-1');
    assert.match(malformed[0]!.reason, /^message of \d+ bytes exceeds the 65536-byte limit; dead-lettered unread$/);
    assert.equal(await broker.queueLength('bq'), 0);
    const dead = await broker.deadLetters('bq');
    assert.equal(dead.length, 1);
    assert.equal(dead[0]!.message?.headers.id, 'big-1');
    assert.equal(dead[0]!.message?.body.length, 0);
    assert.equal(dead[0]!.truncated, true);
    assert.ok(Number(/message of (\d+) bytes/.exec(dead[0]!.reason)![1]) > BIG);
    const redrive = await broker.redriveDeadLetters('bq');
    assert.deepEqual(redrive.moved, []);
    assert.equal(redrive.refused[0]?.id, 'big-1');
  });

  it('under sustained load (the window always full) an oversized row at the head is still dead-lettered, unread, at once', async () => {
    // A broker of its own (on the same file): its first reserve measures the head, as every one does every 10 s.
    const b2 = createSqliteBroker({ url: sqliteUrlForPath(join(dir, 'b.db')), logger: createLogger({ level: 'silent' }), settings: resolveSettings({ decodeLimits: { maxBytes: MAX } }) });
    await b2.publish('hq', task('head-big', BIG));
    await b2.publishMany(Array.from({ length: 40 }, (_, i) => ({ queue: 'hq', message: task(`head-small-${i}`, 10) })));
    const spy = largestRead(b2);
    const got: Delivery[] = [];
    const malformed: Array<{ id: string | undefined; reason: string }> = [];
    // Nothing is acked: every reserve fills the window of 5, so only the head check can find the big row.
    const c = await b2.consume(['hq'], { prefetch: 5, onMalformed: (m) => malformed.push(m) }, (d) => got.push(d));
    await waitFor(() => got.length === 5 && malformed.length === 1, 10_000, 'a full window and the oversized row dead-lettered');
    spy.restore();
    assert.equal(malformed[0]!.id, 'head-big');
    assert.ok(spy.largest < MAX);
    assert.equal(await b2.queueLength('hq'), 35);
    for (const d of got) await d.ack();
    await c.cancel();
    await b2.close();
  });

  it('a delayed row over the limit is dead-lettered unread when due (never promoted, which would rewrite it)', async () => {
    const eta = Date.now() + 300;
    await broker.publish('dq', task('late-big', BIG, eta));
    await broker.publish('dq', task('late-small', 10, eta));
    const spy = largestRead(broker);
    const got: Delivery[] = [];
    const malformed: Array<{ id: string | undefined; reason: string }> = [];
    const c = await broker.consume(['dq'], { prefetch: 4, onMalformed: (m) => malformed.push(m) }, (d) => {
      got.push(d);
      void d.ack();
    });
    await waitFor(() => got.length === 1 && malformed.length === 1, 10_000, 'one small, one oversized');
    await c.cancel();
    spy.restore();
    assert.equal(got[0]!.message.headers.id, 'late-small');
    assert.equal(malformed[0]!.id, 'late-big');
    assert.ok(spy.largest < MAX);
    assert.equal((await broker.deadLetters('dq')).length, 1);
  });

  it('a broadcast over the limit is dropped unread; the subscription keeps receiving', async () => {
    const exchange = { name: 'bx', type: 'fanout' as const, durable: false };
    const got: BroadcastDelivery[] = [];
    const bad: string[] = [];
    const sub = await broker.subscribe(exchange, { onMalformed: (m) => bad.push(m.reason) }, (m) => got.push(m));
    await broker.broadcast(exchange, '', task('b-1', 10));
    await broker.broadcast(exchange, '', task('b-big', BIG));
    await broker.broadcast(exchange, '', task('b-2', 10));
    await waitFor(() => got.length === 2 && bad.length === 1, 10_000, 'two broadcasts, one refused');
    await sleep(50);
    assert.deepEqual(got.map((m) => m.message.headers.id), ['b-1', 'b-2']);
    assert.match(bad[0]!, /^broadcast of \d+ bytes exceeds the 65536-byte limit; not read$/);
    await sub.close();
  });
});
