/**
 * A Redis Sentinel group for failover tests: one primary, one replica and
 * three sentinels (`redis-server --sentinel`), each on a free loopback port,
 * with an ACL user on the servers and a password (or an ACL user) on the
 * sentinels, optionally TLS-only everywhere. Every process is stopped by PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, sleep } from './services.ts';

/** Options of {@link startSentinelGroup}. */
export interface SentinelGroupOptions {
  /** TLS only (no plaintext ports) on servers, replication and sentinels, with these files. */
  tls?: { cert: string; key: string; ca: string };
  /** Sentinels take an ACL user (`sentinelUser`) instead of `requirepass`; they log in to each other with it. */
  sentinelAcl?: boolean;
}

export interface SentinelGroup {
  masterName: string;
  /** The sentinels' ACL user (with `sentinelAcl`). */
  sentinelUser: string | undefined;
  user: string;
  password: string;
  sentinelPassword: string;
  sentinelPorts: number[];
  /** `sentinel://user:pw@127.0.0.1:p1/db;sentinel://127.0.0.1:p2;…` */
  url(db?: number): string;
  /** Port of the current primary, as the sentinels see it. */
  primaryPort(): Promise<number>;
  /** SIGKILL the current primary; resolves when the sentinels name another one. */
  killPrimary(): Promise<{ oldPort: number; newPort: number; ms: number }>;
  /** Start the killed server again, empty, on its port, as a replica of the new primary. */
  restartKilled(): Promise<void>;
  /** Resolves when the current primary has `n` connected replicas. */
  waitReplicas(n: number, timeoutMs?: number): Promise<void>;
  /** A raw client of the current primary. */
  primaryClient(db?: number): Promise<Redis>;
  stop(): Promise<void>;
}

const strong = (): string => randomBytes(18).toString('base64url');

