import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  assessCredentials, credentialProblem, estimateGuessesLog10, isKnownWeakPassword,
  KNOWN_WEAK_PASSWORDS, MIN_GUESSES_LOG10, MIN_PASSWORD_LENGTH,
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

  // Issue 20 #4: every one of these passed the old length × log2(alphabet) estimate in production.
  for (const pw of ['passwordpassword', 'abababababababab', 'celerycelerycelery', 'guestguestguestguest', 'qwertyuiopasdfgh', 'changemechangeme', 'Password1Password1', '1212121212121212121212']) {
    it(`refuses ${JSON.stringify(pw)} from the security review`, () => {
      const a = assessCredentials('celeriac-worker', pw);
      assert.ok(a && a.problem !== 'missing', `${pw} passed`);
    });
  }

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
    assert.equal(MIN_GUESSES_LOG10, 12);
    assert.ok(estimateGuessesLog10('a'.repeat(16)) < 3);
    assert.ok(estimateGuessesLog10('kR7-x_2LqZ9vT4wA') > 14);
    assert.ok(estimateGuessesLog10('my-worker-name-x', ['my-worker-name']) < estimateGuessesLog10('my-worker-name-x'), 'the user name is a dictionary word');
    assert.equal(isKnownWeakPassword('guest1'), true);
    assert.equal(isKnownWeakPassword('guesthouse'), false);
  });
});
