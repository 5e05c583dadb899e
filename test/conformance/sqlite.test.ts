/**
 * The SQLite engine's conformance run: registry, broker, result backend and
 * replay store. Every instance of a suite opens the same file (like
 * processes on one machine), and the broker's crash hook is a real process
 * that takes messages and dies by SIGKILL.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { engine } from '../../src/transport/sqlite/index.ts';
import { resolveSettings } from '../../src/config/options.ts';
import { createLogger } from '../../src/observability/logging.ts';
import { sqliteUrlForPath } from '../../src/transport/sqlite/open.ts';
import { backendConformance } from './backend.ts';
import { brokerConformance } from './broker.ts';
import { registryConformance } from './registry.ts';
import { replayStoreConformance } from './replay-store.ts';
import { consumeAndDie } from '../helpers/crash.ts';

const dir = mkdtempSync(join(tmpdir(), 'celeriac-sqlite-conf-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
const logger = createLogger({ level: 'silent' });

registryConformance(engine, (scheme) => `${scheme}:///var/lib/celeriac/broker.db`);

const brokerFile = join(dir, 'broker.db');
const brokerUrl = sqliteUrlForPath(brokerFile);
brokerConformance('sqlite', {
  priority: 'lower-first',
  create: async (o) =>
    engine.createBroker(brokerUrl, { logger, settings: resolveSettings({ brokerTransportOptions: { visibilityTimeout: o?.visibilityTimeout ?? 3600 } }) }),
  crash: (queue, count, o) => consumeAndDie(brokerUrl, queue, count, o.visibilityTimeout ?? 1),
  injectMalformed: async (queue) => {
    // A row another program wrote badly: headers that are not JSON.
    const broker = engine.createBroker(brokerUrl, { logger, settings: resolveSettings({}) });
    await broker.connect();
    await broker.close();
    const db = new Database(brokerFile);
    db.prepare(
      `INSERT INTO messages (queue, priority, seq, state, headers, properties, content_type, content_encoding, body, published_at)
       VALUES (?, 0, -1000000, 0, 'this is not json {', '{}', 'application/json', 'utf-8', x'00', 0)`,
    ).run(queue);
    db.close();
  },
  injectMalformedBroadcast: async (ex, rk) => {
    // A row another program wrote badly; subscribers find it at their next wake or safety check.
    const db = new Database(brokerFile);
    db.prepare(
      `INSERT INTO fanout (exchange, routing_key, headers, properties, content_type, content_encoding, body, created_at) VALUES (?, ?, 'this is not json {', '{}', 'application/json', 'utf-8', x'00', ?)`,
    ).run(ex.name, rk, Date.now());
    db.close();
  },
});

const backendUrl = sqliteUrlForPath(join(dir, 'results.db'));
backendConformance('sqlite', {
  shared: true,
  create: async () => engine.createBackend!(backendUrl, { logger, settings: resolveSettings({}) }),
});

const replayUrl = sqliteUrlForPath(join(dir, 'replay.db'));
replayStoreConformance('sqlite', {
  shared: true,
  open: async () => engine.createReplayStore!({ url: replayUrl, side: 'broker', keyPrefix: '', logger, settings: resolveSettings({}) }),
});
