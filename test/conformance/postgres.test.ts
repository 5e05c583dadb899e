/**
 * The PostgreSQL engine's conformance run: registry, broker, result backend
 * and replay store against the loopback server (trust authentication,
 * allowed because `npm test` runs in development mode), each suite in
 * schemas of its own that are dropped afterwards. The broker's crash hook
 * is a real process that takes messages and dies by SIGKILL.
 */
import { after, test } from 'node:test';
import { engine } from '../../src/transport/postgres/index.ts';
import { resolveSettings } from '../../src/config/options.ts';
import { createLogger } from '../../src/observability/logging.ts';
import { backendConformance } from './backend.ts';
import { brokerConformance } from './broker.ts';
import { registryConformance } from './registry.ts';
import { replayStoreConformance } from './replay-store.ts';
import { consumeAndDie } from '../helpers/crash.ts';
import { dropPgSchema, hasPostgres, pgAdmin, pgSchemaUrl } from '../helpers/postgres.ts';
import { IN_CI } from '../helpers/services.ts';

registryConformance(engine, (scheme) => `${scheme}://user:pw@localhost/celeriac`);

if (!(await hasPostgres())) {
  test('postgres conformance', (t) => {
    if (IN_CI) throw new Error('PostgreSQL is required in CI');
    t.skip('PostgreSQL not reachable');
  });
} else {
  const logger = createLogger({ level: 'silent' });
  const broker = pgSchemaUrl('conf_broker');
  const backend = pgSchemaUrl('conf_backend');
  const replay = pgSchemaUrl('conf_replay');
  after(async () => {
    for (const s of [broker, backend, replay]) await dropPgSchema(s.schema);
  });

  brokerConformance('postgres', {
    priority: 'lower-first',
    create: async (o) => engine.createBroker(broker.url, { logger, settings: resolveSettings({ brokerTransportOptions: { visibilityTimeout: o?.visibilityTimeout ?? 3600 } }) }),
    crash: (queue, count, o) => consumeAndDie(broker.url, queue, count, o.visibilityTimeout ?? 1),
    injectMalformed: async (queue) => {
      // A row another program wrote badly: headers that are not JSON.
      const b = engine.createBroker(broker.url, { logger, settings: resolveSettings({}) });
      await b.connect();
      await b.close();
      await pgAdmin(
        `INSERT INTO "${broker.schema}".messages (queue, priority, seq, state, headers, properties, content_type, content_encoding, body, published_at)
         VALUES ($1, 0, -1000000, 0, 'this is not json {', '{}', 'application/json', 'utf-8', '\\x00', 0)`,
        [queue],
      );
    },
    injectMalformedBroadcast: async (ex, rk) => {
      await pgAdmin(
        `WITH ins AS (INSERT INTO "${broker.schema}".fanout (exchange, routing_key, headers, properties, content_type, content_encoding, body, created_at)
         VALUES ($1, $2, 'this is not json {', '{}', 'application/json', 'utf-8', '\\x00', (extract(epoch from clock_timestamp()) * 1000)::bigint) RETURNING id)
         SELECT pg_notify($3, id || ' ' || $1) FROM ins`,
        [ex.name, rk, `${broker.schema}_fanout`],
      );
    },
  });

  backendConformance('postgres', {
    shared: true,
    create: async () => engine.createBackend!(backend.url, { logger, settings: resolveSettings({}) }),
  });

  replayStoreConformance('postgres', {
    shared: true,
    open: async () => engine.createReplayStore!({ url: replay.url, side: 'broker', keyPrefix: '', logger, settings: resolveSettings({}) }),
  });
}
