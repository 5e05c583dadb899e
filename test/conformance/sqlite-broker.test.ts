/**
 * The broker conformance suite against the SQLite broker: every instance
 * opens the same file (like processes sharing a server), and the crash hook
 * is a real process that takes messages and dies by SIGKILL.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSqliteBroker } from '../../src/transport/sqlite/broker.ts';
import { resolveSettings } from '../../src/config/options.ts';
import { createLogger } from '../../src/observability/logging.ts';
import { sqliteUrlForPath } from '../../src/transport/sqlite/open.ts';
import { brokerConformance } from './broker.ts';
import { consumeAndDie } from '../helpers/crash.ts';
import Database from 'better-sqlite3';

const dir = mkdtempSync(join(tmpdir(), 'celeriac-sqlite-conf-'));
const file = join(dir, 'broker.db');
const url = sqliteUrlForPath(file);
const logger = createLogger({ level: 'silent' });

brokerConformance('sqlite', {
  priority: 'lower-first',
  teardown: async () => rmSync(dir, { recursive: true, force: true }),
  create: async (o) =>
    createSqliteBroker({ url, logger, settings: resolveSettings({ brokerTransportOptions: { visibilityTimeout: o?.visibilityTimeout ?? 3600 } }) }),
  crash: (queue, count, o) => consumeAndDie(url, queue, count, o.visibilityTimeout ?? 1),
  injectMalformed: async (queue) => {
    // A row another program wrote badly: headers that are not JSON.
    const broker = createSqliteBroker({ url, logger, settings: resolveSettings({}) });
    await broker.connect();
    await broker.close();
    const db = new Database(file);
    db.prepare(
      `INSERT INTO messages (queue, priority, seq, state, headers, properties, content_type, content_encoding, body, published_at)
       VALUES (?, 0, -1000000, 0, 'this is not json {', '{}', 'application/json', 'utf-8', x'00', 0)`,
    ).run(queue);
    db.close();
  },
  injectMalformedBroadcast: async (ex, rk) => {
    // A row another program wrote badly; subscribers find it at their next wake or safety check.
    const db = new Database(file);
    db.prepare(
      `INSERT INTO fanout (exchange, routing_key, headers, properties, content_type, content_encoding, body, created_at) VALUES (?, ?, 'this is not json {', '{}', 'application/json', 'utf-8', x'00', ?)`,
    ).run(ex.name, rk, Date.now());
    db.close();
  },
});
