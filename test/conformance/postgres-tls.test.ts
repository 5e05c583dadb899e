/**
 * The PostgreSQL engine's conformance suites again, this time in
 * production mode against a cluster the test starts itself: TLS with
 * `sslmode=verify-full` (certificates made now by test/helpers/pki.ts) and
 * SCRAM-SHA-256 logins, as the policy demands off the development loopback.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { engine } from '../../src/transport/postgres/index.ts';
import { resolveSettings } from '../../src/config/options.ts';
import { createLogger } from '../../src/observability/logging.ts';
import { backendConformance } from './backend.ts';
import { brokerConformance } from './broker.ts';
import { replayStoreConformance } from './replay-store.ts';
import { consumeAndDie } from '../helpers/crash.ts';
import { createTestPki } from '../helpers/pki.ts';
import { canStartPostgres, startPostgresCluster, type PostgresCluster } from '../helpers/postgres-server.ts';
import { IN_CI } from '../helpers/services.ts';

// Production: every rule of the policy applies, loopback included (the child processes inherit it).
process.env.CELERIAC_ENV = 'production';

if (!canStartPostgres()) {
  test('postgres conformance over TLS and SCRAM', (t) => {
    if (IN_CI) throw new Error('PostgreSQL binaries are required in CI');
    t.skip('cannot start a PostgreSQL cluster here');
  });
} else {
  const logger = createLogger({ level: 'silent' });
  const pkiDir = mkdtempSync(join(tmpdir(), 'celeriac-pg-pki-'));
  let cluster: PostgresCluster | undefined;
  let starting: Promise<PostgresCluster> | undefined;
  const start = (): Promise<PostgresCluster> =>
    (starting ??= createTestPki(pkiDir).then(async (pki) => (cluster = await startPostgresCluster(pki))));
  let suites = 3;
  const stop = async (): Promise<void> => {
    if (--suites > 0) return;
    await cluster?.stop();
    rmSync(pkiDir, { recursive: true, force: true });
  };
  const settings = (vt?: number) => resolveSettings({ brokerTransportOptions: { visibilityTimeout: vt ?? 3600 } });

  brokerConformance('postgres (TLS verify-full, SCRAM, production)', {
    priority: 'lower-first',
    setup: async () => void (await start()),
    teardown: stop,
    create: async (o) => engine.createBroker(cluster!.url('schema=tls_broker'), { logger, settings: settings(o?.visibilityTimeout) }),
    crash: (queue, count, o) => consumeAndDie(cluster!.url('schema=tls_broker'), queue, count, o.visibilityTimeout ?? 1),
    injectMalformed: async (queue) => {
      const b = engine.createBroker(cluster!.url('schema=tls_broker'), { logger, settings: settings() });
      await b.connect();
      await b.close();
      await runAsWorker(cluster!, `INSERT INTO tls_broker.messages (queue, priority, seq, state, headers, properties, content_type, content_encoding, body, published_at)
        VALUES ($1, 0, -1000000, 0, 'this is not json {', '{}', 'application/json', 'utf-8', '\\x00', 0)`, [queue]);
    },
  });

  backendConformance('postgres (TLS verify-full, SCRAM, production)', {
    shared: true,
    setup: async () => void (await start()),
    teardown: stop,
    create: async () => engine.createBackend!(cluster!.url('schema=tls_backend'), { logger, settings: settings() }),
  });

  replayStoreConformance('postgres (TLS verify-full, SCRAM, production)', {
    shared: true,
    setup: async () => void (await start()),
    teardown: stop,
    open: async () => engine.createReplayStore!({ url: cluster!.url('schema=tls_replay'), side: 'broker', keyPrefix: '', logger, settings: settings() }),
  });
}

/** SQL as the worker role, over TLS (what another program writing to the tables would do). */
async function runAsWorker(c: PostgresCluster, sql: string, params: unknown[]): Promise<void> {
  const { default: pg } = await import('pg');
  const { readFileSync } = await import('node:fs');
  const url = new URL(c.url());
  const client = new pg.Client({ host: '127.0.0.1', port: c.port, user: c.user, password: c.password, database: c.database, ssl: { ca: readFileSync(decodeURIComponent(url.searchParams.get('sslrootcert')!)) } });
  await client.connect();
  try {
    await client.query(sql, params);
  } finally {
    await client.end();
  }
}
