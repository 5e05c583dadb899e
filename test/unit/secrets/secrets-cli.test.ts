import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { runSecretsCommand } from '../../../src/cli/secrets.ts';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'celeriac-secrets-cli-test-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

async function run(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d) => (out += d));
  stderr.on('data', (d) => (err += d));
  const code = await runSecretsCommand(argv, { stdout, stderr });
  return { code, stdout: out, stderr: err };
}

describe('celeriac secrets', () => {
  it('--help prints usage on stdout', async () => {
    const r = await run('--help');
    assert.equal(r.code, 0);
    assert.match(r.stdout, /Usage: celeriac secrets generate <kind>/);
    for (const k of ['password', 'redis-acl', 'rabbitmq-user', 'aes-key', 'ed25519', 'hmac', 'rsa-cert']) assert.match(r.stdout, new RegExp(`\\b${k}\\b`));
    assert.equal((await run('generate', 'password', '-h')).code, 0);
  });

  it('no arguments is a usage error', async () => {
    const r = await run();
    assert.equal(r.code, 2);
    assert.match(r.stderr, /Usage/);
  });

  it('generate password prints just the password', async () => {
    const r = await run('generate', 'password');
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^[A-Za-z0-9_-]{32}\n$/);
    assert.equal(r.stderr, '');
    const long = await run('generate', 'password', '--length', '40');
    assert.match(long.stdout, /^[A-Za-z0-9_-]{40}\n$/);
  });

  it('redis-acl --format env: one role, variables that Celeriac and Python Celery read', async () => {
    const both = await run('generate', 'redis-acl', '--format', 'env');
    assert.equal(both.code, 1);
    assert.match(both.stderr, /--role worker or --role producer/);
    const r = await run('generate', 'redis-acl', '--format', 'env', '--role', 'producer');
    assert.equal(r.code, 0, r.stderr);
    const vars = [...r.stdout.matchAll(/^([A-Z_]+)=/gm)].map((m) => m[1]);
    assert.deepEqual(vars, ['CELERIAC_BROKER_URL', 'CELERIAC_RESULT_BACKEND', 'CELERY_BROKER_URL', 'CELERY_RESULT_BACKEND']);
    assert.match(r.stdout, /^CELERIAC_BROKER_URL='?rediss:\/\/celeriac-client:/m);
    assert.doesNotMatch(r.stdout, /CELERIAC_REDIS_(USERNAME|PASSWORD)/, 'nothing reads these');
    const bad = await run('generate', 'redis-acl', '--role', 'admin');
    assert.equal(bad.code, 2);
  });

  it('--format env', async () => {
    const r = await run('generate', 'ed25519', '--format', 'env', '--kid', 'cli-1');
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^CELERIAC_SIGNING_KEYS=cli-1:ed25519-private:\S+$/m);
    assert.match(r.stdout, /^CELERIAC_VERIFY_KEYS=cli-1:ed25519-public:\S+$/m);
  });

  it('--format file writes 0600 files, prints paths but no secret, refuses to overwrite without --force', async () => {
    const out = join(dir, 'redis');
    const r = await run('generate', 'redis-acl', '--format', 'file', '--out', out);
    assert.equal(r.code, 0, r.stderr);
    const perUser = ['broker-url', 'celery-broker-url', 'celery-result-backend-url', 'redis-acl-setuser.txt', 'redis-password', 'redis-username', 'result-backend-url'];
    assert.deepEqual(readdirSync(out).sort(), [...perUser, ...perUser.map((f) => `producer-${f}`), 'users.acl'].sort());
    const pw = readFileSync(join(out, 'redis-password'), 'utf8').trim();
    assert.equal(statSync(join(out, 'redis-password')).mode & 0o777, 0o600);
    assert.equal(statSync(join(out, 'redis-username')).mode & 0o777, 0o644);
    assert.ok(!r.stdout.includes(pw), 'stdout must not show the secret');
    assert.match(r.stdout, /wrote .*redis-password \(0600\)/);

    const again = await run('generate', 'redis-acl', '--format', 'file', '--out', out);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /refusing to overwrite/);
    assert.equal(readFileSync(join(out, 'redis-password'), 'utf8').trim(), pw);

    const forced = await run('generate', 'redis-acl', '--format', 'file', '--out', out, '--force');
    assert.equal(forced.code, 0);
    assert.notEqual(readFileSync(join(out, 'redis-password'), 'utf8').trim(), pw);
  });

  it('rsa-cert to files: key 0600, certificate 0644', async () => {
    const out = join(dir, 'signing');
    const r = await run('generate', 'rsa-cert', '--bits', '2048', '--days', '10', '--cn', 'cli-signer', '--format', 'file', '--out', out);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(statSync(join(out, 'signing-key.pem')).mode & 0o777, 0o600);
    assert.equal(statSync(join(out, 'signing-cert.pem')).mode & 0o777, 0o644);
    assert.match(readFileSync(join(out, 'signing-cert.pem'), 'utf8'), /^-----BEGIN CERTIFICATE-----/);
  });

  it('every kind runs', async () => {
    for (const kind of ['rabbitmq-user', 'aes-key', 'hmac']) {
      const r = await run('generate', kind);
      assert.equal(r.code, 0, `${kind}: ${r.stderr}`);
      assert.ok(r.stdout.length > 20);
    }
  });

  it('usage errors exit 2 with a message', async () => {
    const cases: [string[], RegExp][] = [
      [['generate', 'pickle'], /unknown kind "pickle"/],
      [['generate'], /name a kind/],
      [['rotate', 'password'], /unknown subcommand/],
      [['generate', 'password', '--vhost', 'x'], /--vhost does not apply to password/],
      [['generate', 'password', '--format', 'file'], /needs --out/],
      [['generate', 'password', '--out', dir], /apply to --format file only/],
      [['generate', 'password', '--format', 'xml'], /--format must be/],
      [['generate', 'password', '--bogus'], /Unknown option/],
      [['generate', 'password', '--length', 'ten'], /whole number/],
      [['generate', 'password', 'extra'], /unexpected argument/],
    ];
    for (const [argv, re] of cases) {
      const r = await run(...argv);
      assert.equal(r.code, 2, `${argv.join(' ')} → ${r.code} ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.equal(r.stdout, '');
    }
  });

  it('invalid values exit 1 with the reason', async () => {
    const r = await run('generate', 'password', '--length', '12');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /32/);
  });
});