export async function startSentinelGroup(options: SentinelGroupOptions = {}): Promise<SentinelGroup> {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-sentinel-'));
  const masterName = `celeriac-${randomBytes(3).toString('hex')}`;
  const user = 'celeriac';
  const password = strong();
  const sentinelPassword = strong();
  const procs = new Map<number, ChildProcess>();
  const sentinelUser = options.sentinelAcl ? 'sentinel-admin' : undefined;
  const tls = options.tls;
  // What every helper client of this group passes to ioredis.
  const tlsClient = tls ? { tls: { ca: readFileSync(tls.ca) } } : {};
  const serverTls = (port: number): string[] => (tls
    ? ['--port', '0', '--tls-port', String(port), '--tls-cert-file', tls.cert, '--tls-key-file', tls.key, '--tls-ca-cert-file', tls.ca, '--tls-auth-clients', 'no', '--tls-replication', 'yes']
    : ['--port', String(port)]);
  const acl = ['--user', 'default', 'off', '--user', user, 'on', `>${password}`, '~*', '&*', '+@all', '--masteruser', user, '--masterauth', password];
  const startServer = async (port: number, replicaOf?: number): Promise<void> => {
    const args = ['--bind', '127.0.0.1', ...serverTls(port), '--save', '', '--appendonly', 'no', '--dir', dir, '--dbfilename', `dump-${port}.rdb`, '--loglevel', 'warning', '--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0', ...acl];
    if (replicaOf) args.push('--replicaof', '127.0.0.1', String(replicaOf));
    const p = spawn('redis-server', args, { stdio: 'ignore' });
    procs.set(port, p);
    await ping(port, { username: user, password, ...tlsClient });
  };
  const [pPort, rPort] = [await freePort(), await freePort()];
  await startServer(pPort);
  await startServer(rPort, pPort);
  const sentinelPorts = [await freePort(), await freePort(), await freePort()];
  for (const sp of sentinelPorts) {
    const conf = join(dir, `sentinel-${sp}.conf`);
    writeFileSync(conf, [
      ...(tls
        ? ['port 0', `tls-port ${sp}`, `tls-cert-file ${tls.cert}`, `tls-key-file ${tls.key}`, `tls-ca-cert-file ${tls.ca}`, 'tls-auth-clients no', 'tls-replication yes']
        : [`port ${sp}`]),
      'bind 127.0.0.1', `dir ${dir}`,
      ...(sentinelUser
        ? ['user default off', `user ${sentinelUser} on >${sentinelPassword} allchannels +@all`, `sentinel sentinel-user ${sentinelUser}`, `sentinel sentinel-pass ${sentinelPassword}`]
        : [`requirepass ${sentinelPassword}`]),
      `sentinel monitor ${masterName} 127.0.0.1 ${pPort} 2`,
      `sentinel auth-user ${masterName} ${user}`, `sentinel auth-pass ${masterName} ${password}`,
      `sentinel down-after-milliseconds ${masterName} 1000`, `sentinel failover-timeout ${masterName} 4000`,
      `sentinel parallel-syncs ${masterName} 1`, '',
    ].join('\n'), { mode: 0o600 });
    const p = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' });
    procs.set(sp, p);
    await ping(sp, { username: sentinelUser, password: sentinelPassword, ...tlsClient });
  }
  const sentinel = (): Redis => {
    const c = new Redis({ host: '127.0.0.1', port: sentinelPorts[0]!, username: sentinelUser, password: sentinelPassword, maxRetriesPerRequest: 2, lazyConnect: false, ...tlsClient });
    c.on('error', () => undefined);
    return c;
  };
  const primaryPort = async (): Promise<number> => {
    const c = sentinel();
    try {
      const r = (await c.call('SENTINEL', 'get-master-addr-by-name', masterName)) as [string, string];
      return Number(r[1]);
    } finally {
      c.disconnect();
    }
  };
  // Ready when every sentinel knows the replica and the two other sentinels (hello messages every 2 s).
  const deadline = Date.now() + 30_000;
  for (const sp of sentinelPorts) {
    const c = new Redis({ host: '127.0.0.1', port: sp, username: sentinelUser, password: sentinelPassword, maxRetriesPerRequest: 2, ...tlsClient });
    c.on('error', () => undefined);
    try {
      for (;;) {
        const replicas = (await c.call('SENTINEL', 'replicas', masterName)) as unknown[];
        const sentinels = (await c.call('SENTINEL', 'sentinels', masterName)) as unknown[];
        if (replicas.length >= 1 && sentinels.length >= 2) break;
        if (Date.now() > deadline) throw new Error('the sentinel group did not settle within 30 s');
        await sleep(200);
      }
    } finally {
      c.disconnect();
    }
  }
  let killed: number | undefined;
  const clients: Redis[] = [];
  const group: SentinelGroup = {
    masterName, sentinelUser, user, password, sentinelPassword, sentinelPorts,
    url: (db = 0) => sentinelPorts.map((p, i) => `sentinel://${i === 0 ? `${user}:${encodeURIComponent(password)}@` : ''}127.0.0.1:${p}${i === 0 ? `/${db}` : ''}`).join(';'),
    primaryPort,
    async killPrimary() {
      const oldPort = await primaryPort();
      const t0 = Date.now();
      const p = procs.get(oldPort)!;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGKILL');
      await exited;
      killed = oldPort;
      for (;;) {
        const now = await primaryPort().catch(() => oldPort);
        if (now !== oldPort) return { oldPort, newPort: now, ms: Date.now() - t0 };
        if (Date.now() - t0 > 30_000) throw new Error('no failover within 30 s');
        await sleep(100);
      }
    },
    async restartKilled() {
      if (killed === undefined) return;
      // Back as a replica of the new primary, as an operator (or a supervisor) must restart a primary without
      // persistence: started as an empty primary, it could be taken for the primary again by a sentinel that
      // had not seen the failover yet (a loaded machine), and the promoted replica would resync from it, empty.
      await startServer(killed, await primaryPort());
      killed = undefined;
    },
    async waitReplicas(n, timeoutMs = 30_000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const c = await group.primaryClient();
        const info = await c.info('replication').catch(() => '');
        c.disconnect();
        const connected = /connected_slaves:(\d+)/.exec(info)?.[1];
        const online = (info.match(/state=online/g) ?? []).length;
        if (Number(connected ?? 0) >= n && online >= n) return;
        if (Date.now() > end) throw new Error(`the primary has no ${n} online replica(s) after ${timeoutMs} ms`);
        await sleep(200);
      }
    },
    async primaryClient(db = 0) {
      const c = new Redis({ host: '127.0.0.1', port: await primaryPort(), db, username: user, password, maxRetriesPerRequest: 3, ...tlsClient });
      c.on('error', () => undefined);
      clients.push(c);
      return c;
    },
    async stop() {
      for (const c of clients) c.disconnect();
      await Promise.all([...procs.values()].map(async (p) => {
        if (p.exitCode !== null || p.signalCode !== null) return;
        const exited = new Promise((r) => p.once('exit', r));
        p.kill('SIGKILL');
        await exited;
      }));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await group.waitReplicas(1);
  return group;
}

async function ping(port: number, auth: { username?: string | undefined; password: string; tls?: { ca: Buffer } }): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const c = new Redis({ host: '127.0.0.1', port, ...auth, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    c.on('error', () => undefined);
    try {
      await c.connect();
      await c.ping();
      c.disconnect();
      return;
    } catch {
      c.disconnect();
      if (Date.now() > deadline) throw new Error(`redis on port ${port} did not start`);
      await sleep(30);
    }
  }
}
