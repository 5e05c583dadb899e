/**
 * Where the dashboard listens and with which certificate. HTTPS always: the
 * operator's certificate, or a self-signed one generated at start (with a loud
 * warning). Off loopback, a certificate must be configured: the dashboard
 * refuses to start otherwise and says how to fix it.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { ConfigError } from '../../errors.ts';
import { createCertificate, generateKeyPair } from '../../secrets/x509.ts';

/** How TLS is set up: files, PEM strings, or a certificate generated at start. */
export type DashboardTlsOptions =
  | { certFile: string; keyFile: string }
  | { certPem: string; keyPem: string }
  /** Generate a self-signed certificate (allowed off loopback only when asked for explicitly). */
  | { selfSigned: true };

/** True for 127.0.0.0/8, ::1 and `localhost`. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1' || host === '0:0:0:0:0:0:0:1';
  return false;
}

export interface ResolvedTls {
  cert: string;
  key: string;
  selfSigned: boolean;
}

/**
 * Check bind address against TLS and load or generate the certificate.
 * `warn` receives the self-signed warning.
 */
export async function resolveTls(host: string, tls: DashboardTlsOptions | undefined, warn: (line: string) => void): Promise<ResolvedTls> {
  if (!tls && !isLoopback(host)) {
    throw new ConfigError(`the dashboard refuses to listen on ${host} without TLS`, {
      hint: 'pass --tls-cert <file> and --tls-key <file> with your certificate (or --tls-self-signed to accept a generated one), or bind to 127.0.0.1 with --bind',
    });
  }
  if (tls && 'certFile' in tls) {
    try {
      return { cert: readFileSync(tls.certFile, 'utf8'), key: readFileSync(tls.keyFile, 'utf8'), selfSigned: false };
    } catch (err) {
      throw new ConfigError('cannot read the dashboard TLS certificate or key', { hint: 'check the paths given to --tls-cert and --tls-key', cause: err });
    }
  }
  if (tls && 'certPem' in tls) return { cert: tls.certPem, key: tls.keyPem, selfSigned: false };
  const key = await generateKeyPair('ec-p256');
  const names = ['localhost', '127.0.0.1', '::1', ...(isLoopback(host) ? [] : [host])];
  const cert = createCertificate({
    subject: { CN: 'celeriac dashboard (self-signed)' }, subjectKey: key.publicKey, signingKey: key.privateKey,
    validityDays: 30, keyUsage: ['digitalSignature'], extendedKeyUsage: ['serverAuth'], subjectAltNames: names,
  });
  const fp = cert.x509.fingerprint256;
  warn(
    [
      '!'.repeat(78),
      '!! WARNING: the dashboard is using a SELF-SIGNED certificate generated at start.',
      '!! Browsers will warn, and nothing proves to them that they reach this server.',
      `!! SHA-256 fingerprint: ${fp}`,
      '!! Fix: pass --tls-cert <file> --tls-key <file> with a certificate your users trust.',
      '!'.repeat(78),
    ].join('\n'),
  );
  return { cert: cert.pem, key: key.privateKeyPem, selfSigned: true };
}
