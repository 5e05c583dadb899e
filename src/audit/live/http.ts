/**
 * Live probes of Flower or the Celeriac dashboard (GET and HEAD only,
 * bounded): does it answer without authentication, are `/api` and
 * `/metrics` open, is plain HTTP redirected to HTTPS, are the security
 * headers and cookie flags set, is CORS open to every origin.
 */
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AuditFinding } from '../types.ts';
import { liveFinding } from './common.ts';
import { peekTls, tlsFindings } from './tls.ts';

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One GET, no credentials, no redirects followed, body capped at 64 KiB. */
export function get(url: URL, timeoutMs: number): Promise<Answer | undefined> {
  return new Promise((resolve) => {
    const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, { method: 'GET', timeout: timeoutMs, rejectUnauthorized: false, headers: { 'user-agent': 'celeriac-audit' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (body.length < 65_536) body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', () => resolve(undefined));
      res.on('close', () => resolve(undefined)); // after 'end' this is a no-op; cut short, it ends the wait
    });
    // A total bound, not only an idle one: a server that trickles bytes cannot hold the audit.
    const hard = setTimeout(() => req.destroy(), timeoutMs);
    req.on('timeout', () => req.destroy());
    req.on('close', () => clearTimeout(hard));
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

const API_PATHS = ['/api/workers', '/api/tasks', '/api/queues/length', '/metrics', '/api'];

/** Probe one dashboard URL. */
export async function probeHttp(target: string, timeoutMs: number): Promise<{ findings: AuditFinding[]; notes: string[] }> {
  const out: AuditFinding[] = [];
  const notes: string[] = [];
  const url = new URL(target);
  const endpoint = `${url.protocol}//${url.host}${url.pathname}`;
  const root = await get(url, timeoutMs);
  if (!root) {
    notes.push(`${endpoint} did not answer`);
    return { findings: out, notes };
  }
  const flower = /flower/i.test(root.body) || /tornado/i.test(String(root.headers.server ?? ''));
  const what = flower ? 'Flower' : 'the dashboard';
  const redirectsToHttps = root.status >= 300 && root.status < 400 && /^https:/i.test(String(root.headers.location ?? ''));
  if (root.status >= 200 && root.status < 300) {
    out.push(liveFinding('CEL-008', flower ? 'high' : 'medium', 'auth', `${endpoint} (${what}) answers without authentication (HTTP ${root.status}): anyone who reaches it sees task arguments and results${flower ? ' and can shut down workers' : ''}`,
      flower ? 'start Flower with --basic-auth=user:password (from a secret) or --auth with OAuth, behind a TLS proxy' : 'configure dashboard authentication (the Celeriac dashboard refuses to start without it)', endpoint));
  }
  const open: string[] = [];
  for (const p of API_PATHS) {
    const a = await get(new URL(p, url), timeoutMs);
    if (a && a.status >= 200 && a.status < 300) open.push(p);
  }
  if (open.length > 0) {
    out.push(liveFinding('CEL-008', 'high', 'api', `${endpoint}: ${open.join(', ')} answer${open.length === 1 ? 's' : ''} without authentication`, 'require authentication for the API and metrics too (or serve metrics on a separate loopback port)', endpoint));
  }
  if (url.protocol === 'http:' && !redirectsToHttps) {
    out.push(liveFinding('CEL-010', 'medium', 'https', `${endpoint} serves ${what} over plain HTTP without redirecting to HTTPS: logins and session cookies cross the network in clear text`, 'serve it over HTTPS (a TLS reverse proxy) and redirect HTTP to HTTPS', endpoint));
  }
  if (url.protocol === 'https:') {
    const peek = await peekTls(url.hostname, Number(url.port || 443), { timeoutMs });
    if (peek) out.push(...tlsFindings(peek, url.hostname, endpoint, 'CEL-003', 'tls').map((f) => ({ ...f, id: f.id === 'CEL-003' ? 'CEL-010' as const : f.id })));
  }
  if (!redirectsToHttps) {
    const h = root.headers;
    const missing: string[] = [];
    const csp = String(h['content-security-policy'] ?? '');
    if (!csp) missing.push('Content-Security-Policy');
    if (!h['x-frame-options'] && !/frame-ancestors/i.test(csp)) missing.push('X-Frame-Options (or CSP frame-ancestors)');
    if (String(h['x-content-type-options'] ?? '').toLowerCase() !== 'nosniff') missing.push('X-Content-Type-Options: nosniff');
    if (url.protocol === 'https:' && !h['strict-transport-security']) missing.push('Strict-Transport-Security');
    if (missing.length > 0) {
      out.push(liveFinding('CEL-010', 'low', 'headers', `${endpoint} lacks security headers: ${missing.join(', ')}`, 'set them in the application or the reverse proxy (CSP with frame-ancestors \'none\', nosniff, HSTS)', endpoint));
    }
    const cookies = ([] as string[]).concat(h['set-cookie'] ?? []);
    for (const c of cookies) {
      const name = c.split('=')[0]!.trim();
      const lacks = [!/;\s*secure/i.test(c) && 'Secure', !/;\s*httponly/i.test(c) && 'HttpOnly', !/;\s*samesite=(strict|lax)/i.test(c) && 'SameSite'].filter(Boolean);
      if (lacks.length > 0) out.push(liveFinding('CEL-010', 'medium', `cookie ${name}`, `${endpoint} sets cookie ${name} without ${lacks.join(', ')}`, 'set Secure, HttpOnly and SameSite=Strict on session cookies', endpoint));
    }
    if (String(h['access-control-allow-origin'] ?? '') === '*') {
      out.push(liveFinding('CEL-010', 'medium', 'cors', `${endpoint} allows every origin (Access-Control-Allow-Origin: *)`, 'remove the wildcard; list only the origins that need it', endpoint));
    }
  }
  return { findings: out, notes };
}
