/**
 * The chaos harness: late-ack tasks on a real broker, prefork workers (the
 * CLI) whose children and supervisors are SIGKILLed at random, broker
 * restarts and connection kills, poison tasks among normal ones. It reports
 * what must hold (issue 21): no task lost, duplicates within what was in
 * flight at each kill, poison tasks ended (dead-lettered after the
 * configured count), and the pool size over time (it must not shrink).
 *
 * Used by `npm run chaos` (test/chaos/run.ts, full figures) and by
 * test/chaos/chaos.test.ts (the short CI version).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { sqliteUrlForPath } from '../../src/transport/sqlite/location.ts';
import { startAofRedis } from '../helpers/redis-server.ts';
import { createTestPki } from '../helpers/pki.ts';
import { startPostgresCluster } from '../helpers/postgres-server.ts';
import { sleep } from '../helpers/services.ts';
import { closeConnection, connectionsOf, createTestVhost, startPrivateNode, type PrivateNode, type TestVhost } from '../integration/amqp/support/rabbit.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = `${ROOT}bin/celeriac.mjs`;
const APP = fileURLToPath(new URL('./app.ts', import.meta.url));

export type Engine = 'redis' | 'amqp' | 'sqlite' | 'postgres';

export interface ChaosOptions {
  engine: Engine;
  /** Normal (late-ack) tasks. */
  tasks: number;
  /** SIGKILLs of children and supervisors (and connection kills), spread over the run. */
  kills: number;
  /**
   * Broker restarts. Redis: kill -9 of its own redis-server with AOF,
   * restarted on the same files. PostgreSQL: immediate shutdown of its own
   * cluster, restarted on the same files. RabbitMQ: the run gets a node of
   * its own (own node name, ports and data directory, never the shared
   * node), which is stopped and started again on the same data; durable
   * queues and persistent messages survive it.
   */
  brokerRestarts: number;
  /** Poison tasks of each kind (OOM at the heap cap, busy loop past the hard limit). */
  poison: number;
  supervisors: number;
  processes: number;
  concurrency: number;
  /** Give up (and report what did not end) after this long. */
  deadlineMs: number;
  log?: (line: string) => void;
}

export interface KillRecord {
  at: number;
  kind: 'child' | 'supervisor' | 'connection' | 'broker';
  /** Most executions this kill can make run again (what was in flight). */
  bound: number;
  /** Broker restarts: tasks not yet ended when it began, and how long the broker was away (ms). */
  pending?: number;
  downMs?: number;
}

export interface ChaosReport {
  engine: Engine;
  tasks: number;
  succeeded: number;
  /** Normal tasks that did not end SUCCESS (must be 0). */
  lost: string[];
  /** Extra executions of normal tasks (runs beyond the first). */
  duplicates: number;
  /** Sum of the in-flight bounds of every kill. */
  duplicateBound: number;
  kills: KillRecord[];
  poison: Array<{ id: string; kind: 'oom' | 'spin'; status: string; runs: number; deadLettered: boolean; reason: string }>;
  /** [ms since start, live children per supervisor slot] samples. */
  poolSamples: Array<[number, number]>;
  poolTarget: number;
  /** Live children at the end (must be the target). */
  poolAtEnd: number;
  /** Workers that exited by themselves and were started again (as a process manager would). */
  workerRestarts: number;
  /** Broker restarts asked for (each must have happened while tasks were pending). */
  brokerRestartsAsked: number;
  elapsedMs: number;
}

interface Broker {
  url: string;
  backend: string;
  restart?(): Promise<void>;
  killConnection?(): Promise<boolean>;
  stop(): Promise<void>;
}

