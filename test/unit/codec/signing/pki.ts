// Test-only PKI helpers: the golden signing vectors, and throwaway RSA/EC
// certificates made with the openssl CLI in a temporary directory.
import { execFileSync } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { WireMessage } from '../../../../src/protocol/types.ts';

export const VECTOR_DIR = fileURLToPath(new URL('../../../fixtures/celery-5.2.6/signing/', import.meta.url));

export interface VectorMessage {
  task_id: string;
  envelope: {
    body: string;
    'content-type': string;
    'content-encoding': string;
    headers: Record<string, unknown>;
    properties: Record<string, unknown>;
  };
  layer1_kombu_body_base64_decoded?: string;
  layer2_auth_payload_base64_decoded?: { base64?: string; utf8?: string };
  layer2_hex?: string;
  fields?: {
    signer: string;
    signature_hex: string;
    signature_len: number;
    content_type: string;
    content_encoding: string;
    body: string;
  };
  signature_verifies_over_body?: boolean;
  result_record_after_worker: unknown;
  main_branch_deserializer_result?: { ok: boolean };
}

export interface SigningVectors {
  signer_id: string;
  messages: Record<string, VectorMessage>;
  pidbox_ping_with_auth: {
    wire: Array<{ envelope: VectorMessage['envelope']; auth_analysis: NonNullable<VectorMessage['fields']> }>;
  };
}

export const vectors: SigningVectors = JSON.parse(readFileSync(join(VECTOR_DIR, 'signed_messages.json'), 'utf8'));
export const vectorCertPem = readFileSync(join(VECTOR_DIR, 'THROWAWAY-TEST-ONLY-test-cert.pem'), 'utf8');
export const vectorCert = new X509Certificate(vectorCertPem);
export const vectorKey: KeyObject = createPrivateKey(readFileSync(join(VECTOR_DIR, 'THROWAWAY-TEST-ONLY-test-key.pem')));
export const VECTOR_SIGNER_ID = 'XX Celery Interop Test celery-test-signer 4660';

/** The WireMessage a broker adapter would hand over for a captured Redis envelope. */
export function wireFromEnvelope(env: VectorMessage['envelope']): WireMessage {
  return {
    headers: { ...env.headers },
    properties: { ...env.properties },
    contentType: env['content-type'],
    contentEncoding: env['content-encoding'],
    body: Buffer.from(env.body, 'base64'),
  };
}

export interface MadeCert {
  cert: X509Certificate;
  certPem: string;
  certPath: string;
  key: KeyObject;
  keyPem: string;
  keyPath: string;
}

export interface CertOptions {
  /** openssl -subj, e.g. `/C=XX/O=Test/CN=signer`. */
  subj: string;
  /** Decimal or 0x-hex serial. */
  serial?: string | number;
  /** Validity in days from now (openssl req -x509). */
  days?: number;
  /** Explicit validity, YYYYMMDDHHMMSSZ (openssl ca -selfsign). */
  startDate?: string;
  endDate?: string;
  /** Key: RSA bits, or an EC key. */
  rsaBits?: number;
  ec?: boolean;
  /** Reuse an existing key. */
  keyPem?: string;
  multivalueRdn?: boolean;
}

const CA_CONFIG = `[ ca ]
default_ca = CA_default
[ CA_default ]
dir = .
database = ./index.txt
new_certs_dir = ./newcerts
serial = ./serial
default_md = sha256
policy = policy_any
unique_subject = no
email_in_dn = no
[ policy_any ]
commonName = optional
countryName = optional
organizationName = optional
organizationalUnitName = optional
[ req ]
distinguished_name = dn
utf8 = yes
string_mask = utf8only
[ dn ]
`;

