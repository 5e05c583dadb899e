/**
 * Live probes of Flower or the Celeriac dashboard (GET only, bounded): does
 * it answer without authentication, are `/api` and `/metrics` open, is plain
 * HTTP redirected to HTTPS, are the security headers and cookie flags set,
 * is CORS open to every origin. A Celeriac dashboard (recognised by its page
 * title) serves its login page to everyone, so there its API decides
 * CEL-008; given viewer credentials, the probe also logs in and checks that
 * a viewer's revoke is refused (CEL-009: the one POST it ever sends, for a
 * task id that does not exist).
 */
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { randomUUID } from 'node:crypto';
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
  return send(url, timeoutMs);
}

/** One request (GET unless a JSON body is given), no redirects followed, body capped at 64 KiB. */
function send(url: URL, timeoutMs: number, extra: { body?: unknown; headers?: Record<string, string> } = {}): Promise<Answer | undefined> {
  const payload = extra.body === undefined ? undefined : JSON.stringify(extra.body);
  const headers: Record<string, string> = { 'user-agent': 'celeriac-audit', ...extra.headers, ...(payload !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) } : {}) };
  return new Promise((resolve) => {
    const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, { method: payload === undefined ? 'GET' : 'POST', timeout: timeoutMs, rejectUnauthorized: false, headers }, (res) => {
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
    req.end(payload);
  });
}

const API_PATHS = ['/api/workers', '/api/tasks', '/api/queues/length', '/metrics', '/api'];
const DASHBOARD_API_PATHS = ['/api/workers', '/api/tasks', '/api/queues', '/api/audit', '/api/beat', '/metrics'];

/** Credentials of a dashboard account with the viewer role, for the CEL-009 probe. */
export interface ViewerCredentials {
  username: string;
  password: string;
}

export interface HttpProbeOptions {
  /** Log in as this viewer and check that a control action is refused (Celeriac dashboard only). */
  viewer?: ViewerCredentials | undefined;
}

/** Probe one dashboard URL. */
export async function probeHttp(target: string, timeoutMs: number, options: HttpProbeOptions = {}): Promise<{ findings: AuditFinding[]; notes: string[] }> {
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
  // The dashboard's shell page: served to everyone, it holds the login form and no data.
  const celeriac = !flower && /<title>\s*Celeriac dashboard\s*<\/title>/i.test(root.body);
  const what = flower ? 'Flower' : celeriac ? 'the Celeriac dashboard' : 'the dashboard';
  if (celeriac) notes.push(`${endpoint} is a Celeriac dashboard`);
  const redirectsToHttps = root.status >= 300 && root.status < 400 && /^https:/i.test(String(root.headers.location ?? ''));
  if (root.status >= 200 && root.status < 300 && !celeriac) {
    out.push(liveFinding('CEL-008', flower ? 'high' : 'medium', 'auth', `${endpoint} (${what}) answers without authentication (HTTP ${root.status}): anyone who reaches it sees task arguments and results${flower ? ' and can shut down workers' : ''}`,
      flower ? 'start Flower with --basic-auth=user:password (from a secret) or --auth with OAuth, behind a TLS proxy' : 'configure dashboard authentication (the Celeriac dashboard refuses to start without it)', endpoint));
  }
  const open: string[] = [];
  for (const p of celeriac ? DASHBOARD_API_PATHS : API_PATHS) {
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
    out.push(...headerFindings(root.headers, url, endpoint, celeriac));
    out.push(...cookieFindings(root.headers, endpoint));
  }
  if (celeriac) {
    const r = options.viewer ? await probeViewer(url, endpoint, options.viewer, timeoutMs) : { findings: [liveFinding('CEL-009', 'info', 'roles', `${endpoint}: roles were not probed (no viewer credentials given)`, 'pass --http-viewer-file <file> (one line: name:password of a viewer account) to check that a viewer cannot revoke tasks', endpoint)], notes: [] };
    out.push(...r.findings);
    notes.push(...r.notes);
  }
  return { findings: out, notes };
}

