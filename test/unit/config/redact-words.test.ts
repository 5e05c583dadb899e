/**
 * Issue 20 #18, the class: the redaction heuristics masked ordinary English
 * — a word after a field name that merely contains a secret stem
 * (`secretary: Alice`, `tokenizer=bert`, `Passwords: 3 attempts`), a word
 * after "authorization:" (`authorization: denied`), and the prose lines of
 * a registered multi-part secret (a key ring's `#` comments) — while real
 * secrets in the same shapes must stay masked.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { clearRegisteredSecrets, redactAll, registerSecret } from '../../../src/config/redact.ts';
import { fakeEncryptedRsaKeyPem } from '../../helpers/pki.ts';

afterEach(() => clearRegisteredSecrets());

describe('redaction leaves ordinary words alone and still hides secrets (issue 20 #18)', () => {
  it('field names that only contain a secret stem are English, not secret fields', () => {
    for (const text of [
      'secretary: Alice Smith',
      'tokenizer=bert-base',
      'Passwords: 3 attempts left',
      'tokens=1500 used of 4000',
      'passwordless login enabled: true',
      '"secretary": "Alice"',
      "the secrets: none found",
    ]) assert.equal(redactAll(text), text);
  });

  it('secret fields in every spelling are still masked', () => {
    const cases: Array<[string, string]> = [
      ['password=hunter2x', 'password=***'],
      ['redis_password: Zr8-vQ2', 'redis_password: ***'],
      ['clientSecret=s3cr3tV4lue!', 'clientSecret=***'],
      ['api_key=AKIAxyz123abc', 'api_key=***'],
      ['PASSWORD=abc', 'PASSWORD=***'],
      ['accessToken: eyJhbGciOi', 'accessToken: ***'],
      ['secret_key=k2', 'secret_key=***'],
      ['"password": "two words"', '"password": "***"'],
      ['token: v1.abc', 'token: ***'],
      ['secretary_password=x9', 'secretary_password=***'],
    ];
    for (const [text, want] of cases) assert.equal(redactAll(text), want, text);
  });

  it('"authorization: denied" is a sentence; a credential after Authorization is masked', () => {
    for (const text of ['authorization: denied for user bob', 'Authorization: failed', 'authorization: required']) assert.equal(redactAll(text), text);
    assert.equal(redactAll('Authorization: Bearer abc.def.ghi'), 'Authorization: Bearer ***');
    assert.equal(redactAll('Authorization: Basic denied'), 'Authorization: Basic ***');
    assert.equal(redactAll('authorization=Zm9vOmJhcg=='), 'authorization=***');
    assert.equal(redactAll('"authorization": "tok_9f8e7d6c5b4a"'), '"authorization": "***"');
  });

  it('a registered key ring hides its key material (each entry, however separated) but not its comments', () => {
    const a = 'q8Zr1vX9mN2pL7kT4wB6yC3dF5gH0jAsEe1Rr2Tt3Yy=';
    const b = 'Mm4Nn5Bb6Vv7Cc8Xx9Zz0Ll1Kk2Jj3Hh4Gg5Ff6Dd7=';
    registerSecret(`# senders hold private keys (or HMAC secrets)\n2025-01:hmac-sha256:${a}\n`);
    registerSecret(`2025-02:hmac-sha256:${b} 2025-03:hmac-sha256:${a}`);
    const prose = '# senders hold private keys (or HMAC secrets)';
    assert.equal(redactAll(`docs say: ${prose}`), `docs say: ${prose}`);
    for (const line of [`2025-01:hmac-sha256:${a}`, `2025-02:hmac-sha256:${b}`]) {
      const out = redactAll(`loaded ${line}`);
      assert.ok(!out.includes(a.slice(0, 12)) && !out.includes(b.slice(0, 12)), out);
    }
  });

  it('a PEM key: its base64 lines are masked, its header lines are not', () => {
    const body = 'THROWAWAYTESTSTUBNOTAKEYTHROWAWAYTESTSTUBNOTAKEY';
    registerSecret(fakeEncryptedRsaKeyPem(body));
    assert.equal(redactAll(`line: ${body}`), 'line: ***');
    assert.equal(redactAll('Proc-Type: 4,ENCRYPTED header seen'), 'Proc-Type: 4,ENCRYPTED header seen');
  });
});
