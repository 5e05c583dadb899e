/**
 * The Celeriac app of the benchmark: one no-op task, `bench.noop`, the same
 * name as the Python Celery app's. Plain JavaScript on the compiled package
 * (dist/, built by `npm run bench`), so worker processes and their prefork
 * children run the way an installed package runs: without a TypeScript loader.
 * Loaded by the client, the worker and each prefork child; configured from
 * BENCH_BROKER_URL, BENCH_BACKEND_URL and BENCH_SECURITY (see lib/security.ts).
 * Late ack and the default Redis layout; results stored (1 day, the default).
 */
import { createApp } from '../../dist/index.js';

/** App options for the variant named in BENCH_SECURITY; lib/security.ts generates the keys. */
function securityAppOptions(env) {
  switch (env.BENCH_SECURITY) {
    case 'ed25519':
      return { securitySigningKeys: env.BENCH_SIGNING_KEYS, securityVerifyKeys: env.BENCH_VERIFY_KEYS };
    case 'rsa':
      return {
        taskSerializer: 'auth',
        acceptContent: ['auth'],
        securityKey: env.BENCH_SECURITY_KEY,
        securityCertificate: env.BENCH_SECURITY_CERTIFICATE,
        securityCertStore: env.BENCH_SECURITY_CERT_STORE,
        securityDigest: 'sha256',
      };
    case 'encrypted':
      return { resultEncryptionKeys: env.BENCH_RESULT_KEYS };
    default:
      return {};
  }
}

export const app = createApp({
  brokerUrl: process.env.BENCH_BROKER_URL,
  resultBackend: process.env.BENCH_BACKEND_URL,
  taskAcksLate: true,
  ...securityAppOptions(process.env),
});

/** A no-op task: no arguments, returns nothing (result stored as null). */
export const noop = app.task('bench.noop', () => undefined);
