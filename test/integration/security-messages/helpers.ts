/**
 * Shared material for the message-security tests: throwaway RSA signers
 * (key + self-signed certificate, generated at test time), key rings, and
 * apps on one in-memory "server" (a MemoryWorld shared by several brokers,
 * like processes sharing Redis).
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createApp, type App, type AppOptions } from '../../../src/client/app.ts';
import { createMemoryBackend, type MemoryBackend } from '../../../src/transport/memory/backend.ts';
import { createMemoryBroker, MemoryWorld, type MemoryBroker } from '../../../src/transport/memory/broker.ts';
import { celerySignerId } from '../../../src/codec/signing/index.ts';
import type { WireMessage } from '../../../src/protocol/types.ts';
import { createSelfSignedCertificate, type CertifiedKey } from '../../../src/secrets/x509.ts';
import { onSecurityEvent, type SecurityEvent } from '../../../src/observability/security-events.ts';
import { createWorker, type WorkerHandle } from '../../../src/worker/worker.ts';
import { captureLogger } from '../../helpers/app-fixture.ts';

/** An RSA signer written to a private directory: key (0600), certificate, and a store directory holding the certificate. */
export interface RsaSigner {
  dir: string;
  keyPath: string;
  certPath: string;
  storeDir: string;
  keyPem: string;
  certPem: string;
  signerId: string;
  certified: CertifiedKey;
  cleanup(): void;
}

/** Generate an RSA-2048 signer with a self-signed certificate (Celery `auth`). */
export async function makeRsaSigner(cn = 'celeriac-test-signer', extraStoreCerts: string[] = []): Promise<RsaSigner> {
  const certified = await createSelfSignedCertificate({ subject: [['C', 'XX'], ['O', 'Celeriac THROWAWAY TEST'], ['CN', cn]], rsaBits: 2048, validityDays: 2 });
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-sign-'));
  chmodSync(dir, 0o700);
  const keyPath = join(dir, 'key.pem');
  const certPath = join(dir, 'cert.pem');
  writeFileSync(keyPath, certified.keyPem, { mode: 0o600 });
  writeFileSync(certPath, certified.certPem, { mode: 0o644 });
  const storeDir = join(dir, 'store');
  mkdirSync(storeDir, { mode: 0o755 });
  writeFileSync(join(storeDir, 'signer.pem'), certified.certPem);
  extraStoreCerts.forEach((pem, i) => writeFileSync(join(storeDir, `extra-${i}.pem`), pem));
  return {
    dir,
    keyPath,
    certPath,
    storeDir,
    keyPem: certified.keyPem,
    certPem: certified.certPem,
    signerId: celerySignerId(certified.certificate.x509),
    certified,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Several apps on one in-memory server. */
export interface MemoryServer {
  world: MemoryWorld;
  backend: MemoryBackend;
  /** A new app (its own broker connection, like another process) on the shared queues and results. */
  app(options?: AppOptions): { app: App; broker: MemoryBroker; logs: Array<Record<string, unknown>> };
  /** Start a solo worker for an app. */
  worker(app: App, options?: { queues?: string[]; concurrency?: number }): Promise<WorkerHandle>;
  close(): Promise<void>;
}

export function memoryServer(): MemoryServer {
  const world = new MemoryWorld();
  const backend = createMemoryBackend();
  const apps: App[] = [];
  const workers: WorkerHandle[] = [];
  return {
    world,
    backend,
    app(options = {}) {
      const broker = createMemoryBroker({ world });
      const { logger, logs } = captureLogger();
      // Development (NODE_ENV=test, as `npm test` sets it) unless the test's own env names a mode: production is the default (config/mode.ts).
      const app = createApp({ broker, backend, logger, ...options, env: { NODE_ENV: 'test', ...options.env } });
      apps.push(app);
      return { app, broker, logs };
    },
    async worker(app, options = {}) {
      const w = createWorker({ app, pool: 'solo', concurrency: options.concurrency ?? 4, shutdownTimeoutMs: 2000, queues: options.queues });
      await w.start();
      workers.push(w);
      return w;
    },
    async close() {
      await Promise.all(workers.map((w) => w.stop()));
      await Promise.all(apps.map((a) => a.close()));
    },
  };
}

/** Collect security events while a test runs. */
export function collectEvents(): { events: SecurityEvent[]; stop: () => void; kinds: () => string[] } {
  const events: SecurityEvent[] = [];
  const stop = onSecurityEvent((e) => events.push(e));
  return { events, stop, kinds: () => events.map((e) => e.kind) };
}

/** A copy of a wire message (headers deep-copied, body copied). */
export function cloneWire(m: WireMessage): WireMessage {
  return { headers: structuredClone(m.headers), properties: structuredClone(m.properties), contentType: m.contentType, contentEncoding: m.contentEncoding, body: Buffer.from(m.body) };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Poll until `check` is true. */
export async function until(check: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

