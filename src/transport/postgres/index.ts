/**
 * The PostgreSQL engine (`postgres://`, `postgresql://`, and Celery's
 * `db+postgresql://` for the result backend): broker, result backend, a
 * replay store shared by every worker of the database, celeriac beat's
 * store (with the outbox: a tick's claim inserts its task message) and
 * the shared send-rate buckets. SCRAM authentication
 * and, off loopback, TLS with `sslmode=verify-full` are required (see
 * `connection.ts` and the policy).
 */
import type { Engine } from '../../core/engine.ts';
import { ENGINES } from '../../core/schemes.ts';
import { createPgBackend } from './backend.ts';
import { createPgBroker } from './broker.ts';
import { openPgReplayStore } from './replay-store.ts';
import { openPgBeatStore } from './beat-store.ts';

export const engine: Engine = {
  ...ENGINES.postgres,
  createBroker: (url, ctx) => createPgBroker({ url, ...ctx }),
  createBackend: (url, ctx) => createPgBackend({ url, ...ctx }),
  createReplayStore: (options) => openPgReplayStore(options),
  createBeatStore: (options) => openPgBeatStore(options),
};
