/**
 * A Celeriac app on the in-memory broker and backend with a solo-pool
 * worker, for fast tests of worker semantics in one process.
 */
import { createApp, type App, type AppOptions } from '../../src/client/app.ts';
import { createMemoryBackend, type MemoryBackend } from '../../src/transport/memory/backend.ts';
import { createMemoryBroker, type MemoryBroker } from '../../src/transport/memory/broker.ts';
import { createLogger } from '../../src/observability/logging.ts';
import { createWorker, type WorkerHandle as Worker, type WorkerOptions } from '../../src/worker/worker.ts';

export interface MemoryFixture {
  app: App;
  broker: MemoryBroker;
  backend: MemoryBackend;
  logs: Array<Record<string, unknown>>;
  startWorker(options?: Partial<WorkerOptions>): Promise<Worker>;
  close(): Promise<void>;
}

/** Collects log lines as objects so tests can assert on them. */
export function captureLogger(level: 'debug' | 'info' | 'warn' = 'info') {
  const logs: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    level,
    destination: { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) } as never,
  });
  return { logger, logs };
}

export function memoryFixture(options: AppOptions = {}): MemoryFixture {
  const broker = createMemoryBroker();
  const backend = createMemoryBackend();
  const { logger, logs } = captureLogger();
  const app = createApp({ broker, backend, logger, ...options });
  const workers: Worker[] = [];
  return {
    app,
    broker,
    backend,
    logs,
    async startWorker(o = {}) {
      const w = createWorker({ app, pool: 'solo', concurrency: 4, shutdownTimeoutMs: 2000, ...o });
      await w.start();
      workers.push(w);
      return w;
    },
    async close() {
      await Promise.all(workers.map((w) => w.stop()));
      await app.close();
    },
  };
}
