/**
 * A throwaway PostgreSQL cluster started by a test (initdb + postgres on a
 * free port, bound to 127.0.0.1, run as the `postgres` OS user since
 * PostgreSQL refuses root), with TLS from the test PKI and SCRAM for every
 * TCP login except two roles kept for the policy's refusals: `celeriac_md5`
 * (md5) and `celeriac_trust` (trust). The superuser is reached over the
 * cluster's own Unix socket only. Stopped (and its files removed) by `stop()`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { generatePassword } from '../../src/secrets/generate.ts';
import type { TestPki } from './pki.ts';
import { freePort, sleep } from './services.ts';

const BIN = '/usr/lib/postgresql/15/bin';

/** True when this machine can start a cluster (the binaries and a `postgres` OS user). */
export function canStartPostgres(): boolean {
  return existsSync(join(BIN, 'initdb')) && spawnSync('id', ['-u', 'postgres'], { stdio: 'ignore' }).status === 0 && spawnSync('runuser', ['--help'], { stdio: 'ignore' }).status === 0;
}

export interface PostgresCluster {
  port: number;
  /** The worker role (SCRAM), its password, and the database it owns. */
  user: string;
  password: string;
  database: string;
  /** Password of `celeriac_md5` (md5) and `celeriac_trust` (no password asked). */
  md5Password: string;
  /** `postgres://user:password@127.0.0.1:port/db?sslmode=verify-full&sslrootcert=<ca>` plus `extra` params. */
  url(extra?: string, who?: { user: string; password?: string }): string;
  /** Kill the server the hard way (immediate shutdown, crash recovery) and start it again on the same files and port. */
  restart(): Promise<void>;
  /** Run SQL as the superuser, over the cluster's Unix socket (in database `postgres` unless named). */
  admin(sql: string, params?: unknown[], database?: string): Promise<pg.QueryResult>;
  stop(): Promise<void>;
}

function asPostgres(cmd: string, args: string[]): void {
  const r = spawnSync('runuser', ['-u', 'postgres', '--', cmd, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}${r.stdout}`);
}

/** Start a cluster with TLS (server certificate for 127.0.0.1 from `pki`) and SCRAM. */
export async function startPostgresCluster(pki: TestPki): Promise<PostgresCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-pg-'));
  chmodSync(dir, 0o755);
  const pgUid = Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim());
  const pgGid = Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim());
  chownSync(dir, pgUid, pgGid);
  const data = join(dir, 'data');
  const superPw = generatePassword(32);
  const pwfile = join(dir, 'pw');
  writeFileSync(pwfile, `${superPw}\n`, { mode: 0o600 });
  chownSync(pwfile, pgUid, pgGid);
  asPostgres(join(BIN, 'initdb'), ['-D', data, '-U', 'postgres', '--pwfile', pwfile, '--auth-local=trust', '--auth-host=scram-sha-256', '-E', 'UTF8', '--no-sync']);
  for (const [from, to] of [[pki.server, 'server.crt'], [pki.serverKey, 'server.key'], [pki.ca, 'ca.crt']] as const) {
    copyFileSync(from, join(dir, to));
    chownSync(join(dir, to), pgUid, pgGid);
    chmodSync(join(dir, to), 0o600);
  }
  writeFileSync(
    join(data, 'pg_hba.conf'),
    [
      'local all postgres trust',
      'hostssl all celeriac_md5 127.0.0.1/32 md5',
      'hostssl all celeriac_trust 127.0.0.1/32 trust',
      'hostssl all all 127.0.0.1/32 scram-sha-256',
      'host all all 127.0.0.1/32 scram-sha-256',
      '',
    ].join('\n'),
  );
  const port = await freePort();
  let proc: ChildProcess;
  let log = '';
  const admin = async (sql: string, params: unknown[] = [], database = 'postgres'): Promise<pg.QueryResult> => {
    const c = new pg.Client({ host: dir, port, user: 'postgres', database });
    await c.connect();
    try {
      return await c.query(sql, params);
    } finally {
      await c.end();
    }
  };
  const postmasterPid = (): number | undefined => {
    try {
      return Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
    } catch {
      return undefined;
    }
  };
  /** Start the postmaster on the data directory and wait until it answers. */
  const boot = async (): Promise<void> => {
    proc = spawn(
      'runuser',
      ['-u', 'postgres', '--', join(BIN, 'postgres'), '-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1',
        '-c', 'ssl=on', '-c', `ssl_cert_file=${join(dir, 'server.crt')}`, '-c', `ssl_key_file=${join(dir, 'server.key')}`, '-c', `ssl_ca_file=${join(dir, 'ca.crt')}`,
        '-c', 'fsync=off', '-c', 'shared_buffers=16MB', '-c', 'max_connections=300'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    proc.stderr?.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-20_000)));
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        await admin('SELECT 1');
        return;
      } catch (err) {
        if (proc.exitCode !== null || Date.now() > deadline) {
          proc.kill('SIGKILL');
          throw new Error(`postgres did not start: ${(err as Error).message}\n${log}`);
        }
        await sleep(100);
      }
    }
  };
  /** Stop the postmaster by the PID it recorded: SIGINT is a fast shutdown, SIGQUIT an immediate one (crash recovery at the next start). */
  const halt = async (signal: 'SIGINT' | 'SIGQUIT'): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const pid = postmasterPid();
    if (pid) process.kill(pid, signal);
    else proc.kill('SIGKILL');
    const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await new Promise((r) => (proc.exitCode !== null || proc.signalCode !== null ? r(null) : proc.once('exit', r)));
    clearTimeout(t);
  };
  try {
    await boot();
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const password = generatePassword(32);
  const md5Password = generatePassword(32);
  await admin(`SET password_encryption = 'scram-sha-256'; CREATE ROLE celeriac_worker LOGIN PASSWORD '${password}'`);
  await admin(`SET password_encryption = 'md5'; CREATE ROLE celeriac_md5 LOGIN PASSWORD '${md5Password}'`);
  await admin('CREATE ROLE celeriac_trust LOGIN');
  await admin('CREATE DATABASE celeriac OWNER celeriac_worker');
  await admin('GRANT ALL ON DATABASE celeriac TO celeriac_md5, celeriac_trust');
  const enc = encodeURIComponent;
  return {
    port,
    user: 'celeriac_worker',
    password,
    database: 'celeriac',
    md5Password,
    url(extra = '', who = { user: 'celeriac_worker', password }) {
      const auth = who.password === undefined ? enc(who.user) : `${enc(who.user)}:${enc(who.password)}`;
      return `postgres://${auth}@127.0.0.1:${port}/celeriac?sslmode=verify-full&sslrootcert=${enc(pki.ca)}${extra ? `&${extra}` : ''}`;
    },
    admin: (sql, params, database) => admin(sql, params, database),
    async restart() {
      await halt('SIGQUIT');
      await boot();
    },
    async stop() {
      await halt('SIGINT');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
