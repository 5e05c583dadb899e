/**
 * The signing and encryption variants of the drain benchmark.
 *
 * The runner generates throw-away keys once per run (`prepareSecurityKeys`)
 * and hands them to the client and worker processes through BENCH_* variables;
 * the bench app (apps/celeriac-app.mjs) turns them into app options.
 * Those option names are what the benchmark expects the app to accept once
 * signing and encryption are wired in (issue 5):
 *
 * - ed25519:   `securitySigningKeys` (the senders' ring text, `kid:ed25519-private:…`)
 *              and `securityVerifyKeys` (the verifiers' ring, `kid:ed25519-public:…`);
 *              the same values also go into CELERIAC_SIGNING_KEYS / CELERIAC_VERIFY_KEYS.
 * - rsa:       Celery's names: `taskSerializer: 'auth'`, `acceptContent: ['auth']`,
 *              `securityKey` (PEM file), `securityCertificate` (PEM file),
 *              `securityCertStore` (directory of trusted PEM certificates), `securityDigest: 'sha256'`.
 * - encrypted: `resultEncryptionKeys` (the result ring text, `kid:aes-256-gcm:…`);
 *              also CELERIAC_RESULT_KEYS.
 *
 * A variant counts as available only when the app really uses it: its
 * `security` hooks are set (`sign` + `decodeBody`, or `resultSealer`), a queued
 * message carries the signature, and a stored result is sealed. Otherwise the
 * row is reported as not available. These are the names of
 * src/security/security-settings.ts; if they change, this file is the one
 * place to follow.
 */
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const SECURITY_VARIANTS = ['plain', 'ed25519', 'rsa', 'encrypted'] as const;
export type SecurityVariant = (typeof SECURITY_VARIANTS)[number];

/** Which drain row each variant produces. */
export const VARIANT_WORKLOAD = { ed25519: 'drain-c100-ed25519', rsa: 'drain-c100-rsa', encrypted: 'drain-c100-encrypted' } as const;

export interface SecurityKeys {
  dir: string;
  ed25519?: { signingLine: string; verifyingLine: string };
  rsa?: { keyPath: string; certPath: string; certStore: string };
  resultKeyLine?: string;
  /** Why a key could not be generated, per variant. */
  problems: Partial<Record<SecurityVariant, string>>;
}

/** Generate keys for every variant (with the project's own generators). Failures are recorded, not thrown. */
export async function prepareSecurityKeys(): Promise<SecurityKeys> {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-bench-keys-'));
  const keys: SecurityKeys = { dir, problems: {} };
  try {
    const { generateSigningKey } = await import('../../src/codec/signing/keyring.ts');
    const k = generateSigningKey('ed25519', 'bench1');
    keys.ed25519 = { signingLine: k.signingLine, verifyingLine: k.verifyingLine };
  } catch (err) {
    keys.problems.ed25519 = `key generation failed: ${(err as Error).message}`;
  }
  try {
    const { generateResultKey } = await import('../../src/codec/encryption.ts');
    keys.resultKeyLine = generateResultKey('bench1');
  } catch (err) {
    keys.problems.encrypted = `key generation failed: ${(err as Error).message}`;
  }
  try {
    const { generateSecret } = await import('../../src/secrets/generate.ts');
    // 2048 bits (the smallest accepted): RSA signing happens twice per message (Celery's body signature and
    // Celeriac's header), on the client, which fills the queue untimed; verification on the worker is cheap at any size.
    const secret = await generateSecret('rsa-cert', { commonName: 'celeriac-bench', bits: 2048 } as Parameters<typeof generateSecret>[1]);
    const keyPem = secret.items.find((i) => i.fileName === 'signing-key.pem')?.value;
    const certPem = secret.items.find((i) => i.fileName === 'signing-cert.pem')?.value;
    if (!keyPem || !certPem) throw new Error('rsa-cert produced no key or certificate');
    const certStore = join(dir, 'certs');
    mkdirSync(certStore, { mode: 0o700 });
    const keyPath = join(dir, 'signing-key.pem');
    const certPath = join(dir, 'signing-cert.pem');
    writeFileSync(keyPath, `${keyPem}\n`, { mode: 0o600 });
    writeFileSync(certPath, `${certPem}\n`, { mode: 0o644 });
    writeFileSync(join(certStore, 'celeriac-bench.pem'), `${certPem}\n`, { mode: 0o644 });
    keys.rsa = { keyPath, certPath, certStore };
  } catch (err) {
    keys.problems.rsa = `certificate generation failed: ${(err as Error).message}`;
  }
  return keys;
}

/** Environment for a client or worker process running `variant`. */
export function securityEnv(variant: SecurityVariant, keys: SecurityKeys | undefined): Record<string, string> {
  const env: Record<string, string> = { BENCH_SECURITY: variant };
  if (!keys) return env;
  if (variant === 'ed25519' && keys.ed25519) {
    env.BENCH_SIGNING_KEYS = keys.ed25519.signingLine;
    env.BENCH_VERIFY_KEYS = `${keys.ed25519.verifyingLine}`;
    env.CELERIAC_SIGNING_KEYS = keys.ed25519.signingLine;
    env.CELERIAC_VERIFY_KEYS = keys.ed25519.verifyingLine;
  }
  if (variant === 'rsa' && keys.rsa) {
    env.BENCH_SECURITY_KEY = keys.rsa.keyPath;
    env.BENCH_SECURITY_CERTIFICATE = keys.rsa.certPath;
    env.BENCH_SECURITY_CERT_STORE = keys.rsa.certStore;
  }
  if (variant === 'encrypted' && keys.resultKeyLine) {
    env.BENCH_RESULT_KEYS = keys.resultKeyLine;
    env.CELERIAC_RESULT_KEYS = keys.resultKeyLine;
  }
  return env;
}

/** Does the app use the variant? (Checked after connecting, since hooks may be set up lazily.) */
export function securityHooksActive(security: { sign?: unknown; decodeBody?: unknown; resultSealer?: unknown }, variant: SecurityVariant): boolean {
  switch (variant) {
    case 'ed25519':
    case 'rsa':
      return typeof security.sign === 'function' && typeof security.decodeBody === 'function';
    case 'encrypted':
      return security.resultSealer !== undefined && security.resultSealer !== null;
    default:
      return true;
  }
}

/** Does a queued kombu envelope carry the variant's signature? */
export function envelopeShowsVariant(envelope: string, variant: SecurityVariant): boolean {
  try {
    const e = JSON.parse(envelope) as { headers?: Record<string, unknown>; 'content-type'?: string };
    if (variant === 'ed25519') return typeof e.headers?.celeriac_signature === 'string' || (typeof e.headers?.celeriac_signature === 'object' && e.headers?.celeriac_signature !== null);
    if (variant === 'rsa') return e['content-type'] === 'application/data';
    return true;
  } catch {
    return false;
  }
}

/** Is a stored result record sealed? */
export function recordShowsEncryption(record: string): boolean {
  return record.includes('"celeriac_encrypted"');
}
