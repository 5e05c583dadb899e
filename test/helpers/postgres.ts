/**
 * The loopback PostgreSQL of the test machine (trust authentication,
 * database `test`; `CELERIAC_TEST_PG_URL` points elsewhere): each test run
 * works in schemas of its own (`?schema=<prefix>_<random>`), dropped after.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** The server the tests use (no password: loopback trust, development mode only). */
export const PG_TEST_URL = process.env.CELERIAC_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** True when the test server answers. */
export async function hasPostgres(): Promise<boolean> {
  const c = new pg.Client({ connectionString: PG_TEST_URL, connectionTimeoutMillis: 3000 });
  try {
    await c.connect();
    await c.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** A URL of the test server with a fresh schema name. */
export function pgSchemaUrl(prefix: string): { url: string; schema: string } {
  const schema = `${prefix}_${randomBytes(4).toString('hex')}`;
  return { url: `${PG_TEST_URL}?schema=${schema}`, schema };
}

/** Run SQL on the test server as its superuser. */
export async function pgAdmin<T extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<pg.QueryResult<T>> {
  const c = new pg.Client({ connectionString: PG_TEST_URL });
  await c.connect();
  try {
    return await c.query<T>(sql, params);
  } finally {
    await c.end();
  }
}

/** Drop a schema made by `pgSchemaUrl` and its replay schema. */
export async function dropPgSchema(schema: string): Promise<void> {
  await pgAdmin(`DROP SCHEMA IF EXISTS "${schema}" CASCADE; DROP SCHEMA IF EXISTS "${schema}_replay" CASCADE`);
}
