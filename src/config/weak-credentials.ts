/**
 * The one list of known default and weak credentials, and the one strength
 * rule, shared by the start-up policy and `celeriac audit` (CEL-011).
 *
 * Strength rule:
 *
 * 1. at least {@link MIN_PASSWORD_LENGTH} (16) characters, and
 * 2. at least 10^{@link MIN_GUESSES_LOG10} (10^12) guesses as estimated by
 *    zxcvbn (`@zxcvbn-ts/core` with its common-language package: 40,000
 *    leaked passwords, names and words, keyboard walks, repeats such as
 *    `celerycelerycelery`, sequences, dates, l33t), with the user name and
 *    the names of Celery's services (celery, redis, rabbitmq, guest, …) as
 *    extra dictionary words.
 *
 * A length-times-alphabet estimate passed `passwordpassword`,
 * `qwertyuiopasdfgh` and `Password1Password1` (issue 20 #4); zxcvbn puts
 * each of them under 10^5 guesses. 16 random characters from letters and
 * digits estimate at about 10^16; `celeriac secrets generate password`
 * makes 32 characters of a 64-symbol alphabet.
 */
import { ZxcvbnFactory } from '@zxcvbn-ts/core';
import { adjacencyGraphs, dictionary } from '@zxcvbn-ts/language-common';

/** Minimum password length accepted without `unsafeAllowWeakCredentials`. */
export const MIN_PASSWORD_LENGTH = 16;
/** Minimum zxcvbn guess estimate, as a power of ten (10^12 guesses; zxcvbn's top score starts at 10^10). */
export const MIN_GUESSES_LOG10 = 12;

/** Words an attacker tries first against a Celery deployment, added to zxcvbn's dictionaries. */
const DEPLOYMENT_WORDS = ['celery', 'celeriac', 'redis', 'rabbitmq', 'rabbit', 'guest', 'kombu', 'worker', 'broker', 'flower', 'bitnami', 'postgres', 'amqp', 'queue', 'task'];

let estimator: ZxcvbnFactory | undefined;

/** zxcvbn's estimate of the guesses needed, as log10 (built on first use: the dictionaries take a few tens of ms). */
export function estimateGuessesLog10(password: string, userInputs: readonly string[] = []): number {
  estimator ??= new ZxcvbnFactory({ dictionary: { ...dictionary }, graphs: adjacencyGraphs });
  // zxcvbn's matching is quadratic in length; past 100 characters the tail cannot make a weak password weak.
  return estimator.check(password.slice(0, 100), [...DEPLOYMENT_WORDS, ...userInputs.filter((u) => u !== '')]).guessesLog10;
}

/**
 * Passwords that ship as defaults or top every leaked-password list. Matched
 * case-insensitively, and also with trailing digits/punctuation appended
 * (`changeme123!`).
 */
export const KNOWN_WEAK_PASSWORDS: readonly string[] = Object.freeze([
  '', 'guest', 'redis', 'foobared', 'password', 'passw0rd', 'p@ssw0rd', 'p@ssword', 'pass', 'passwd', 'changeme',
  'change_me', 'change-me', 'changeit', 'admin', 'administrator', 'admin123', 'secret', 's3cr3t', 'celery', 'rabbitmq',
  'rabbit', 'bitnami', 'postgres', 'postgresql', 'root', 'toor', 'default', 'test', 'testing', 'demo', 'example',
  'user', 'worker', 'flower', 'kombu', 'broker', 'qwerty', 'qwertyuiop', 'letmein', 'welcome', 'monkey', 'dragon',
  'iloveyou', 'abc123', 'abcdef', '111111', '000000', '123123', '1234', '12345', '123456', '1234567', '12345678',
  '123456789', '1234567890', 'mypassword', 'mysecret', 'supersecret', 'celeriac', 'redispassword', 'redis_password',
]);

/** Default user/password pairs of common images and tutorials (compared case-insensitively). */
export const KNOWN_DEFAULT_PAIRS: readonly (readonly [string, string])[] = Object.freeze([
  ['guest', 'guest'], // RabbitMQ
  ['user', 'bitnami'], // Bitnami RabbitMQ/Redis images
  ['admin', 'admin'],
  ['celery', 'celery'],
  ['rabbitmq', 'rabbitmq'],
  ['postgres', 'postgres'],
  ['default', ''], // Redis without requirepass
] as const);

const WEAK = new Set(KNOWN_WEAK_PASSWORDS.map((p) => p.toLowerCase()));

/** What is wrong with a credential pair. */
export type CredentialProblemKind = 'missing' | 'default' | 'weak';

/** Result of {@link assessCredentials}: the kind of problem and a message that never contains the password. */
export interface CredentialAssessment {
  problem: CredentialProblemKind;
  message: string;
}

/** Whether a password is on the known-weak list (also with digits/punctuation appended). */
export function isKnownWeakPassword(password: string): boolean {
  const p = password.toLowerCase();
  if (WEAK.has(p)) return true;
  const stem = p.replace(/[\d\W_]+$/u, '');
  return stem !== p && stem !== '' && WEAK.has(stem);
}

/**
 * Classify a credential pair: `missing` (no password), `default` (a known
 * default pair, a password from the weak list, or user name == password),
 * `weak` (fails the strength rule), or `undefined` when acceptable. The
 * message names the user, never the password.
 */
export function assessCredentials(username: string | undefined, password: string | undefined): CredentialAssessment | undefined {
  const who = username ? `user ${JSON.stringify(username)}` : 'the default user';
  if (password === undefined || password === '') {
    return { problem: 'missing', message: `no password is set for ${who}` };
  }
  const u = (username ?? '').toLowerCase();
  const p = password.toLowerCase();
  if (KNOWN_DEFAULT_PAIRS.some(([du, dp]) => du === u && dp === p)) {
    return { problem: 'default', message: `${who} has a well-known default password` };
  }
  if (u !== '' && u === p) {
    return { problem: 'default', message: `the password of ${who} equals the user name` };
  }
  if (isKnownWeakPassword(password)) {
    return { problem: 'default', message: `${who} has a password from the list of known default/weak passwords` };
  }
  const chars = [...password].length;
  if (chars < MIN_PASSWORD_LENGTH) {
    return { problem: 'weak', message: `the password of ${who} is too short (${chars} characters, at least ${MIN_PASSWORD_LENGTH} required)` };
  }
  const log10 = estimateGuessesLog10(password, username ? [username] : []);
  if (log10 < MIN_GUESSES_LOG10) {
    return { problem: 'weak', message: `the password of ${who} is too predictable (about 10^${Math.floor(log10)} guesses by zxcvbn's estimate, at least 10^${MIN_GUESSES_LOG10} required: repeats, keyboard walks, words and sequences count for little)` };
  }
  return undefined;
}

/** A one-line description of what is wrong with the credentials, or `undefined` when they pass. Never contains the password. */
export function credentialProblem(username: string | undefined, password: string | undefined): string | undefined {
  return assessCredentials(username, password)?.message;
}
