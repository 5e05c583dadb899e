/**
 * The Celeriac app of the benchmark: one no-op task, `bench.noop`, the same
 * name as the Python Celery app's. Loaded by the client, by the worker and
 * by each prefork child, configured from BENCH_* variables:
 * BENCH_BROKER_URL, BENCH_BACKEND_URL, BENCH_SECURITY (see lib/security.ts).
 * Late ack and the default Redis layout; results stored (1 day, the default).
 */
import { createApp } from '../../src/app.ts';
import { securityAppOptions } from '../lib/security.ts';

export const app = createApp({
  brokerUrl: process.env.BENCH_BROKER_URL,
  resultBackend: process.env.BENCH_BACKEND_URL,
  taskAcksLate: true,
  ...securityAppOptions(),
});

/** A no-op task: no arguments, returns nothing (result stored as null). */
export const noop = app.task('bench.noop', () => undefined);