/** A temporary directory in which openssl makes certificates. Call `cleanup()` when done. */
export class Pki {
  readonly dir: string;
  #n = 0;
  #keyCache = new Map<number, string>();

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'celeriac-pki-'));
    writeFileSync(join(this.dir, 'openssl.cnf'), CA_CONFIG);
  }

  /** An RSA private key PEM (cached per size: key generation is the slow part). */
  rsaKeyPem(bits = 2048, fresh = false): string {
    const cached = this.#keyCache.get(bits);
    if (cached && !fresh) return cached;
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: bits });
    const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    if (!fresh) this.#keyCache.set(bits, pem);
    return pem;
  }

  makeCert(opts: CertOptions): MadeCert {
    const n = ++this.#n;
    const keyPem =
      opts.keyPem ??
      (opts.ec
        ? generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()
        : this.rsaKeyPem(opts.rsaBits ?? 2048));
    const keyPath = join(this.dir, `key${n}.pem`);
    const certPath = join(this.dir, `cert${n}.pem`);
    writeFileSync(keyPath, keyPem, { mode: 0o600 });
    const serial = opts.serial ?? 1000 + n;
    const serialHex = typeof serial === 'number' ? serial.toString(16) : serial.startsWith('0x') ? serial.slice(2) : BigInt(serial).toString(16);
    const mv = opts.multivalueRdn ? ['-multivalue-rdn'] : [];
    const run = (args: string[], cwd = this.dir): void => {
      execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    };
    if (opts.startDate || opts.endDate) {
      // `openssl ca -selfsign` is the way OpenSSL 3.0 sets explicit validity dates.
      const caDir = join(this.dir, `ca${n}`);
      mkdirSync(join(caDir, 'newcerts'), { recursive: true });
      writeFileSync(join(caDir, 'index.txt'), '');
      writeFileSync(join(caDir, 'serial'), serialHex.length % 2 ? `0${serialHex}` : serialHex);
      writeFileSync(join(caDir, 'openssl.cnf'), CA_CONFIG);
      run(['req', '-new', '-config', 'openssl.cnf', '-key', keyPath, '-subj', opts.subj, ...mv, '-out', 'req.csr'], caDir);
      run(
        [
          'ca', '-batch', '-config', 'openssl.cnf', '-selfsign', '-keyfile', keyPath, '-in', 'req.csr', '-out', certPath,
          '-notext', '-preserveDN', '-startdate', opts.startDate ?? '20200101000000Z', '-enddate', opts.endDate ?? '21200101000000Z',
        ],
        caDir,
      );
    } else {
      run([
        'req', '-x509', '-config', 'openssl.cnf', '-key', keyPath, '-subj', opts.subj, ...mv,
        '-days', String(opts.days ?? 30), '-set_serial', `0x${serialHex}`, '-out', certPath,
      ]);
    }
    const certPem = readFileSync(certPath, 'utf8');
    return { cert: new X509Certificate(certPem), certPem, certPath, key: createPrivateKey(keyPem), keyPem, keyPath };
  }

  /** Write a file into the temp dir (or a sub-directory) and return its path. */
  write(relPath: string, content: string | Buffer): string {
    const p = join(this.dir, relPath);
    mkdirSync(join(p, '..'), { recursive: true });
    writeFileSync(p, content);
    return p;
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A Celery-shaped task message with the 16 v2 headers. */
export function sampleTaskMessage(overrides: Partial<Record<string, unknown>> = {}, body = Buffer.from('[[2, 3], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]')): WireMessage {
  const id = 'f84e2523-cf2a-48b1-8390-437cb52f3f28';
  return {
    headers: {
      lang: 'py',
      task: 'tasks.add',
      id,
      shadow: null,
      eta: null,
      expires: null,
      group: null,
      group_index: null,
      retries: 0,
      timelimit: [null, null],
      root_id: id,
      parent_id: null,
      argsrepr: '(2, 3)',
      kwargsrepr: '{}',
      origin: 'gen1@test',
      ignore_result: false,
      ...overrides,
    },
    properties: { correlation_id: id, reply_to: '', delivery_mode: 2, priority: 0 },
    contentType: 'application/json',
    contentEncoding: 'utf-8',
    body,
  };
}
