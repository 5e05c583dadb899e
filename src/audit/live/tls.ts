/**
 * Live TLS probes: what certificate a server presents (validity, chain,
 * host name, days to expiry, protocol) and whether the same port also
 * speaks plaintext. Read-only and bounded in time.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP, Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { EXPIRY_WARNING_DAYS } from '../static/common.ts';
import type { AuditFinding } from '../types.ts';
import { liveFinding } from './common.ts';

/** Result of a TLS handshake made only to look at the server. */
export interface TlsPeek {
  cert: X509Certificate | undefined;
  authorized: boolean;
  authorizationError: string | undefined;
  protocol: string | undefined;
}

/** Handshake with verification off (so a bad certificate can be described), then report what verification would say. */
export function peekTls(host: string, port: number, opts: { caFile?: string; servername?: string; timeoutMs: number }): Promise<TlsPeek | undefined> {
  return new Promise((resolve) => {
    let ca: Buffer | undefined;
    try {
      ca = opts.caFile ? readFileSync(opts.caFile) : undefined;
    } catch {
      ca = undefined;
    }
    const servername = opts.servername ?? (isIP(host) ? undefined : host);
    const sock = tlsConnect({ host, port, rejectUnauthorized: false, ...(ca ? { ca } : {}), ...(servername ? { servername } : {}), timeout: opts.timeoutMs });
    const timer = setTimeout(() => {
      sock.destroy();
      resolve(undefined);
    }, opts.timeoutMs);
    sock.once('secureConnect', () => {
      clearTimeout(timer);
      const out: TlsPeek = {
        cert: sock.getPeerX509Certificate(),
        authorized: sock.authorized,
        authorizationError: sock.authorizationError ? String(sock.authorizationError) : undefined,
        protocol: sock.getProtocol() ?? undefined,
      };
      sock.end();
      sock.destroy();
      resolve(out);
    });
    sock.once('error', () => {
      clearTimeout(timer);
      sock.destroy();
      resolve(undefined);
    });
  });
}

/** Findings about a server certificate (CEL-003/015 for an unusable one, CEL-012 for one close to expiry). */
export function tlsFindings(peek: TlsPeek, host: string, endpoint: string, transportId: 'CEL-003' | 'CEL-015', setting: string): AuditFinding[] {
  const out: AuditFinding[] = [];
  const cert = peek.cert;
  if (!cert) return out;
  const days = Math.floor((Date.parse(cert.validTo) - Date.now()) / 86_400_000);
  if (days < 0) {
    out.push(liveFinding(transportId, 'high', setting, `${endpoint} presents a certificate that expired on ${cert.validTo}: clients that verify refuse it, clients that do not are open to interception`, 'renew the server certificate', endpoint));
  } else if (days < EXPIRY_WARNING_DAYS) {
    out.push(liveFinding('CEL-012', 'medium', setting, `${endpoint}: the server certificate expires in ${days} day${days === 1 ? '' : 's'} (${cert.validTo})`, 'renew the server certificate now', endpoint));
  }
  const nameOk = isIP(host) ? cert.checkIP(host) !== undefined : cert.checkHost(host) !== undefined;
  if (!nameOk) {
    out.push(liveFinding(transportId, 'high', setting, `${endpoint}: the server certificate does not name ${host} (subject ${cert.subject.replace(/\n/g, ', ')}), so verifying clients refuse it and clients that skip the check accept any server`, `issue a certificate with ${host} in its subjectAltName`, endpoint));
  }
  if (!peek.authorized && days >= 0) {
    out.push(liveFinding(transportId, 'high', setting, `${endpoint}: the server certificate does not verify against the configured CA (${peek.authorizationError ?? 'unknown error'})`, 'give the CA that issued the server certificate (ssl_ca_certs), or fix the server\'s chain', endpoint));
  }
  if (peek.protocol && /^(SSLv|TLSv1$|TLSv1\.1$)/.test(peek.protocol)) {
    out.push(liveFinding(transportId, 'medium', setting, `${endpoint} negotiated ${peek.protocol}`, 'allow only TLS 1.2 and 1.3 on the server', endpoint));
  }
  return out;
}

/**
 * Whether a plaintext client gets an answer from `port`: send `hello` and
 * see whether the reply matches `answer` (a TLS server answers a plaintext
 * hello with an alert or closes).
 */
export function plaintextAnswers(host: string, port: number, hello: Buffer, answer: (b: Buffer) => boolean, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = new Socket();
    let buf = Buffer.alloc(0);
    const done = (v: boolean): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(answer(buf)), timeoutMs);
    sock.once('error', () => done(false));
    sock.once('close', () => done(answer(buf)));
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (answer(buf)) done(true);
    });
    sock.connect(port, host, () => sock.write(hello));
  });
}
