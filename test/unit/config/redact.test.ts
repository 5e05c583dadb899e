import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { clearRegisteredSecrets, redactAll, redactText, redactUrl, redactValue, registerSecret } from '../../../src/config/redact.ts';
import { redactUrl as redactUrlFromUrlModule } from '../../../src/config/url.ts';

const PW = 'Zq8-very-secret_pw';

describe('redactUrl', () => {
  it('is the same function when imported from url.ts', () => {
    assert.equal(redactUrlFromUrlModule, redactUrl);
  });

  const cases: [string, string][] = [
    [`redis://:${PW}@h:6379/0`, 'redis://:***@h:6379/0'],
    [`redis://user:${PW}@h:6379/0`, 'redis://user:***@h:6379/0'],
    [`rediss://user:${PW}@h:6379/0?ssl_cert_reqs=required`, 'rediss://user:***@h:6379/0?ssl_cert_reqs=required'],
    [`amqp://guest:${PW}@rabbit:5672//`, 'amqp://guest:***@rabbit:5672//'],
    [`amqps://u:${PW}@rabbit:5671/%2F`, 'amqps://u:***@rabbit:5671/%2F'],
    [`amqp://u:${PW}@rabbit/my-vhost`, 'amqp://u:***@rabbit/my-vhost'],
    [`postgres://app:${PW}@db/results?sslmode=verify-full`, 'postgres://app:***@db/results?sslmode=verify-full'],
    [`redis://:Zq8%40very%2Fsecret@h/0`, 'redis://:***@h/0'],
    [`redis://:p@ss@${PW}@h/0`, 'redis://:***@h/0'],
    [`redis://:pa/ss${PW}@h/0`, 'redis://:***@h/0'],
    [`redis://h:6379/0?password=${PW}&db=1`, 'redis://h:6379/0?password=***&db=1'],
  ];
  for (const [input, expected] of cases) {
    it(`redacts ${expected}`, () => {
      assert.equal(redactUrl(input), expected);
    });
  }

  it('hides a password containing ? or # even if that hides the host', () => {
    for (const u of [`redis://:ab?${PW}@h/0`, `redis://:ab#${PW}@h/0`]) {
      const r = redactUrl(u);
      assert.ok(!r.includes(PW), r);
      assert.ok(!r.includes('ab'), r);
    }
  });

  it('hides a password written unencoded with @ / ? # : & whole (the user info ends at the last @ before a host)', () => {
    const raw = 'a@b/c%d?e:f#g&hi';
    for (const u of [`redis://:${raw}@cache.internal:6379/0`, `rediss://user:${raw}@127.0.0.1/1?ssl_cert_reqs=required`, `amqp://u:${raw}@[::1]:5672//`]) {
      const r = redactUrl(u);
      for (const piece of ['b/c', 'd?e', 'f#g', 'g&hi']) assert.ok(!r.includes(piece), `${r} shows ${piece}`);
      assert.match(r, /:\*\*\*@(cache\.internal|127\.0\.0\.1|\[::1\])/);
    }
    assert.equal(redactText(`tried redis://:${raw}@h:6379/0, then gave up`), 'tried redis://:***@h:6379/0, then gave up');
  });

  it('keeps secret references visible (they name a file or variable, not the secret)', () => {
    for (const u of ['rediss://w:${file:/run/secrets/redis_password}@h:6379/0', 'amqps://w:${env:AMQP_PASSWORD}@h/v']) {
      assert.equal(redactUrl(u), u);
    }
  });

  it('leaves URLs without passwords alone', () => {
    for (const u of ['redis://h:6379/0', 'amqp://user@h//', 'sqlite:///var/db.sqlite', 'redis://h/0?email=a@b']) {
      assert.equal(redactUrl(u), u);
    }
  });
});

describe('redactText', () => {
  it('redacts several URLs in free text', () => {
    const t = `broker amqp://u:${PW}@a// backend "redis://:${PW}@b/1", done`;
    const r = redactText(t);
    assert.ok(!r.includes(PW), r);
    assert.match(r, /amqp:\/\/u:\*\*\*@a\/\//);
    assert.match(r, /redis:\/\/:\*\*\*@b\/1/);
  });

  it('redacts password fields, quoted values with spaces, and Authorization headers', () => {
    assert.equal(redactText(`{"password": "two words ${PW}"}`), '{"password": "***"}');
    assert.equal(redactText(`password=${PW} next`), 'password=*** next');
    assert.equal(redactText(`key_password: ${PW}`), 'key_password: ***');
    assert.equal(redactText(`client_secret=${PW}`), 'client_secret=***');
    assert.equal(redactText(`Authorization: Bearer ${PW}`), 'Authorization: Bearer ***');
    assert.equal(redactText(`authorization: Basic dXNlcjpwYXNz`), 'authorization: Basic ***');
    assert.equal(redactText(`{"authorization":"${PW}"}`), '{"authorization":"***"}');
  });
});

describe('registered secrets', () => {
  afterEach(() => clearRegisteredSecrets());

  it('redactAll masks registered secrets, raw and percent-encoded', () => {
    const s = 'p@ss/word-xyz-123';
    registerSecret(s);
    assert.equal(redactAll(`got ${s} and ${encodeURIComponent(s)}`), 'got *** and ***');
  });

  it('masks a registered secret before the pattern rules can cut it in two', () => {
    const s = 'Xy7&Qw9@Zr5#Tp3?Lm2';
    registerSecret(s);
    for (const text of [`password=${s}`, `redis://:${s}@h/0`, `token: ${s}; next`, `"secret": "${s}"`]) {
      const out = redactAll(text);
      for (let i = 0; i + 4 <= s.length; i++) assert.ok(!out.includes(s.slice(i, i + 4)), `${out} shows part of the secret`);
    }
  });

  // Issue 20 #18: with `password` registered, every later "password" in a log line became ***.
  it('does not blank ordinary words that happen to be a (guessable) registered secret', () => {
    for (const s of ['password', 'changeme', 'qwerty123', 'letmein!']) registerSecret(s);
    const text = 'the password field is required; changeme and qwerty123 are examples; letmein! is refused';
    assert.equal(redactAll(text), text);
    // Structural rules still hide them where they are used as secrets.
    assert.equal(redactAll('redis://:password@h/0'), 'redis://:***@h/0');
    assert.equal(redactAll('password=changeme'), 'password=***');
  });

  it('ignores short values (too many false hits)', () => {
    registerSecret('abc');
    assert.equal(redactAll('abc'), 'abc');
  });

  it('masks every line of a registered PEM key', () => {
    const pem = '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----';
    registerSecret(pem);
    const out = redactAll('line: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC');
    assert.equal(out, 'line: ***');
  });
});

describe('redactValue', () => {
  it('masks secret-named keys deeply and redacts strings', () => {
    const v = redactValue({
      url: `redis://:${PW}@h/0`,
      nested: { password: PW, clientSecret: PW, apiKey: PW, headers: { Authorization: `Bearer ${PW}` }, ok: 'fine' },
      list: [{ token: PW }],
      flag: true,
    });
    const json = JSON.stringify(v);
    assert.ok(!json.includes(PW), json);
    assert.match(json, /"ok":"fine"/);
    assert.match(json, /"flag":true/);
  });

  it('survives cycles', () => {
    const a: Record<string, unknown> = { name: 'a' };
    a.self = a;
    assert.doesNotThrow(() => redactValue(a));
  });
});
