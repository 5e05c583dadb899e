/**
 * The one list of known default and weak credentials, and the one strength
 * rule, shared by the start-up policy and `celeriac audit` (CEL-011).
 *
 * Strength rule (documented, deliberately simple and predictable):
 *
 * 1. at least {@link MIN_PASSWORD_LENGTH} (16) characters, and
 * 2. an estimated entropy of at least {@link MIN_ENTROPY_BITS} (64) bits,
 *    estimated as `effectiveLength × log2(poolSize)` where
 *    - `poolSize` is the sum of the sizes of the character classes that
 *      occur: lower-case ASCII letters 26, upper-case 26, digits 10, other
 *      printable ASCII (punctuation and space) 33, anything else 100;
 *    - `effectiveLength` counts every character except those that continue
 *      a run of constant step −1, 0 or +1 after its first two characters:
 *      `aaaaaa` counts 2, `abcdef` counts 2, `123456` counts 2. A random
 *      password almost never loses more than a character to this.
 *
 * So 16 random characters from letters and digits (62 → 5.95 bits each,
 * ≈ 95 bits) pass, 16 lower-case letters (≈ 75 bits) pass, 16 digits
 * (≈ 53 bits) fail, 20 digits (≈ 66 bits) pass. `celeriac secrets generate
 * password` produces 32 characters of a 64-symbol alphabet (192 bits).
 */

/** Minimum password length accepted without `unsafeAllowWeakCredentials`. */
export const MIN_PASSWORD_LENGTH = 16;
/** Minimum estimated entropy in bits. */
export const MIN_ENTROPY_BITS = 64;

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

/** Size of the character pool a password draws from, by the classes it uses. */
export function characterPoolSize(password: string): number {
  let lower = false, upper = false, digit = false, symbol = false, other = false;
  for (const ch of password) {
    if (/[a-z]/.test(ch)) lower = true;
    else if (/[A-Z]/.test(ch)) upper = true;
    else if (/[0-9]/.test(ch)) digit = true;
    else if (/[\x20-\x7e]/.test(ch)) symbol = true;
    else other = true;
  }
  return (lower ? 26 : 0) + (upper ? 26 : 0) + (digit ? 10 : 0) + (symbol ? 33 : 0) + (other ? 100 : 0);
}

/** Characters counted by the strength rule: runs of constant step −1/0/+1 count only their first two characters. */
export function effectiveLength(password: string): number {
  const cps = [...password].map((c) => c.codePointAt(0)!);
  let n = 0;
  for (let i = 0; i < cps.length; i++) {
    if (i >= 2) {
      const d1 = cps[i]! - cps[i - 1]!;
      const d2 = cps[i - 1]! - cps[i - 2]!;
      if (d1 === d2 && Math.abs(d1) <= 1) continue;
    }
    n++;
  }
  return n;
}

/** The strength rule's entropy estimate in bits (see the module comment). */
export function estimateEntropyBits(password: string): number {
  const pool = characterPoolSize(password);
  return pool <= 1 ? 0 : effectiveLength(password) * Math.log2(pool);
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
  const bits = estimateEntropyBits(password);
  if (bits < MIN_ENTROPY_BITS) {
    return { problem: 'weak', message: `the password of ${who} is too predictable (about ${Math.floor(bits)} bits estimated, at least ${MIN_ENTROPY_BITS} required)` };
  }
  return undefined;
}

/** A one-line description of what is wrong with the credentials, or `undefined` when they pass. Never contains the password. */
export function credentialProblem(username: string | undefined, password: string | undefined): string | undefined {
  return assessCredentials(username, password)?.message;
}
