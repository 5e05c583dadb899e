/**
 * A private redis-server per test file, on a free loopback port, with no
 * persistence; optional password and TLS. Stopped by PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, hasCommand, sleep } from './services.ts';

export interface RedisServer {
  port: number;
  tlsPort: number | undefined;
  /** `redis://[:password@]127.0.0.1:<port>/<db>` */
  url(db?: number): string;
  /** A raw ioredis client (db 0 unless given). */
  client(db?: number): Redis;
  pid: number;
  stop(): Promise<void>;
}

export interface RedisServerOptions {
  password?: string;
  tls?: { certFile: string; keyFile: string; caFile: string; authClients?: 'yes' | 'no' | 'optional' };
  /** Extra redis-server arguments. */
  args?: string[];
}

export const hasRedisServer = (): boolean => hasCommand('redis-server');

export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const port = await freePort();
  const tlsPort = options.tls ? await freePort() : undefined;
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-redis-'));
  const args = ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning'];
  if (options.password) args.push('--requirepass', options.password);
  if (options.tls && tlsPort) {
    args.push('--tls-port', String(tlsPort), '--tls-cert-file', options.tls.certFile, '--tls-key-file', options.tls.keyFile, '--tls-ca-cert-file', options.tls.caFile, '--tls-auth-clients', options.tls.authClients ?? 'no');
  }
  args.push(...(options.args ?? []));
  const proc: ChildProcess = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const auth = options.password ? `:${encodeURIComponent(options.password)}@` : '';
  const clients: Redis[] = [];
  const server: RedisServer = {
    port,
    tlsPort,
    pid: proc.pid!,
    url: (db = 0) => `redis://${auth}127.0.0.1:${port}/${db}`,
    client: (db = 0) => {
      const c = new Redis({ host: '127.0.0.1', port, db, password: options.password, protocol: 2, lazyConnect: false, maxRetriesPerRequest: 3 });
      c.on('error', () => undefined);
      clients.push(c);
      return c;
    },
    async stop() {
      for (const c of clients) c.disconnect();
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        let timer: NodeJS.Timeout | undefined;
        // A cleared timer: a pending one would keep the test process alive after the server exits.
        await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 3000)))]);
        clearTimeout(timer);
        if (proc.exitCode === null) proc.kill('SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await waitForPing(port, options.password, proc, () => stderr);
  return server;
}

/** Wait until the server on `port` answers PING (10 s), failing early if `proc` exits. */
async function waitForPing(port: number, password: string | undefined, proc: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`redis-server exited: ${stderr()}`);
    const probe = new Redis({ host: '127.0.0.1', port, password, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    probe.on('error', () => undefined);
    try {
      await probe.connect();
      await probe.ping();
      probe.disconnect();
      return;
    } catch {
      probe.disconnect();
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`redis-server did not start: ${stderr()}`);
      }
      await sleep(20);
    }
  }
}

/** A redis-server with AOF (fsync always) on its own port in `dir`, restartable on the same files (crash tests). */
export interface AofRedis {
  port: number;
  pid(): number;
  /** SIGKILL, then start again on the same port and files. */
  restart(): Promise<void>;
  /** SIGKILL (or start after one with `restart`). */
  stop(): Promise<void>;
}


export async function startAofRedis(dir: string): Promise<AofRedis> {
  const port = await freePort();
  let proc: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    proc = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(port), '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--loglevel', 'warning'], { stdio: 'ignore' });
    await waitForPing(port, undefined, proc, () => '');
  };
  const kill = async (): Promise<void> => {
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc!.once('exit', r));
    proc.kill('SIGKILL');
    await exited;
  };
  await start();
  return {
    port,
    pid: () => proc!.pid!,
    async restart() {
      await kill();
      await sleep(300);
      await start();
    },
    stop: kill,
  };
}

/** True when a Redis server answers PING at `url` (the loopback test service, usually). */
export async function redisAnswers(url: string): Promise<boolean> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  try {
    await r.connect();
    return (await r.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}
