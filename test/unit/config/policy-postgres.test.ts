/**
 * The policy's PostgreSQL rules, pure: the URL rules (TLS only with
 * sslmode=verify-full, credentials) and the verdict on the authentication
 * method the engine saw at connect (`evaluatePostgresAuth`).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { evaluatePolicy, evaluatePostgresAuth, type PostgresAuthInput } from '../../../src/config/policy.ts';

const PW = 'Xq7-vR2_mK9pL4wZ8nB3tY6c';
const remote = `postgres://worker:${PW}@db.internal:5432/celeriac?sslmode=verify-full`;
const local = `postgres://worker:${PW}@127.0.0.1:5432/celeriac?sslmode=verify-full`;

function auth(over: Partial<PostgresAuthInput>): ReturnType<typeof evaluatePostgresAuth> {
  return evaluatePostgresAuth({ setting: 'brokerUrl', url: remote, method: 'scram-sha-256', clientCertificate: false, mode: 'production', ...over });
}

describe('policy: PostgreSQL', () => {
  it('URL rules: plaintext and sslmode=require are refused in production; verify-full with a strong password passes', () => {
    assert.deepEqual(evaluatePolicy({ mode: 'production', brokerUrl: remote }).refusals, []);
    const plain = evaluatePolicy({ mode: 'production', brokerUrl: `postgres://worker:${PW}@db.internal/celeriac` }).refusals;
    assert.deepEqual(plain.map((f) => f.id), ['CEL-003']);
    assert.match(plain[0]!.fix, /sslmode=verify-full/);
    const req = evaluatePolicy({ mode: 'production', resultBackend: `db+postgresql://worker:${PW}@db.internal/celeriac?sslmode=require` }).refusals;
    assert.deepEqual(req.map((f) => [f.id, f.override]), [['CEL-015', 'unsafeAllowInsecureTls']]);
    const none = evaluatePolicy({ mode: 'production', brokerUrl: 'postgres://db.internal/celeriac?sslmode=verify-full' }).refusals;
    assert.deepEqual(none.map((f) => [f.id, f.override]), [['CEL-001', 'unsafeAllowNoCredentials']]);
    assert.match(none[0]!.fix, /secrets generate/);
  });

  it('SCRAM passes; a client certificate or peer authentication over a Unix socket passes without a challenge', () => {
    assert.deepEqual(auth({}), { refusals: [], warnings: [] });
    assert.deepEqual(auth({ method: 'none', clientCertificate: true }), { refusals: [], warnings: [] });
    assert.deepEqual(auth({ method: 'none', url: 'postgres:///celeriac?host=/run/postgresql' }), { refusals: [], warnings: [] });
  });

  it('md5 and cleartext are refused (CEL-011, unsafeAllowWeakCredentials); trust is refused (CEL-001 / CEL-014, unsafeAllowNoCredentials)', () => {
    for (const method of ['md5', 'password'] as const) {
      const r = auth({ method });
      assert.deepEqual(r.refusals.map((f) => [f.id, f.override]), [['CEL-011', 'unsafeAllowWeakCredentials']]);
      assert.doesNotMatch(r.refusals[0]!.message, new RegExp(PW));
    }
    assert.deepEqual(auth({ method: 'none' }).refusals.map((f) => [f.id, f.override]), [['CEL-001', 'unsafeAllowNoCredentials']]);
    assert.deepEqual(auth({ method: 'none', setting: 'resultBackend' }).refusals.map((f) => f.id), ['CEL-014']);
  });

  it('an override turns the refusal into a warning; development relaxes loopback only', () => {
    const accepted = auth({ method: 'md5', unsafe: { unsafeAllowWeakCredentials: true } });
    assert.equal(accepted.refusals.length, 0);
    assert.match(accepted.warnings[0]!.message, /accepted by unsafeAllowWeakCredentials/);
    assert.equal(auth({ method: 'none', url: local, mode: 'development' }).refusals.length, 0);
    assert.equal(auth({ method: 'none', url: local, mode: 'development' }).warnings.length, 1);
    assert.equal(auth({ method: 'none', url: local, mode: 'production' }).refusals.length, 1, 'production: loopback too');
    assert.equal(auth({ method: 'none', url: remote, mode: 'development' }).refusals.length, 1, 'development does not relax a remote host');
  });
});
