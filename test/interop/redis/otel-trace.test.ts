/**
 * Trace context across languages, on a private Redis: a trace started by a
 * Python Celery client continues in a Celeriac worker, and one started by
 * a Celeriac client reaches a Python Celery worker, with one trace id.
 *
 * The Python side cannot run opentelemetry-instrumentation-celery here (no
 * Debian package; PyPI unreachable), so test/interop/harness/otel_trace.py
 * writes and reads `traceparent`/`tracestate` exactly where that
 * instrumentation does (see the script's docstring). The Celeriac side is
 * the real thing, read from the in-memory exporter.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { trace } from '@opentelemetry/api';
import { createApp, type App } from '../../../src/client/app.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { createWorker, type WorkerHandle } from '../../../src/worker/worker.ts';
import { HARNESS_DIR } from '../../helpers/python-celery.ts';
import { installTestOtel, parentOf } from '../../helpers/otel.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery, PYTHON, requireService, sleep } from '../../helpers/services.ts';

const otel = installTestOtel();
const SCRIPT = `${HARNESS_DIR}otel_trace.py`;

function pySend(broker: string, task: string, traceparent: string, tracestate: string): Promise<{ id: string }> {
  return new Promise((resolve, reject) => {
    execFile(PYTHON, [SCRIPT, 'send', broker, 'celery', task, traceparent, tracestate], { timeout: 30_000, cwd: HARNESS_DIR }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`otel_trace.py send failed: ${err.message}\n${stderr}`));
      resolve(JSON.parse(stdout.trim().split('\n').pop()!) as { id: string });
    });
  });
}

describe('OpenTelemetry trace context: Python Celery ↔ Celeriac (Redis)', () => {
  const ready = hasRedisServer() && hasPythonCelery();
  let redis: RedisServer | undefined;
  let app: App | undefined;
  let worker: WorkerHandle | undefined;
  let py: ChildProcess | undefined;
  let pyOut = '';
  const logger = createLogger({ level: 'warn' });

  before(async () => {
    if (!ready) return;
    redis = await startRedisServer();
    // Celeriac worker on db 0 (queue `celery`); Python worker on db 2.
    app = createApp({ brokerUrl: redis.url(0), resultBackend: redis.url(1), telemetryTracing: true, logger });
    app.task('otel.celeriac_trace', () => 'ran in Celeriac');
    worker = createWorker({ app, pool: 'solo', concurrency: 2, shutdownTimeoutMs: 3000 });
    await worker.start();
    py = spawn(PYTHON, [SCRIPT, 'worker', redis.url(2), redis.url(3), 'celery'], { cwd: HARNESS_DIR, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PYTHONUNBUFFERED: '1' } });
    py.stdout?.on('data', (d: Buffer) => (pyOut += d.toString()));
    py.stderr?.on('data', (d: Buffer) => (pyOut += d.toString()));
    const deadline = Date.now() + 30_000;
    while (!/ready\./.test(pyOut)) {
      if (py.exitCode !== null || Date.now() > deadline) throw new Error(`python worker not ready:\n${pyOut}`);
      await sleep(50);
    }
  });
  after(async () => {
    await worker?.stop();
    await app?.close();
    if (py && py.exitCode === null) {
      const exited = new Promise((r) => py!.once('exit', r));
      py.kill('SIGTERM');
      await Promise.race([exited, sleep(10_000)]);
      if (py.exitCode === null) py.kill('SIGKILL');
    }
    await redis?.stop();
  });

  it('a trace started in a Python client continues in a Celeriac worker', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const traceId = randomBytes(16).toString('hex');
    const spanId = randomBytes(8).toString('hex');
    const { id } = await pySend(redis!.url(0), 'otel.celeriac_trace', `00-${traceId}-${spanId}-01`, 'python=1');
    const run = await otel.waitSpan('run/otel.celeriac_trace', 20_000, (s) => s.attributes['messaging.message_id'] === id);
    assert.equal(run.spanContext().traceId, traceId);
    assert.equal(parentOf(run), spanId);
    assert.equal(run.spanContext().traceState?.get('python'), '1');
    assert.equal(run.attributes['celery.state'], 'SUCCESS');
  });

  it('a trace started in a Celeriac client reaches a Python worker', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const client = createApp({ brokerUrl: redis!.url(2), resultBackend: redis!.url(3), telemetryTracing: true, logger });
    try {
      const tracer = trace.getTracer('test');
      const { traceId, seen, taskId } = await tracer.startActiveSpan('request', async (span) => {
        const r = await client.sendTask<{ traceparent: string | null; tracestate: string | null }>('otel.python_trace');
        const seen = await r.get({ timeoutMs: 20_000 });
        span.end();
        return { traceId: span.spanContext().traceId, seen, taskId: r.id };
      });
      const send = await otel.waitSpan('apply_async/otel.python_trace', 5000, (s) => s.attributes['messaging.message_id'] === taskId);
      // What Python's task.request carried: our send span, in our trace.
      assert.equal(seen.traceparent, `00-${traceId}-${send.spanContext().spanId}-01`);
    } finally {
      await client.close();
    }
  });
});
