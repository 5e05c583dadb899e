/**
 * Live RabbitMQ probes (read-only, bounded): is `guest/guest` accepted, does
 * a TLS port also speak plaintext AMQP, what certificate is presented, and
 * — when the management API answers — does the configured user carry the
 * administrator tag or permissions wider than Celery needs. Logging in is
 * the only AMQP action; no channel, queue or exchange is touched.
 */
import { request } from 'node:http';
import { isIP } from 'node:net';
import { connect } from 'amqplib';
import { analyzeTls } from '../../config/tls.ts';
import type { ConnectionUrl } from '../../config/url.ts';
import type { AuditFinding } from '../types.ts';
import { bounded, liveFinding } from './common.ts';
import { peekTls, plaintextAnswers, tlsFindings } from './tls.ts';

/** What to probe. */
export interface AmqpTarget {
  url: ConnectionUrl;
  useSsl: unknown;
  setting: string;
  /** Management API base URL to ask (default http://host:15672). */
  managementUrl?: string;
}

const AMQP_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1]);

/** Log in and close at once; true when the broker accepted the credentials. A login that completes after the time bound is closed too. */
async function canLogin(t: AmqpTarget, tls: boolean, username: string, password: string, timeoutMs: number): Promise<boolean> {
  const attempt = connect(
    { protocol: tls ? 'amqps' : 'amqp', hostname: t.url.host, port: t.url.port ?? (tls ? 5671 : 5672), username, password, vhost: t.url.vhost ?? '/', heartbeat: 0 },
    { timeout: timeoutMs, ...(tls ? { rejectUnauthorized: false, ...(isIP(t.url.host) ? {} : { servername: t.url.host }) } : {}), clientProperties: { connection_name: 'celeriac audit (login check)' } },
  ).then(async (model) => {
    model.on('error', () => undefined);
    await model.close().catch(() => undefined);
    return true;
  }, () => false);
  return bounded(() => attempt, timeoutMs * 2, false);
}

/** GET a management API path with basic auth; undefined when the API does not answer. */
function managementGet(base: string, path: string, user: string, password: string, timeoutMs: number): Promise<{ status: number; body: unknown } | undefined> {
  return new Promise((resolve) => {
    let req;
    try {
      req = request(new URL(path, base), { method: 'GET', auth: `${user}:${password}`, timeout: timeoutMs }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          if (text.length < 1 << 20) text += d;
        });
        res.on('end', () => {
          let body: unknown;
          try {
            body = JSON.parse(text);
          } catch {
            body = undefined;
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
        res.on('close', () => resolve(undefined)); // after 'end' this is a no-op
      });
    } catch {
      resolve(undefined);
      return;
    }
    const hard = setTimeout(() => req.destroy(), timeoutMs);
    req.on('timeout', () => req.destroy());
    req.on('close', () => clearTimeout(hard));
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

/** Probe one RabbitMQ endpoint. */
export async function probeAmqp(t: AmqpTarget, timeoutMs: number): Promise<{ findings: AuditFinding[]; notes: string[] }> {
  const out: AuditFinding[] = [];
  const notes: string[] = [];
  const host = t.url.host;
  let tlsA;
  try {
    tlsA = analyzeTls(t.url, t.useSsl);
  } catch {
    tlsA = undefined;
  }
  const tls = tlsA?.enabled ?? t.url.tls;
  const port = t.url.port ?? (tls ? 5671 : 5672);
  const endpoint = `${tls ? 'amqps' : 'amqp'}://${host.includes(':') ? `[${host}]` : host}:${port}`;

  if (tls) {
    const plain = await plaintextAnswers(host, port, AMQP_HEADER, (b) => b.length > 0 && b[0] === 1, timeoutMs);
    if (plain) out.push(liveFinding('CEL-003', 'high', t.setting, `${endpoint} is configured for TLS but the port answers plaintext AMQP`, 'listen for plaintext AMQP only on loopback, or not at all (listeners.tcp = none)', endpoint));
    const caFile = tlsA?.ca && 'path' in tlsA.ca ? tlsA.ca.path : undefined;
    const peek = await peekTls(host, port, { caFile, timeoutMs, ...(tlsA?.servername ? { servername: tlsA.servername } : {}) });
    if (peek) out.push(...tlsFindings(peek, host, endpoint, 'CEL-003', t.setting));
  }

  const guest = await canLogin(t, tls, 'guest', 'guest', timeoutMs);
  if (guest) {
    out.push(liveFinding('CEL-011', 'high', t.setting, `${endpoint} accepts guest/guest${/^(127\.|::1$|localhost$)/.test(host) ? ' (from this host; RabbitMQ refuses guest from other hosts unless loopback_users was changed)' : ' from a non-loopback address'}: anyone who can reach the port controls every queue`,
      'delete the guest user (rabbitmqctl delete_user guest) and create a user per service (celeriac secrets generate rabbitmq-user)', endpoint));
  }

  const user = t.url.username ?? 'guest';
  const password = t.url.password ?? 'guest';
  const base = t.managementUrl ?? `http://${host.includes(':') ? `[${host}]` : host}:15672/`;
  const who = await managementGet(base, '/api/whoami', user, password, timeoutMs);
  if (!who) {
    notes.push(`${endpoint}: the management API (${base}) does not answer; the administrator tag and vhost permissions were not checked (the AMQP login checks do not need it)`);
    return { findings: out, notes };
  }
  if (who.status === 200 && who.body && typeof who.body === 'object') {
    const tags = (who.body as { tags?: unknown }).tags;
    const list = Array.isArray(tags) ? tags.map(String) : typeof tags === 'string' ? tags.split(',') : [];
    if (list.includes('administrator')) {
      out.push(liveFinding('CEL-004', 'medium', t.setting, `${endpoint}: user ${JSON.stringify(user)} has the administrator tag: a leaked worker credential can create users and read every vhost`, 'give Celery users no tags (or only monitoring for Flower)', endpoint));
    }
    const perms = await managementGet(base, `/api/users/${encodeURIComponent(user)}/permissions`, user, password, timeoutMs);
    if (perms?.status === 200 && Array.isArray(perms.body)) {
      for (const p of perms.body as { vhost?: string; configure?: string; write?: string; read?: string }[]) {
        if (p.configure === '.*' && p.write === '.*' && p.read === '.*') {
          out.push(liveFinding('CEL-004', 'low', t.setting, `${endpoint}: user ${JSON.stringify(user)} may configure, write and read everything in vhost ${JSON.stringify(p.vhost ?? '?')}`,
            "limit permissions to Celery's exchanges and queues (e.g. configure '^(celery|celeryev|celery\\.pidbox).*'), one vhost per application", endpoint));
        }
      }
    }
  } else if (who.status === 401) {
    notes.push(`${endpoint}: the management API refused the configured user; the administrator tag and permissions were not checked`);
  }
  return { findings: out, notes };
}
