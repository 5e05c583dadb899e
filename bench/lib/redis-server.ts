/**
 * The benchmark's own redis-server: a free loopback port, no persistence,
 * stopped by its PID when the run ends.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, sleep } from './common.ts';

export interface BenchRedis {
  port: number;
  pid: number;
  version: string;
  url(db?: number): string;
  /** A raw client (no auto-pipelining) owned by the caller. */
  client(db?: number): Redis;
  stop(): Promise<void>;
}

export async function startRedis(): Promise<BenchRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-bench-redis-'));
  const args = ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning', '--databases', '4'];
  const proc = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  // Never outlive the benchmark, however it ends.
  const onExit = (): void => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
  };
  process.once('exit', onExit);
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const spawnError = new Promise<Error>((resolve) => proc.once('error', resolve));
  const client = (db = 0): Redis => {
    const c = new Redis({ host: '127.0.0.1', port, db, protocol: 2, lazyConnect: false, maxRetriesPerRequest: 3, enableAutoPipelining: false });
    c.on('error', () => undefined);
    return c;
  };
  const deadline = Date.now() + 10_000;
  let version = '';
  for (;;) {
    const err = await Promise.race([spawnError, sleep(50).then(() => undefined)]);
    if (err) throw new Error(`cannot start redis-server: ${err.message}`);
    if (proc.exitCode !== null) throw new Error(`redis-server exited: ${stderr}`);
    const probe = new Redis({ host: '127.0.0.1', port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    probe.on('error', () => undefined);
    try {
      await probe.connect();
      const info = await probe.info('server');
      version = /redis_version:(\S+)/.exec(info)?.[1] ?? '?';
      probe.disconnect();
      break;
    } catch {
      probe.disconnect();
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`redis-server did not answer on port ${port}: ${stderr}`);
      }
    }
  }
  return {
    port,
    pid: proc.pid!,
    version,
    url: (db = 0) => `redis://127.0.0.1:${port}/${db}`,
    client,
    async stop() {
      process.removeListener('exit', onExit);
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await Promise.race([exited, sleep(3000)]);
        if (proc.exitCode === null) proc.kill('SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
