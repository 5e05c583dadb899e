import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createCredentialSource, readSecretFile, resolveSecretRefs, settingFromEnv } from '../../../src/config/env.ts';
import { redactAll } from '../../../src/config/redact.ts';
import { parseConnectionUrl } from '../../../src/config/url.ts';
import { ConfigError } from '../../../src/errors.ts';

let dir: string;
function secretFile(name: string, content: string, mode = 0o600): string {
  const p = join(dir, name);
  writeFileSync(p, content);
  chmodSync(p, mode);
  return p;
}

function assertConfigError(fn: () => unknown, code: string, mustNotContain?: string): ConfigError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ConfigError, `expected ConfigError, got ${String(caught)}`);
  assert.equal(caught.code, code);
  if (mustNotContain) assert.ok(!caught.message.includes(mustNotContain), caught.message);
  return caught;
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'celeriac-env-test-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('secret files', () => {
  it('reads a 0600 file and strips one trailing newline', () => {
    assert.equal(readSecretFile(secretFile('ok', 'value-1234567\n'), 'X_FILE'), 'value-1234567');
  });

  it('accepts 0640 and 0400', () => {
    assert.equal(readSecretFile(secretFile('g', 'value-group-read', 0o640), 'X_FILE'), 'value-group-read');
    assert.equal(readSecretFile(secretFile('ro', 'value-read-only', 0o400), 'X_FILE'), 'value-read-only');
  });

  it('refuses world-readable files, naming the fix', () => {
    const e = assertConfigError(() => readSecretFile(secretFile('world', 'world-readable-secret', 0o644), 'X_FILE'), 'ERR_SECRET_FILE_MODE', 'world-readable-secret');
    assert.match(e.message, /readable by every user/);
    assert.match(e.message, /chmod 600/);
  });

  it('refuses group-writable and world-writable files', () => {
    const e = assertConfigError(() => readSecretFile(secretFile('gw', 'group-writable-secret', 0o660), 'X_FILE'), 'ERR_SECRET_FILE_MODE', 'group-writable-secret');
    assert.match(e.message, /writable by its group/);
    assertConfigError(() => readSecretFile(secretFile('ww', 'world-writable-secret', 0o602), 'X_FILE'), 'ERR_SECRET_FILE_MODE');
  });

  it('refuses missing and empty files', () => {
    assertConfigError(() => readSecretFile(join(dir, 'nope'), 'X_FILE'), 'ERR_SECRET_FILE');
    assertConfigError(() => readSecretFile(secretFile('empty', '\n'), 'X_FILE'), 'ERR_SECRET_FILE');
  });

  it('registers the value for redaction', () => {
    readSecretFile(secretFile('reg', 'registered-secret-value'), 'X_FILE');
    assert.equal(redactAll('leak: registered-secret-value'), 'leak: ***');
  });
});

