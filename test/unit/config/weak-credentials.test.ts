import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  assessCredentials, credentialProblem, effectiveLength, estimateEntropyBits, isKnownWeakPassword,
  KNOWN_WEAK_PASSWORDS, MIN_ENTROPY_BITS, MIN_PASSWORD_LENGTH,
} from '../../../src/config/weak-credentials.ts';
import { generatePassword } from '../../../src/secrets/generate.ts';

describe('weak credentials', () => {
  it('missing password', () => {
    assert.equal(assessCredentials(undefined, undefined)?.problem, 'missing');
    assert.equal(assessCredentials('worker', '')?.problem, 'missing');
  });

  it('known default pairs', () => {
    assert.equal(assessCredentials('guest', 'guest')?.problem, 'default');
    assert.equal(assessCredentials('GUEST', 'Guest')?.problem, 'default');
    assert.equal(assessCredentials('user', 'bitnami')?.problem, 'default');
  });

  it('user name equal to password', () => {
    const a = assessCredentials('Worker-Long-Name-0001', 'worker-long-name-0001');
    assert.equal(a?.problem, 'default');
    assert.match(a!.message, /equals the user name/);
  });

  for (const pw of ['redis', 'password', 'changeme', 'admin', 'secret', 'celery', 'rabbitmq', '123456', 'foobared', 'Password', 'changeme123!', 'Admin2024']) {
    it(`listed password ${JSON.stringify(pw)}`, () => {
      assert.equal(assessCredentials('someone', pw)?.problem, 'default');
    });
  }

  it('every listed password is refused', () => {
    for (const pw of KNOWN_WEAK_PASSWORDS) {
      const a = assessCredentials('u', pw);
      assert.ok(a, pw);
      assert.ok(a.problem === 'default' || a.problem === 'missing', pw);
    }
  });

  it('too short', () => {
    const a = assessCredentials('u', 'Xk9#mP2$vL7q');
    assert.equal(a?.problem, 'weak');
    assert.match(a!.message, /too short/);
  });

  it('long but predictable: one repeated character, a sequence, digits only', () => {
    for (const pw of ['aaaaaaaaaaaaaaaaaaaaaaaa', 'abcdefghijklmnopqrstuvwx', '1234567890123456', '9876543210987654']) {
      assert.equal(assessCredentials('u', pw)?.problem, 'weak', pw);
    }
  });

  it('accepts strong passwords, including generated ones', () => {
    assert.equal(assessCredentials('u', 'tR4vQ9zLm2Xw8KpN'), undefined);
    assert.equal(assessCredentials('u', 'correct horse battery staple'), undefined);
    for (let i = 0; i < 500; i++) assert.equal(assessCredentials('u', generatePassword()), undefined);
  });

  it('messages never contain the password', () => {
    for (const pw of ['guest', 'short-pw', 'aaaaaaaaaaaaaaaaaaaa', '']) {
      const m = credentialProblem('someone', pw);
      assert.ok(m);
      if (pw) assert.ok(!m.includes(pw), m);
    }
  });

  it('documented numbers', () => {
    assert.equal(MIN_PASSWORD_LENGTH, 16);
    assert.equal(MIN_ENTROPY_BITS, 64);
    assert.equal(effectiveLength('aaaaaa'), 2);
    assert.equal(effectiveLength('abcdef'), 2);
    assert.equal(effectiveLength('azbycx'), 6);
    assert.ok(estimateEntropyBits('a'.repeat(16)) < 64);
    assert.ok(Math.abs(estimateEntropyBits('PoNmLkJiHgFeDcBa') - 16 * Math.log2(52)) < 1e-9);
    assert.equal(isKnownWeakPassword('guest1'), true);
    assert.equal(isKnownWeakPassword('guesthouse'), false);
  });
});
