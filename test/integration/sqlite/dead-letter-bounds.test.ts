/**
 * SQLite dead letters stay bounded (issue 20 #7): a dead-lettered message
 * over 64 KiB keeps its headers, the reason and its first KiB.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createSqliteBroker } from '../../../src/transport/sqlite/broker.ts';
import type { Delivery } from '../../../src/core/broker.ts';
import { JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';
import { sqliteUrlForPath } from '../../../src/transport/sqlite/open.ts';
import { waitFor } from '../../helpers/services.ts';

describe('sqlite dead-letter bounds', () => {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-sqlite-dlq-'));
  const broker = createSqliteBroker({ url: sqliteUrlForPath(join(dir, 'b.db')), logger: createLogger({ level: 'silent' }), settings: resolveSettings({}) });
  after(async () => {
    await broker.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps the first KiB of a large dead-lettered body, with its id and the reason', async () => {
    const m = buildTaskMessage({ task: 't.big', id: 'big-1', args: ['x'.repeat(300 * 1024)], kwargs: {} }, JSON_SERIALIZER);
    await broker.publish('dq', m);
    const got: Delivery[] = [];
    const c = await broker.consume(['dq'], { prefetch: 1 }, (d) => got.push(d));
    await waitFor(() => got.length === 1, 5000, 'delivery');
    await got[0]!.deadLetter('too big to keep');
    await c.cancel();
    const dead = await broker.deadLetters('dq');
    assert.equal(dead.length, 1);
    assert.match(dead[0]!.reason, /^too big to keep \(body of \d+ bytes truncated to 1024\)$/);
    assert.equal(dead[0]!.message?.headers.id, 'big-1');
    assert.equal(dead[0]!.message?.body.length, 1024);
  });
});