describe('secret references in URLs', () => {
  it('${file:…} in the password position, percent-encoded', () => {
    const p = secretFile('redis_password', 'p@ss/w:rd?#%-long-enough\n');
    const url = resolveSecretRefs(`rediss://worker:\${file:${p}}@redis.internal:6379/0`, {});
    const parsed = parseConnectionUrl(url);
    assert.equal(parsed.password, 'p@ss/w:rd?#%-long-enough');
    assert.equal(parsed.host, 'redis.internal');
    assert.equal(parsed.db, 0);
  });

  it('${env:…}', () => {
    const url = resolveSecretRefs('amqps://u:${env:AMQP_PW}@rabbit/vh', { AMQP_PW: 'from-env/@-secret' });
    assert.equal(parseConnectionUrl(url).password, 'from-env/@-secret');
    assert.equal(parseConnectionUrl(url).vhost, 'vh');
  });

  it('both in one URL (user and password)', () => {
    const p = secretFile('pw2', 'file-secret-abcdef');
    const url = resolveSecretRefs(`redis://\${env:RUSER}:\${file:${p}}@h/0`, { RUSER: 'worker' });
    const parsed = parseConnectionUrl(url);
    assert.equal(parsed.username, 'worker');
    assert.equal(parsed.password, 'file-secret-abcdef');
  });

  it('resolved values are registered for redaction', () => {
    resolveSecretRefs('redis://:${env:PW_X}@h/0', { PW_X: 'env-registered-secret' });
    assert.equal(redactAll('x env-registered-secret y'), 'x *** y');
  });

  it('refuses unsafe files and missing targets, naming the reference but not the secret', () => {
    const p = secretFile('world2', 'readable-by-all-secret', 0o644);
    assertConfigError(() => resolveSecretRefs(`redis://:\${file:${p}}@h/0`, {}), 'ERR_SECRET_FILE_MODE', 'readable-by-all-secret');
    const gw = secretFile('gw2', 'group-writable-secret-2', 0o620);
    assertConfigError(() => resolveSecretRefs(`redis://:\${file:${gw}}@h/0`, {}), 'ERR_SECRET_FILE_MODE', 'group-writable-secret-2');
    const e = assertConfigError(() => resolveSecretRefs('redis://:${env:MISSING_VAR}@h/0', {}), 'ERR_SECRET_REF');
    assert.match(e.message, /MISSING_VAR/);
    assertConfigError(() => resolveSecretRefs('redis://:${env:}@h/0', {}), 'ERR_SECRET_REF');
    assertConfigError(() => resolveSecretRefs('redis://:${env:bad-name}@h/0', {}), 'ERR_SECRET_REF');
  });

  it('leaves other ${…} text alone', () => {
    assert.equal(resolveSecretRefs('redis://h/0?name=${other}', {}), 'redis://h/0?name=${other}');
  });

  it('settingFromEnv resolves references in NAME and in NAME_FILE contents', () => {
    const pw = secretFile('pw3', 'resolved-through-setting');
    const env = { CELERIAC_BROKER_URL: `redis://:\${file:${pw}}@h/0` };
    assert.equal(parseConnectionUrl(settingFromEnv(env, ['CELERIAC_BROKER_URL'])!).password, 'resolved-through-setting');
    const urlFile = secretFile('urlfile', 'redis://:${env:INNER}@h/0\n');
    const env2 = { CELERIAC_BROKER_URL_FILE: urlFile, INNER: 'inner-secret-value' };
    assert.equal(parseConnectionUrl(settingFromEnv(env2, ['CELERIAC_BROKER_URL'])!).password, 'inner-secret-value');
  });

  it('settingFromEnv refuses NAME together with NAME_FILE', () => {
    assert.throws(() => settingFromEnv({ A: 'x', A_FILE: '/x' }, ['A']), ConfigError);
  });
});

describe('createCredentialSource (SIGHUP rotation)', () => {
  it('re-reads the secret file on reload', () => {
    const p = secretFile('rot', 'first-password-value');
    const src = createCredentialSource(['BROKER'], { BROKER: `redis://:\${file:${p}}@h/0` });
    assert.equal(parseConnectionUrl(src.current()).password, 'first-password-value');
    assert.deepEqual(src.reload(), { changed: false });
    secretFile('rot', 'second-password-value');
    assert.deepEqual(src.reload(), { changed: true });
    assert.equal(parseConnectionUrl(src.current()).password, 'second-password-value');
  });

  it('re-reads a mutable env object', () => {
    const env: Record<string, string | undefined> = { PW_FILE: secretFile('rot2', 'one-one-one-one') };
    const src = createCredentialSource(['PW'], env);
    assert.equal(src.current(), 'one-one-one-one');
    env.PW_FILE = secretFile('rot3', 'two-two-two-two');
    assert.equal(src.reload().changed, true);
    assert.equal(src.current(), 'two-two-two-two');
  });

  it('keeps the working value when a reload fails', () => {
    const p = secretFile('rot4', 'stays-valid-value');
    const src = createCredentialSource(['PW'], { PW_FILE: p });
    chmodSync(p, 0o644);
    assert.throws(() => src.reload(), ConfigError);
    assert.equal(src.current(), 'stays-valid-value');
  });

  it('throws when nothing is set', () => {
    assert.throws(() => createCredentialSource(['NOT_SET_A', 'NOT_SET_B'], {}), /NOT_SET_A/);
  });
});
