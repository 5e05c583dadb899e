/**
 * `celeriac secrets generate postgres-roles`: the two PostgreSQL roles of a
 * Celeriac deployment on the PostgreSQL engine, with SCRAM passwords, and
 * the SQL that makes them.
 *
 * - The worker role owns the engine's schemas (`celeriac` for queues,
 *   results and broadcasts, `celeriac_replay` for the replay nonces), so it
 *   creates and migrates the tables on first connect.
 * - The producer role (clients that send tasks and read results) gets, by
 *   default privileges, read and write access to the tables the worker role
 *   creates in `celeriac`, and nothing at all on `celeriac_replay`: it can
 *   neither read nor erase the nonces that stop a captured signed message
 *   from running twice (the PostgreSQL form of issue 20's separate roles).
 *   `celeriac beat` and clients with `shared` send-rate limits run with
 *   this role too: beat's lease and schedule state and the shared buckets
 *   are tables of `celeriac` (`beat_lease`, `beat_entry`, `rate_buckets`),
 *   made by the worker role like the queues, so the same default
 *   privileges cover them (beat needs nothing the producer lacks).
 */
import { ConfigError } from '../errors.ts';
import type { GeneratedSecret, SecretItem } from './generate.ts';

/** Options of {@link postgresRoles}. */
export interface PostgresRolesOptions {
  /** A password generator (the caller's, so every kind draws passwords the same way). */
  password: () => string;
  /** Worker role (default `celeriac_worker`). */
  user?: string;
  /** Producer role (default `celeriac_client`). */
  producerUser?: string;
  /** Database (default `celeriac`). */
  database?: string;
  /** Host for the example URLs (default `localhost`). */
  host?: string;
}

const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;

function ident(v: string, what: string): string {
  if (!IDENT.test(v)) throw new ConfigError(`${what} ${JSON.stringify(v)} is not allowed`, { hint: 'use 1-63 lower-case letters, digits and _, starting with a letter or _' });
  return v;
}

/** The roles, their passwords, the SQL for the server and for the database, and the URLs. */
export function postgresRoles(opts: PostgresRolesOptions): GeneratedSecret {
  const worker = ident(opts.user ?? 'celeriac_worker', 'worker role');
  const producer = ident(opts.producerUser ?? 'celeriac_client', 'producer role');
  const db = ident(opts.database ?? 'celeriac', 'database');
  if (worker === producer) throw new ConfigError('the worker and producer roles must have different names');
  const host = opts.host ?? 'localhost';
  if (!/^[A-Za-z0-9.:_-]{1,253}$/.test(host)) throw new ConfigError(`host ${JSON.stringify(host)} is not allowed`);
  const workerPw = opts.password();
  const producerPw = opts.password();
  // Passwords are from the URL-safe alphabet: nothing to escape inside '…'.
  const serverSql = [
    `-- Run as a superuser (psql -d postgres). Sends the passwords to the server once; they are stored as SCRAM verifiers.`,
    `SET password_encryption = 'scram-sha-256';`,
    `CREATE ROLE ${worker} LOGIN PASSWORD '${workerPw}';`,
    `CREATE ROLE ${producer} LOGIN PASSWORD '${producerPw}';`,
    `CREATE DATABASE ${db};`,
    `REVOKE ALL ON DATABASE ${db} FROM PUBLIC;`,
    `GRANT CONNECT ON DATABASE ${db} TO ${worker}, ${producer};`,
  ].join('\n');
  const dbSql = [
    `-- Run as a superuser in the new database (psql -d ${db}).`,
    `REVOKE CREATE ON SCHEMA public FROM PUBLIC;`,
    `CREATE SCHEMA celeriac AUTHORIZATION ${worker};`,
    `CREATE SCHEMA celeriac_replay AUTHORIZATION ${worker};`,
    `REVOKE ALL ON SCHEMA celeriac_replay FROM PUBLIC;`,
    `GRANT USAGE ON SCHEMA celeriac TO ${producer};`,
    `-- Queues, results, broadcasts, celeriac beat's lease and state, shared send-rate buckets: the tables ${worker} creates in celeriac.`,
    `ALTER DEFAULT PRIVILEGES FOR ROLE ${worker} IN SCHEMA celeriac GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ${producer};`,
    `ALTER DEFAULT PRIVILEGES FOR ROLE ${worker} IN SCHEMA celeriac GRANT USAGE, SELECT ON SEQUENCES TO ${producer};`,
    `-- Nothing on celeriac_replay for ${producer}: the replay nonces are the workers' alone.`,
  ].join('\n');
  const hba = [
    `# pg_hba.conf: TLS and SCRAM only, for both roles (narrow the address to your network).`,
    `hostssl ${db} ${worker},${producer} 0.0.0.0/0 scram-sha-256`,
    `hostssl ${db} ${worker},${producer} ::/0 scram-sha-256`,
  ].join('\n');
  const url = (user: string, pw: string): string => `postgres://${user}:${pw}@${host}:5432/${db}?sslmode=verify-full&sslrootcert=/etc/celeriac/pg-ca.pem`;
  const items: SecretItem[] = [
    { label: 'worker role password', envName: undefined, fileName: 'pg-worker-password', value: workerPw, sensitive: true },
    { label: 'producer role password', envName: undefined, fileName: 'pg-producer-password', value: producerPw, sensitive: true },
    { label: 'SQL for the server (contains the passwords)', envName: undefined, fileName: 'postgres-roles.sql', value: serverSql, sensitive: true },
    { label: `SQL for database ${db}`, envName: undefined, fileName: 'postgres-schemas.sql', value: dbSql, sensitive: false },
    { label: 'pg_hba.conf lines', envName: undefined, fileName: 'pg_hba.conf.lines', value: hba, sensitive: false },
    { label: 'worker broker and result backend URL', envName: 'CELERIAC_BROKER_URL', fileName: 'worker-url', value: url(worker, workerPw), sensitive: true },
    { label: 'producer broker and result backend URL', envName: undefined, fileName: 'producer-url', value: url(producer, producerPw), sensitive: true },
  ];
  return {
    kind: 'postgres-roles',
    items,
    notes: [
      `Run the server SQL in database postgres, then the schema SQL in database ${db}, both as a superuser; add the pg_hba.conf lines and reload.`,
      `Start a worker first: its role owns the schemas and creates Celeriac's tables; the producer role only uses them.`,
      `${producer} has no access to celeriac_replay, where workers keep the nonces that stop a captured signed message from running twice.`,
      `Run celeriac beat with the producer URL: its lease and schedule state (and shared send-rate buckets) are tables of celeriac that the worker role creates.`,
      'Put the server CA certificate where sslrootcert points (the URLs use sslmode=verify-full).',
    ],
  };
}
