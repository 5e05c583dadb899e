/**
 * The certificate store of Celery's `auth` signing: signer id → certificate.
 * Trust means "this exact certificate is in the store" (no chains, no
 * revocation), as in Celery. Unlike Celery, not-yet-valid certificates are
 * refused as well as expired ones, only RSA keys of at least 2048 bits are
 * accepted, and a private key found in the store is an error.
 */
import { X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { fileTrustProblem } from '../../config/file-trust.ts';
import { join } from 'node:path';
import { CertificateError } from './errors.ts';
import { celerySignerId, certificateFields } from './signer-id.ts';

/** Smallest RSA modulus accepted, in bits. */
export const MIN_RSA_BITS = 2048;

/** Default tolerance for a notBefore slightly in the future (clock differences with the issuing machine). */
export const DEFAULT_NOT_BEFORE_SKEW_MS = 60_000;

// Only this module's builders can construct a store (they check every certificate).
const BUILD = Symbol('CertStore.build');

/** Largest file read from a certificate store (certificates are a few KiB). */
const MAX_CERT_FILE_BYTES = 1024 * 1024;

/** A trusted certificate with the facts verification needs. */
export interface CertStoreEntry {
  /** Celery signer id (issuer values + decimal serial). */
  readonly signerId: string;
  readonly cert: X509Certificate;
  /** Validity window, ms since epoch. */
  readonly notBefore: number;
  readonly notAfter: number;
  /** RSA modulus length in bytes: the length of a raw signature. */
  readonly modulusBytes: number;
  /** Where the certificate came from (file path or `pem[i]`), for messages. */
  readonly source: string;
}

/** Options of the store constructors. */
export interface CertStoreOptions {
  /** The time to check validity against, ms since epoch (default: now). */
  now?: number;
  /** Tolerance for notBefore in the future, ms (default 60 s). Expiry is never tolerated. */
  notBeforeSkewMs?: number;
}

/** Why a certificate is outside its validity window at some instant, or `undefined` if it is inside. */
export function certificateValidityProblem(
  entry: Pick<CertStoreEntry, 'notBefore' | 'notAfter'>,
  now: number,
  notBeforeSkewMs: number = DEFAULT_NOT_BEFORE_SKEW_MS,
): 'expired-certificate' | 'certificate-not-yet-valid' | undefined {
  if (now > entry.notAfter) return 'expired-certificate';
  if (now + notBeforeSkewMs < entry.notBefore) return 'certificate-not-yet-valid';
  return undefined;
}

/**
 * An immutable map from Celery signer id to a trusted, currently valid RSA
 * certificate. Build it with `loadCertStore`, `certStoreFromPems` or
 * `certStoreFromCertificates`.
 */
export class CertStore implements Iterable<CertStoreEntry> {
  readonly #entries: ReadonlyMap<string, CertStoreEntry>;

  /** Not for direct use: build stores with `loadCertStore`, `certStoreFromPems` or `certStoreFromCertificates`, which check every certificate. */
  constructor(token: symbol, entries: readonly CertStoreEntry[]) {
    if (token !== BUILD) throw new TypeError('use loadCertStore, certStoreFromPems or certStoreFromCertificates to build a CertStore');
    const map = new Map<string, CertStoreEntry>();
    for (const e of entries) map.set(e.signerId, Object.freeze({ ...e }));
    this.#entries = map;
  }

  /** The entry for a signer id, or `undefined` when the signer is not trusted. */
  get(signerId: string): CertStoreEntry | undefined {
    return this.#entries.get(signerId);
  }

  /** True when the signer id is in the store. */
  has(signerId: string): boolean {
    return this.#entries.has(signerId);
  }

  /** Number of certificates. */
  get size(): number {
    return this.#entries.size;
  }

  /** Signer ids in load order. */
  signerIds(): string[] {
    return [...this.#entries.keys()];
  }

  /** Iterate over the entries in load order. */
  [Symbol.iterator](): Iterator<CertStoreEntry> {
    return this.#entries.values();
  }
}

/**
 * Check one certificate for use as a signer (readable fields, RSA ≥ 2048
 * bits, valid at `now`) and describe it. Throws `CertificateError`.
 */
export function describeCertificate(cert: X509Certificate, source: string, options: CertStoreOptions = {}): CertStoreEntry {
  const now = options.now ?? Date.now();
  const fields = certificateFields(cert);
  const signerId = celerySignerId(cert);
  const key = cert.publicKey;
  if (key.asymmetricKeyType !== 'rsa') {
    throw new CertificateError('unsupported-key', `certificate ${JSON.stringify(signerId)} (${source}) has a ${key.asymmetricKeyType ?? 'unknown'} key; only RSA is supported`, {
      hint: 'Celery message signing uses RSA-PSS: issue an RSA certificate (at least 2048 bits)',
    });
  }
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < MIN_RSA_BITS) {
    throw new CertificateError('weak-key', `certificate ${JSON.stringify(signerId)} (${source}) has a ${bits}-bit RSA key, below the ${MIN_RSA_BITS}-bit minimum`, {
      hint: 'issue a new certificate with an RSA key of 2048 bits or more (3072 recommended)',
    });
  }
  const entry: CertStoreEntry = {
    signerId,
    cert,
    notBefore: fields.notBefore,
    notAfter: fields.notAfter,
    modulusBytes: Math.ceil(bits / 8),
    source,
  };
  const problem = certificateValidityProblem(entry, now, options.notBeforeSkewMs);
  if (problem === 'expired-certificate') {
    throw new CertificateError(problem, `certificate ${JSON.stringify(signerId)} (${source}) expired on ${new Date(entry.notAfter).toISOString()}`, {
      hint: 'remove it from the store and distribute a renewed certificate',
    });
  }
  if (problem === 'certificate-not-yet-valid') {
    throw new CertificateError(problem, `certificate ${JSON.stringify(signerId)} (${source}) is not valid before ${new Date(entry.notBefore).toISOString()}`, {
      hint: 'check the clocks of this machine and of the issuer, or wait until the certificate becomes valid',
    });
  }
  return entry;
}

/** Build a store from certificates; refuses invalid, expired, not-yet-valid and duplicate ones. */
export function certStoreFromCertificates(
  certs: ReadonlyArray<X509Certificate | { cert: X509Certificate; source: string }>,
  options: CertStoreOptions = {},
): CertStore {
  const entries: CertStoreEntry[] = [];
  const seen = new Map<string, string>();
  certs.forEach((c, i) => {
    const { cert, source } = c instanceof X509Certificate ? { cert: c, source: `certificate[${i}]` } : c;
    const entry = describeCertificate(cert, source, options);
    const previous = seen.get(entry.signerId);
    if (previous !== undefined) {
      throw new CertificateError('duplicate-signer', `signer id ${JSON.stringify(entry.signerId)} appears twice (${previous} and ${source})`, {
        hint: 'keep one copy of each certificate in the store; two certificates from one issuer need different serial numbers',
      });
    }
    seen.set(entry.signerId, source);
    entries.push(entry);
  });
  if (entries.length === 0) {
    throw new CertificateError('empty-store', 'the certificate store holds no certificate', {
      hint: 'put the PEM certificates of every trusted signer in the store',
    });
  }
  return new CertStore(BUILD, entries);
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;
const PEM_PRIVATE_KEY = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;

/**
 * Every PEM certificate in a text (a file may hold several). Throws
 * `CertificateError` for a private key in the text, for text without any
 * certificate, and for a block that does not parse.
 */
export function parsePemCertificates(text: string, source: string): X509Certificate[] {
  if (PEM_PRIVATE_KEY.test(text)) {
    throw new CertificateError('private-key-in-store', `${source} contains a private key`, {
      hint: 'the certificate store must hold certificates only; keep private keys in a separate file readable only by the signer',
    });
  }
  const blocks = text.match(PEM_CERT) ?? [];
  if (blocks.length === 0) {
    throw new CertificateError('no-certificate', `${source} contains no PEM certificate`, {
      hint: 'the certificate store must hold only PEM files with -----BEGIN CERTIFICATE----- blocks',
    });
  }
  return blocks.map((pem, i) => {
    try {
      return new X509Certificate(pem);
    } catch (err) {
      throw new CertificateError('invalid-certificate', `${source}: certificate #${i + 1} does not parse (${(err as Error).message})`, {
        hint: 'replace the file with a valid PEM certificate',
      });
    }
  });
}

/**
 * Build a store from PEM texts (each may hold several certificates).
 * Throws `CertificateError` as `certStoreFromCertificates` and `parsePemCertificates` do.
 */
export function certStoreFromPems(pems: string | Buffer | ReadonlyArray<string | Buffer>, options: CertStoreOptions = {}): CertStore {
  const list = typeof pems === 'string' || Buffer.isBuffer(pems) ? [pems] : pems;
  const certs = list.flatMap((pem, i) =>
    parsePemCertificates(typeof pem === 'string' ? pem : pem.toString('latin1'), `pem[${i}]`).map((cert, j) => ({
      cert,
      source: `pem[${i}]#${j + 1}`,
    })),
  );
  return certStoreFromCertificates(certs, options);
}

function readCertFile(path: string): string {
  try {
    const st = statSync(path);
    if (st.size > MAX_CERT_FILE_BYTES) {
      throw new CertificateError('no-certificate', `${path} is ${st.size} bytes, too large for a certificate file`, {
        hint: 'the certificate store must hold only PEM certificate files',
      });
    }
    return readFileSync(path, 'latin1');
  } catch (err) {
    if (err instanceof CertificateError) throw err;
    throw new CertificateError('unreadable', `cannot read certificate file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
      hint: 'check the path and that the worker user may read it',
    });
  }
}

/**
 * Load a certificate store from one PEM file or from every regular file of
 * a directory (hidden files skipped, names in sorted order), each of which
 * may hold several certificates — like Celery's `security_cert_store`.
 * Synchronous: it runs at start-up and on reload. Throws `CertificateError`
 * (`unreadable`, `no-certificate`, `private-key-in-store`,
 * `invalid-certificate`, `unsupported-key`, `weak-key`,
 * `expired-certificate`, `certificate-not-yet-valid`, `duplicate-signer`,
 * `empty-store`, `unsafe-file`: the store, a file in it or its directory
 * can be changed by another user — the rule of config/file-trust.ts).
 */
export function loadCertStore(path: string, options: CertStoreOptions = {}): CertStore {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch (err) {
    throw new CertificateError('unreadable', `cannot read certificate store ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
      hint: 'set the certificate store to an existing PEM file or directory',
    });
  }
  const files: string[] = [];
  if (isDir) {
    let names: string[];
    try {
      names = readdirSync(path).sort();
    } catch (err) {
      throw new CertificateError('unreadable', `cannot list certificate store ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
        hint: 'check that the worker user may read the directory',
      });
    }
    for (const name of names) {
      if (name.startsWith('.')) continue;
      const full = join(path, name);
      let isFile = false;
      try {
        isFile = statSync(full).isFile();
      } catch {
        // A dangling symlink or a vanished file is not a certificate.
        isFile = false;
      }
      if (isFile) files.push(full);
    }
  } else files.push(path);
  // A store another user can change is theirs: they add their certificate and sign tasks (issue 20 #13).
  for (const f of isDir ? [path, ...files] : files) {
    const p = fileTrustProblem(f, { secret: false });
    if (p) throw new CertificateError('unsafe-file', `certificate store: ${f} ${p.problem} (another user could add a signer of their own)`, { hint: `run: ${p.fix}` });
  }
  const certs = files.flatMap((file) => parsePemCertificates(readCertFile(file), file).map((cert, j) => ({ cert, source: `${file}#${j + 1}` })));
  return certStoreFromCertificates(certs, options);
}
