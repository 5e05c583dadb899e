/**
 * Live Redis probes (read-only, bounded): does the server answer without
 * credentials or with a default password, does the TLS port also speak
 * plaintext, what certificate does it present, and what may the configured
 * user do. Dangerous commands are never run: `ACL DRYRUN` asks the server
 * whether the user could run them; `CONFIG GET` is only read.
 */
import { isIP } from 'node:net';
import { Redis, type RedisOptions } from 'ioredis';
import type { ConnectionUrl } from '../../config/url.ts';
import { analyzeTls } from '../../config/tls.ts';
import type { AuditFinding } from '../types.ts';
import { bounded, liveFinding } from './common.ts';
import { peekTls, plaintextAnswers, tlsFindings } from './tls.ts';

/** Passwords tried against the default user: Redis' own example (`foobared`) and the most common ones. */
const DEFAULT_PASSWORDS = ['foobared', 'redis', 'password'];

/** What to probe. */
export interface RedisTarget {
  url: ConnectionUrl;
  useSsl: unknown;
  role: 'broker' | 'backend';
  setting: string;
}

function options(t: RedisTarget, timeoutMs: number, auth: { username?: string | undefined; password?: string | undefined }): RedisOptions {
  return {
    host: t.url.host, port: t.url.port ?? 6379,
    ...(auth.username ? { username: auth.username } : {}), ...(auth.password ? { password: auth.password } : {}),
    lazyConnect: true, connectTimeout: timeoutMs, commandTimeout: timeoutMs, maxRetriesPerRequest: 0, retryStrategy: () => null,
    enableReadyCheck: false, enableOfflineQueue: true, protocol: 2,
    ...(t.url.tls || analyzeTls(t.url, t.useSsl).enabled
      ? { tls: { rejectUnauthorized: false, ...(isIP(t.url.host) ? {} : { servername: t.url.host }) } }
      : {}),
  } as RedisOptions;
}

/** Connect and PING; `ok` when the server accepted the (possibly empty) credentials. */
async function tryClient(opts: RedisOptions, timeoutMs: number): Promise<{ ok: boolean; client?: Redis; error?: string }> {
  const c = new Redis(opts);
  c.on('error', () => undefined);
  const r = await bounded(async () => {
    await c.connect();
    await c.ping();
    return { ok: true };
  }, timeoutMs * 2, { ok: false, error: 'timeout' } as { ok: boolean; error?: string });
  if (!r.ok) {
    c.disconnect();
    return r;
  }
  return { ok: true, client: c };
}

async function tryCatch<T>(p: Promise<T>): Promise<{ ok: true; v: T } | { ok: false; e: string }> {
  try {
    return { ok: true, v: await p };
  } catch (err) {
    return { ok: false, e: (err as Error).message };
  }
}

