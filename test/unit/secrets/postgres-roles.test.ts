/**
 * `celeriac secrets generate postgres-roles`: two SCRAM roles, schemas
 * owned by the worker role, and no grant at all to the producer on the
 * replay schema. (test/integration/postgres/auth-policy.test.ts runs the
 * SQL on a real server.)
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatEnv, generateSecret } from '../../../src/secrets/generate.ts';

describe('secrets: postgres-roles', () => {
  it('makes SCRAM roles, gives the worker the schemas and the producer nothing on celeriac_replay', async () => {
    const s = await generateSecret('postgres-roles', { user: 'w', producerUser: 'p', database: 'jobs', host: 'db.internal' });
    const v = (label: string): string => s.items.find((i) => i.label.startsWith(label))!.value;
    const server = v('SQL for the server');
    assert.match(server, /SET password_encryption = 'scram-sha-256';/);
    assert.ok(server.includes(`CREATE ROLE w LOGIN PASSWORD '${v('worker role password')}'`));
    assert.ok(server.includes(`CREATE ROLE p LOGIN PASSWORD '${v('producer role password')}'`));
    const schemas = v('SQL for database');
    assert.match(schemas, /CREATE SCHEMA celeriac AUTHORIZATION w;/);
    assert.match(schemas, /CREATE SCHEMA celeriac_replay AUTHORIZATION w;/);
    for (const line of schemas.split('\n').filter((l) => !l.startsWith('--'))) {
      if (/\bTO p\b/.test(line)) assert.doesNotMatch(line, /celeriac_replay/, line);
    }
    // Beat and the shared send-rate buckets run as the producer: the default privileges on celeriac cover their tables.
    assert.match(schemas, /^ALTER DEFAULT PRIVILEGES FOR ROLE w IN SCHEMA celeriac GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO p;$/m);
    assert.match(schemas, /^-- .*celeriac beat's lease and state, shared send-rate buckets/m);
    assert.ok(s.notes.some((n) => /celeriac beat with the producer URL/.test(n)));
    assert.match(v('pg_hba'), /^hostssl jobs w,p 0\.0\.0\.0\/0 scram-sha-256$/m);
    assert.match(v('worker broker'), /^postgres:\/\/w:[\w-]{32}@db\.internal:5432\/jobs\?sslmode=verify-full/);
    assert.equal(s.items.filter((i) => i.sensitive && /password|SQL for the server|URL/.test(i.label)).length, 5);
    assert.match(formatEnv(s), /^CELERIAC_BROKER_URL=/m);
  });

  it('refuses names that are not plain identifiers, and one name for both roles', async () => {
    await assert.rejects(generateSecret('postgres-roles', { user: 'w; DROP ROLE x' }), /not allowed/);
    await assert.rejects(generateSecret('postgres-roles', { database: 'Jobs' }), /not allowed/);
    await assert.rejects(generateSecret('postgres-roles', { user: 'same', producerUser: 'same' }), /different names/);
  });
});