function headerFindings(h: IncomingHttpHeaders, url: URL, endpoint: string, celeriac: boolean): AuditFinding[] {
  const out: AuditFinding[] = [];
  const missing: string[] = [];
  const csp = String(h['content-security-policy'] ?? '');
  if (!csp) missing.push('Content-Security-Policy');
  if (celeriac ? !/frame-ancestors\s+'none'/i.test(csp) : !h['x-frame-options'] && !/frame-ancestors/i.test(csp)) missing.push(celeriac ? "CSP frame-ancestors 'none'" : 'X-Frame-Options (or CSP frame-ancestors)');
  if (String(h['x-content-type-options'] ?? '').toLowerCase() !== 'nosniff') missing.push('X-Content-Type-Options: nosniff');
  if (url.protocol === 'https:' && !h['strict-transport-security']) missing.push('Strict-Transport-Security');
  if (missing.length > 0) {
    out.push(liveFinding('CEL-010', 'low', 'headers', `${endpoint} lacks security headers: ${missing.join(', ')}`, 'set them in the application or the reverse proxy (CSP with frame-ancestors \'none\', nosniff, HSTS)', endpoint));
  }
  if (celeriac && /script-src[^;]*'unsafe-inline'/i.test(csp)) {
    out.push(liveFinding('CEL-010', 'medium', 'csp', `${endpoint}: its Content-Security-Policy allows inline scripts ('unsafe-inline'), so an injected task argument could run`, 'serve the dashboard as shipped (nonces only), or remove \'unsafe-inline\' from the proxy\'s CSP', endpoint));
  }
  if (String(h['access-control-allow-origin'] ?? '') === '*') {
    out.push(liveFinding('CEL-010', 'medium', 'cors', `${endpoint} allows every origin (Access-Control-Allow-Origin: *)`, 'remove the wildcard; list only the origins that need it', endpoint));
  }
  return out;
}

function cookieFindings(h: IncomingHttpHeaders, endpoint: string): AuditFinding[] {
  const out: AuditFinding[] = [];
  for (const c of ([] as string[]).concat(h['set-cookie'] ?? [])) {
    const name = c.split('=')[0]!.trim();
    const lacks = [!/;\s*secure/i.test(c) && 'Secure', !/;\s*httponly/i.test(c) && 'HttpOnly', !/;\s*samesite=(strict|lax)/i.test(c) && 'SameSite'].filter(Boolean);
    if (lacks.length > 0) out.push(liveFinding('CEL-010', 'medium', `cookie ${name}`, `${endpoint} sets cookie ${name} without ${lacks.join(', ')}`, 'set Secure, HttpOnly and SameSite=Strict on session cookies', endpoint));
  }
  return out;
}

/**
 * CEL-009: log in as a viewer (a browser-like same-origin request), then ask
 * to revoke a random task id that cannot exist, with the session's CSRF
 * token. A refusal (403) is the expected answer; anything 2xx means viewers
 * can steer workers.
 */
async function probeViewer(url: URL, endpoint: string, viewer: ViewerCredentials, timeoutMs: number): Promise<{ findings: AuditFinding[]; notes: string[] }> {
  const origin = `${url.protocol}//${url.host}`;
  const same = { origin, 'sec-fetch-site': 'same-origin' };
  const login = await send(new URL('/api/login', url), timeoutMs, { body: { username: viewer.username, password: viewer.password }, headers: same });
  const session = ([] as string[]).concat(login?.headers['set-cookie'] ?? []).map((c) => c.split(';')[0]!).join('; ');
  let csrf: unknown;
  try {
    csrf = login && login.status === 200 ? (JSON.parse(login.body) as { csrf?: unknown }).csrf : undefined;
  } catch {
    csrf = undefined;
  }
  if (!login || login.status !== 200 || !session || typeof csrf !== 'string') {
    return { findings: [liveFinding('CEL-009', 'info', 'roles', `${endpoint}: roles were not probed: the viewer login ${login ? `was refused (HTTP ${login.status})` : 'got no answer'}`, 'check the viewer account given to --http-viewer-file', endpoint)], notes: [] };
  }
  const findings = cookieFindings(login.headers, endpoint);
  const id = `celeriac-audit-${randomUUID()}`;
  const act = await send(new URL(`/api/tasks/${id}/revoke`, url), timeoutMs, { body: {}, headers: { ...same, cookie: session, 'x-csrf-token': csrf } });
  if (act && act.status >= 200 && act.status < 300) {
    findings.push(liveFinding('CEL-009', 'high', 'roles', `${endpoint}: a viewer account could POST a control action (revoke answered HTTP ${act.status})`, 'give viewers the viewer role only; control actions need operator or admin', endpoint));
  } else if (!act || act.status !== 403) {
    findings.push(liveFinding('CEL-009', 'info', 'roles', `${endpoint}: a viewer's revoke got ${act ? `HTTP ${act.status}` : 'no answer'}, not the expected 403`, 'check by hand that viewers cannot revoke, retry or shut down', endpoint));
  }
  // End the session the probe opened.
  await send(new URL('/api/logout', url), timeoutMs, { body: {}, headers: { ...same, cookie: session, 'x-csrf-token': csrf } });
  return { findings, notes: [`${endpoint}: a viewer's revoke was ${act?.status === 403 ? 'refused (403)' : 'not refused'}`] };
}