/** Probe one Redis endpoint. */
export async function probeRedis(t: RedisTarget, timeoutMs: number): Promise<AuditFinding[]> {
  const out: AuditFinding[] = [];
  const host = t.url.host;
  const port = t.url.port ?? 6379;
  const endpoint = `${t.url.tls ? 'rediss' : 'redis'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
  const authId = t.role === 'broker' ? 'CEL-001' : 'CEL-014';
  const transportId = t.role === 'broker' ? 'CEL-003' : 'CEL-015';
  let tls;
  try {
    tls = analyzeTls(t.url, t.useSsl, t.role === 'broker' ? 'brokerUseSsl' : 'redisBackendUseSsl');
  } catch {
    tls = undefined;
  }
  const caFile = tls?.ca && 'path' in tls.ca ? tls.ca.path : undefined;

  if (tls?.enabled) {
    const plain = await plaintextAnswers(host, port, Buffer.from('PING\r\n'), (b) => /^[+-]/.test(b.toString('latin1')), timeoutMs);
    if (plain) {
      out.push(liveFinding(transportId, 'high', t.setting, `${endpoint} is configured for TLS but the port also answers plaintext Redis commands`, 'set port 0 and serve only tls-port on the server', endpoint));
    }
    const peek = await peekTls(host, port, { caFile, timeoutMs, ...(tls.servername ? { servername: tls.servername } : {}) });
    if (peek) out.push(...tlsFindings(peek, host, endpoint, transportId, t.setting));
  }

  // 1. No credentials at all.
  const anon = await tryClient(options(t, timeoutMs, {}), timeoutMs);
  let admin: Redis | undefined;
  let adminUser = 'default';
  let anonFinding: AuditFinding | undefined;
  if (anon.ok) {
    out.push(anonFinding = liveFinding(authId, 'high', t.setting, `${endpoint} accepts commands without credentials: anyone who reaches it can ${t.role === 'broker' ? 'inject, read or delete tasks' : 'read or forge results'}`,
      'enable ACL users (celeriac secrets generate redis-acl), switch the default user off, and put the credentials in the URL from a secret', endpoint));
    admin = anon.client;
  } else {
    // 2. Default passwords for the default user (AUTH only; nothing else is run with them).
    for (const pw of DEFAULT_PASSWORDS) {
      const r = await tryClient(options(t, timeoutMs, { password: pw }), timeoutMs);
      if (r.ok) {
        out.push(liveFinding('CEL-011', 'high', t.setting, `${endpoint} accepts a well-known default password for the default user`, 'set a random password of at least 32 characters, or switch the default user off and use ACL users', endpoint));
        r.client?.disconnect();
        break;
      }
    }
  }

  // 3. What the configured user may do.
  if (!admin && t.url.password) {
    const r = await tryClient(options(t, timeoutMs, { username: t.url.username, password: t.url.password }), timeoutMs);
    if (r.ok) {
      admin = r.client;
      adminUser = t.url.username ?? 'default';
    }
  }
  if (admin) {
    const c = admin;
    try {
      const who = await tryCatch(c.call('ACL', 'WHOAMI') as Promise<string>);
      if (who.ok) adminUser = String(who.v);
      const risky: string[] = [];
      let dryrunWorked = false;
      for (const cmd of [['FLUSHALL'], ['CONFIG', 'GET', 'maxmemory'], ['KEYS', '*']]) {
        const r = await tryCatch(c.call('ACL', 'DRYRUN', adminUser, ...cmd) as Promise<string>);
        if (r.ok) {
          dryrunWorked = true;
          if (String(r.v) === 'OK') risky.push(cmd[0]!);
        }
      }
      // Without ACL permissions, ask CONFIG GET directly: it only reads.
      const cfg = await tryCatch(c.call('CONFIG', 'GET', 'protected-mode') as Promise<string[]>);
      if (!dryrunWorked && cfg.ok) risky.push('CONFIG');
      if (risky.length > 0) {
        out.push(liveFinding('CEL-004', 'medium', t.setting, `${endpoint}: user ${JSON.stringify(adminUser)} may run ${[...new Set(risky)].join(', ')}: a leaked worker credential can wipe or reconfigure the server`,
          'give workers and clients an ACL user limited to Celery\'s keys and commands (celeriac secrets generate redis-acl): -@all +@read +@write +@list … -@dangerous', endpoint));
      }
      if (cfg.ok) {
        const pm = cfg.v;
        const protectedMode = Array.isArray(pm) ? String(pm[1] ?? '') : '';
        const rp = await tryCatch(c.call('CONFIG', 'GET', 'requirepass') as Promise<string[]>);
        // Only whether it is empty is looked at; the value is never kept or shown.
        const noPass = rp.ok && Array.isArray(rp.v) && String(rp.v[1] ?? '') === '';
        if (protectedMode === 'no' && noPass && anon.ok) {
          out.push(liveFinding(authId, 'high', `${t.setting} protected-mode`, `${endpoint} has protected-mode off and no requirepass: it accepts anyone from any interface it listens on`, 'turn protected-mode on and set up ACL users', endpoint));
        } else if (noPass && anonFinding) {
          anonFinding.message += ` (requirepass is empty; protected-mode ${protectedMode || 'unknown'} only limits clients from other hosts)`;
        }
      }
    } finally {
      c.disconnect();
    }
  }
  return out;
}
