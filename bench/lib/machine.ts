/** What the run was measured on. */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { anchorVersion } from './anchors.ts';

export interface Machine {
  cpu: string;
  cores: number;
  ramGiB: number;
  os: string;
  node: string;
  redis: string;
  python: string;
  celery: string;
  bullmq: string;
  beeQueue: string;
  ioredis: string;
}

export const PYTHON = process.env.BENCH_PYTHON ?? '/usr/bin/python3';

/** Python and Celery versions, or why Celery cannot run. */
export function pythonCelery(): { ok: boolean; python: string; celery: string; reason?: string } {
  const r = spawnSync(PYTHON, ['-c', 'import sys, celery, redis; print(sys.version.split()[0], celery.__version__)'], { encoding: 'utf8' });
  if (r.error) return { ok: false, python: 'absent', celery: 'absent', reason: `${PYTHON} not found` };
  if (r.status !== 0) {
    const v = spawnSync(PYTHON, ['-c', 'import sys; print(sys.version.split()[0])'], { encoding: 'utf8' });
    return { ok: false, python: v.stdout?.trim() || '?', celery: 'absent', reason: `Celery or python3-redis not importable by ${PYTHON} (apt-get install python3-celery python3-redis)` };
  }
  const [python, celery] = r.stdout.trim().split(' ');
  return { ok: true, python: python ?? '?', celery: celery ?? '?' };
}

export async function describeMachine(redisVersion: string): Promise<Machine> {
  let cpu = cpus()[0]?.model ?? '?';
  try {
    cpu = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpu;
  } catch {
    /* not Linux */
  }
  const py = pythonCelery();
  return {
    cpu,
    cores: cpus().length,
    ramGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    os: `Linux ${release()}`,
    node: process.version,
    redis: redisVersion,
    python: py.python,
    celery: py.celery,
    bullmq: await anchorVersion('bullmq'),
    beeQueue: await anchorVersion('bee-queue'),
    ioredis: await anchorVersion('ioredis'),
  };
}
