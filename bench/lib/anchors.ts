/**
 * BullMQ and bee-queue, loaded from bench/node_modules at run time. They
 * are imported by a computed name so that the root `npm run typecheck`
 * passes on a fresh clone, before `npm --prefix bench install`; the small
 * interfaces below are the parts of their APIs the benchmark uses.
 */

export interface BullJob {
  id?: string;
  waitUntilFinished(events: BullQueueEvents, ttl?: number): Promise<unknown>;
}
export interface BullQueue {
  add(name: string, data: unknown, opts?: Record<string, unknown>): Promise<BullJob>;
  addBulk(jobs: Array<{ name: string; data: unknown; opts?: Record<string, unknown> }>): Promise<BullJob[]>;
  waitUntilReady(): Promise<unknown>;
  close(): Promise<void>;
}
export interface BullQueueEvents {
  waitUntilReady(): Promise<unknown>;
  close(): Promise<void>;
}
export interface BullWorker {
  waitUntilReady(): Promise<unknown>;
  run(): Promise<void>;
  close(force?: boolean): Promise<void>;
  on(event: string, fn: (...args: unknown[]) => void): unknown;
}
export interface BullMq {
  Queue: new (name: string, opts: Record<string, unknown>) => BullQueue;
  QueueEvents: new (name: string, opts: Record<string, unknown>) => BullQueueEvents;
  Worker: new (name: string, processor: (job: unknown) => Promise<unknown>, opts: Record<string, unknown>) => BullWorker;
}

export interface BeeJob {
  id: string;
  save(): Promise<BeeJob>;
  once(event: string, fn: (...args: unknown[]) => void): unknown;
}
export interface BeeQueue {
  ready(): Promise<unknown>;
  createJob(data: unknown): BeeJob;
  saveAll(jobs: BeeJob[]): Promise<Map<BeeJob, Error>>;
  process(concurrency: number, handler: (job: unknown) => Promise<unknown>): void;
  close(timeoutMs?: number): Promise<void>;
  on(event: string, fn: (...args: unknown[]) => void): unknown;
}
export type BeeQueueCtor = new (name: string, settings: Record<string, unknown>) => BeeQueue;

const BULLMQ = 'bullmq';
const BEE_QUEUE = 'bee-queue';

export async function loadBullmq(): Promise<BullMq> {
  return (await import(BULLMQ)) as BullMq;
}

export async function loadBeeQueue(): Promise<BeeQueueCtor> {
  const mod = (await import(BEE_QUEUE)) as { default: BeeQueueCtor };
  return mod.default;
}

/** Versions of the anchors as installed in bench/node_modules. */
export async function anchorVersion(pkg: 'bullmq' | 'bee-queue' | 'ioredis'): Promise<string> {
  try {
    const { createRequire } = await import('node:module');
    const require = createRequire(new URL('../package.json', import.meta.url));
    return (require(`${pkg}/package.json`) as { version: string }).version;
  } catch {
    return 'not installed';
  }
}

/** Queue names used by the anchors. */
export const BULL_QUEUE = 'bench';
export const BEE_QUEUE_NAME = 'bench';