async function setUpBroker(engine: Engine, dir: string, restarts: number): Promise<Broker> {
  if (engine === 'redis') {
    const r = await startAofRedis(dir);
    return {
      url: `redis://127.0.0.1:${r.port}/0`,
      backend: `redis://127.0.0.1:${r.port}/1`,
      restart: () => r.restart(),
      async killConnection() {
        const c = new Redis({ port: r.port, host: '127.0.0.1' });
        c.on('error', () => undefined);
        try {
          // The connections of the workers' children (consumers, their producers and result writers).
          const list = (await c.client('LIST')) as string;
          const ids = list.split('\n').filter((l) => / name=celeriac:/.test(l)).map((l) => /id=(\d+)/.exec(l)?.[1]).filter(Boolean) as string[];
          if (ids.length === 0) return false;
          await c.client('KILL', 'ID', ids[Math.floor(Math.random() * ids.length)]!);
          return true;
        } finally {
          c.disconnect();
        }
      },
      stop: () => r.stop(),
    };
  }
  if (engine === 'postgres') {
    // A cluster of its own (TLS verify-full, SCRAM), so it can be restarted and its connections killed.
    const cluster = await startPostgresCluster(await createTestPki(join(dir, 'pki')));
    const url = cluster.url('schema=chaos');
    return {
      url,
      backend: url,
      restart: () => cluster.restart(),
      async killConnection() {
        const r = await cluster.admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'celeriac:%' ORDER BY random() LIMIT 1`);
        return (r.rowCount ?? 0) > 0;
      },
      stop: () => cluster.stop(),
    };
  }
  if (engine === 'sqlite') {
    const url = sqliteUrlForPath(join(dir, 'chaos.db'));
    return { url, backend: url, stop: async () => undefined };
  }
  // Restarts need a node of the run's own: stopping the shared node would break every other test.
  const node: PrivateNode | undefined = restarts > 0 ? await startPrivateNode() : undefined;
  let vh: TestVhost | undefined;
  let backend: Awaited<ReturnType<typeof startAofRedis>> | undefined;
  try {
    vh = await createTestVhost('chaos', node);
    backend = await startAofRedis(dir);
  } catch (err) {
    await vh?.delete();
    await node?.destroy();
    throw err;
  }
  const v = vh;
  const b = backend;
  return {
    url: v.url(),
    backend: `redis://127.0.0.1:${b.port}/1`,
    ...(node
      ? {
          async restart() {
            // A clean stop (rabbitmqctl stop; SIGKILL by PID only if it lingers), then a start on the same files.
            await node.stop();
            await node.start();
          },
        }
      : {}),
    async killConnection() {
      const conns = (await connectionsOf(v.user, node)).filter((c) => c.name.includes('consumer'));
      if (conns.length === 0) return false;
      await closeConnection(conns[Math.floor(Math.random() * conns.length)]!.pid, 'chaos: forced close', node).catch(() => undefined);
      return true;
    },
    async stop() {
      await v.delete();
      await b.stop();
      await node?.destroy();
    },
  };
}

interface Supervisor {
  proc: ChildProcess;
  out: string;
}

function children(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** Run one chaos scenario and report. Cleans up everything it started. */
export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const log = o.log ?? (() => undefined);
  const dir = mkdtempSync(join(tmpdir(), `celeriac-chaos-${o.engine}-`));
  const ledger = join(dir, 'ledger');
  execFileSync('mkdir', ['-p', ledger]);
  const broker = await setUpBroker(o.engine, dir, o.brokerRestarts);
  const env: Record<string, string> = {
    CELERIAC_BROKER_URL: broker.url,
    CELERIAC_RESULT_BACKEND: broker.backend,
    CELERIAC_LOG_LEVEL: 'info',
    CHAOS_LEDGER_DIR: ledger,
    // Private loopback services without passwords: development mode, asked for (production is the default, src/config/mode.ts).
    CELERIAC_ENV: 'development',
  };
  Object.assign(process.env, env, { CELERIAC_LOG_LEVEL: 'fatal' });
  // The client side of the same app (sends, reads results), in this process.
  const mod = (await import(`./app.ts?${o.engine}-${Date.now()}`)) as typeof import('./app.ts');
  const share = Math.ceil(o.concurrency / o.processes);
  const supervisors: Array<Supervisor | undefined> = [];
  const startSupervisor = async (slot: number): Promise<void> => {
    const proc = spawn(process.execPath, [CLI, 'worker', '-A', APP, '-c', String(o.concurrency), '--processes', String(o.processes), '--max-memory-per-child', '128', '--shutdown-timeout', '5'], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: ROOT,
    });
    const s: Supervisor = { proc, out: '' };
    proc.stdout?.on('data', (d: Buffer) => (s.out = (s.out + d.toString()).slice(-20_000)));
    proc.stderr?.on('data', (d: Buffer) => (s.out = (s.out + d.toString()).slice(-20_000)));
    supervisors[slot] = s;
    proc.once('exit', (code, signal) => {
      if (signal === 'SIGKILL' || stopping || supervisors[slot] !== s) return;
      // Like a process manager: a worker that exits (e.g. a child killed during its start-up) is started again.
      log(`[${o.engine}] worker ${proc.pid} exited (${signal ?? code}); restarting it: ${s.out.slice(-300)}`);
      restarts++;
      setTimeout(() => void (stopping ? undefined : startSupervisor(slot)), 500);
    });
  };
  let stopping = false;
  let restarts = 0;
  const t0 = Date.now();
  const kills: KillRecord[] = [];
  const poolSamples: Array<[number, number]> = [];
  const poolTarget = o.supervisors * o.processes;
  const livePool = (): number => supervisors.reduce((n, s) => n + (s && s.proc.exitCode === null && s.proc.signalCode === null ? children(s.proc.pid!).length : 0), 0);
  try {
    for (let i = 0; i < o.supervisors; i++) await startSupervisor(i);
    const readyBy = Date.now() + 60_000;
    while (!supervisors.every((s) => s && /worker \S+ ready/.test(s.out))) {
      if (Date.now() > readyBy) throw new Error(`workers not ready: ${supervisors.map((s) => s?.out.slice(-500)).join('\n')}`);
      await sleep(100);
    }
    // Send everything first: the kills then hit a busy pool.
    const ids: string[] = [];
    for (let i = 0; i < o.tasks; i += 250) {
      const rs = await Promise.all(Array.from({ length: Math.min(250, o.tasks - i) }, (_, k) => mod.work.delay(i + k)));
      for (const r of rs) ids.push(r.id);
    }
    const poisonIds: Array<{ id: string; kind: 'oom' | 'spin' }> = [];
    for (let i = 0; i < o.poison; i++) {
      poisonIds.push({ id: (await mod.oom.delay()).id, kind: 'oom' });
      poisonIds.push({ id: (await mod.spin.delay()).id, kind: 'spin' });
    }
    log(`[${o.engine}] sent ${ids.length} tasks and ${poisonIds.length} poison tasks`);
    const pending = new Set(ids);
    const poisonPending = new Set(poisonIds.map((p) => p.id));
    const status = new Map<string, string>();
    let killsDone = 0;
    let restartsDone = 0;
    let nextKill = Date.now() + 500;
    // Restarts are spread over the first half of the kills, the first at the first kill, so each one hits a
    // broker with work still queued (a slow kill, e.g. rabbitmqctl under load, may leave fewer kills than asked).
    const restartEvery = o.brokerRestarts > 0 ? Math.max(1, Math.floor(o.kills / (2 * (o.brokerRestarts + 1)))) : Infinity;
    let lastPoll = 0;
    while ((pending.size > 0 || poisonPending.size > 0) && Date.now() - t0 < o.deadlineMs) {
      await sleep(100);
      if (Date.now() - lastPoll > 500) {
        lastPoll = Date.now();
        poolSamples.push([Date.now() - t0, livePool()]);
        if (poolSamples.length % 10 === 0) log(`[${o.engine}] ${((Date.now() - t0) / 1000).toFixed(0)} s: ${pending.size} tasks and ${poisonPending.size} poison pending, pool ${poolSamples.at(-1)![1]}/${poolTarget}, ${killsDone} kills`);
        // Results of what is still pending (a closed or restarting backend just means: not yet).
        for (const set of [pending, poisonPending]) {
          const batch = [...set].slice(0, 2000);
          const states = await Promise.all(batch.map((id) => mod.app.asyncResult(id).status().catch(() => 'PENDING')));
          batch.forEach((id, k) => {
            const st = states[k]!;
            if (st === 'SUCCESS' || st === 'FAILURE') {
              set.delete(id);
              status.set(id, st);
            }
          });
        }
      }
      if (killsDone < o.kills && Date.now() >= nextKill) {
        nextKill = Date.now() + 150 + Math.random() * 450;
        killsDone++;
        const roll = Math.random();
        if (broker.restart && restartsDone < o.brokerRestarts && killsDone >= 1 + restartsDone * restartEvery) {
          restartsDone++;
          const record: KillRecord = { at: Date.now() - t0, kind: 'broker', bound: o.supervisors * o.concurrency * 2, pending: pending.size };
          kills.push(record);
          log(`[${o.engine}] broker restart with ${pending.size} tasks pending`);
          const r0 = Date.now();
          await broker.restart();
          record.downMs = Date.now() - r0;
          log(`[${o.engine}] broker back after ${record.downMs} ms`);
          continue;
        }
        if (roll < 0.15) {
          const slot = Math.floor(Math.random() * o.supervisors);
          const s = supervisors[slot];
          if (s && s.proc.exitCode === null) {
            kills.push({ at: Date.now() - t0, kind: 'supervisor', bound: o.concurrency * 2 });
            for (const pid of children(s.proc.pid!)) {
              try {
                process.kill(pid, 'SIGKILL');
              } catch {
                // gone
              }
            }
            s.proc.kill('SIGKILL');
            await startSupervisor(slot);
            continue;
          }
        }
        if (roll < 0.3 && broker.killConnection) {
          if (await broker.killConnection()) {
            kills.push({ at: Date.now() - t0, kind: 'connection', bound: o.supervisors * o.concurrency * 2 });
            continue;
          }
        }
        const all = supervisors.flatMap((s) => (s && s.proc.exitCode === null ? children(s.proc.pid!) : []));
        if (all.length > 0) {
          const victim = all[Math.floor(Math.random() * all.length)]!;
          try {
            process.kill(victim, 'SIGKILL');
            kills.push({ at: Date.now() - t0, kind: 'child', bound: share * 2 });
          } catch {
            // already gone
          }
        }
      }
    }
    // The pool must be back to its size once the storm is over.
    // Within the supervisor's own bound: a child start may take up to its 60 s start timeout, then a 10 s backoff.
    let poolAtEnd = livePool();
    for (let i = 0; i < 150 && poolAtEnd !== poolTarget; i++) {
      await sleep(500);
      poolAtEnd = livePool();
    }
    // Runs per task id, from every process's ledger.
    const runs = new Map<string, number>();
    for (const f of readdirSync(ledger)) {
      for (const id of readFileSync(join(ledger, f), 'utf8').split('\n')) if (id) runs.set(id, (runs.get(id) ?? 0) + 1);
    }
    let duplicates = 0;
    for (const id of ids) duplicates += Math.max(0, (runs.get(id) ?? 0) - 1);
    const lost = ids.filter((id) => status.get(id) !== 'SUCCESS');
    const appBroker = await mod.app.broker();
    const dead = await appBroker.deadLetters(mod.app.settings.taskDefaultQueue, 1000).catch(() => []);
    const poison = await Promise.all(
      poisonIds.map(async (p) => {
        const meta = await mod.app.asyncResult(p.id).meta().catch(() => undefined);
        const d = dead.find((x) => x.message?.headers.id === p.id);
        const result = meta?.result as { exc_type?: string; exc_message?: unknown[] } | undefined;
        return { ...p, status: String(meta?.status ?? 'PENDING'), runs: runs.get(p.id) ?? 0, deadLettered: d !== undefined, reason: d?.reason ?? `${result?.exc_type ?? ''}: ${String(result?.exc_message?.[0] ?? '')}` };
      }),
    );
    return {
      engine: o.engine,
      tasks: ids.length,
      succeeded: ids.length - lost.length,
      lost,
      duplicates,
      duplicateBound: kills.reduce((a, k) => a + k.bound, 0),
      kills,
      poison,
      poolSamples,
      poolTarget,
      poolAtEnd,
      workerRestarts: restarts,
      brokerRestartsAsked: o.brokerRestarts,
      elapsedMs: Date.now() - t0,
    };
  } finally {
    stopping = true;
    await Promise.all(
      supervisors.map(async (s) => {
        if (!s || s.proc.exitCode !== null || s.proc.signalCode !== null) return;
        const kids = children(s.proc.pid!);
        const exited = new Promise((r) => s.proc.once('exit', r));
        s.proc.kill('SIGTERM');
        await Promise.race([exited, sleep(10_000)]);
        if (s.proc.exitCode === null) s.proc.kill('SIGKILL');
        for (const k of kids) {
          try {
            process.kill(k, 'SIGKILL');
          } catch {
            // exited with its supervisor
          }
        }
      }),
    );
    await mod.app.close().catch(() => undefined);
    await broker.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One line per figure, for the report. */
export function formatReport(r: ChaosReport): string {
  const byKind = (k: KillRecord['kind']): number => r.kills.filter((x) => x.kind === k).length;
  const minPool = r.poolSamples.reduce((m, [, n]) => Math.min(m, n), Infinity);
  return [
    `engine ${r.engine}: ${r.tasks} late-ack tasks in ${(r.elapsedMs / 1000).toFixed(1)} s`,
    `  kills: ${r.kills.length} (children ${byKind('child')}, supervisors ${byKind('supervisor')}, connections ${byKind('connection')}, broker restarts ${byKind('broker')})`,
    ...r.kills.filter((k) => k.kind === 'broker').map((k) => `  broker restart at ${(k.at / 1000).toFixed(1)} s with ${k.pending} tasks pending, away ${((k.downMs ?? 0) / 1000).toFixed(1)} s`),
    `  lost: ${r.lost.length}${r.lost.length ? ` (${r.lost.slice(0, 5).join(', ')}…)` : ''}`,
    `  duplicates: ${r.duplicates} (in-flight bound at the kills: ${r.duplicateBound})`,
    ...r.poison.map((p) => `  poison ${p.kind} ${p.id}: ${p.status} after ${p.runs} run(s)${p.deadLettered ? ', dead-lettered' : ''} — ${p.reason}`),
    `  pool: target ${r.poolTarget}, lowest sample ${minPool === Infinity ? '-' : minPool}, at the end ${r.poolAtEnd}; workers that exited and were restarted: ${r.workerRestarts}`,
  ].join('\n');
}

/** What must hold for a run (the CI test asserts the same). */
export function verdict(r: ChaosReport): string[] {
  const bad: string[] = [];
  if (r.lost.length > 0) bad.push(`${r.lost.length} task(s) lost`);
  if (r.duplicates > r.duplicateBound) bad.push(`${r.duplicates} duplicates exceed the in-flight bound ${r.duplicateBound}`);
  for (const p of r.poison) {
    if (p.status !== 'FAILURE') bad.push(`poison ${p.kind} ${p.id} did not end (${p.status})`);
    // taskMaxRedeliveries (3) + 1 counted runs; every supervisor, connection or broker kill may add one run the
    // worker cannot hold against the task, and a crash beside other tasks makes it a suspect (one run alone next).
    const unattributable = r.kills.filter((k) => k.kind !== 'child').length;
    const bound = 4 + unattributable + 2;
    if (p.runs > bound) bad.push(`poison ${p.kind} ${p.id} ran ${p.runs} times (bound ${bound})`);
  }
  if (r.poolAtEnd !== r.poolTarget) bad.push(`pool at ${r.poolAtEnd} of ${r.poolTarget} after the run`);
  // A scenario that did not happen proves nothing: every restart asked for must have hit a busy broker.
  const restarts = r.kills.filter((k) => k.kind === 'broker' && (k.pending ?? 0) > 0).length;
  if (restarts < r.brokerRestartsAsked) bad.push(`${restarts} of ${r.brokerRestartsAsked} broker restarts happened while tasks were pending`);
  return bad;
}

