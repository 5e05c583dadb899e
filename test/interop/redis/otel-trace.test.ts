/**
 * Trace context across languages, on a private Redis: a trace started by a
 * Python Celery client continues in a Celeriac worker, and one started by
 * a Celeriac client continues in a Python Celery worker, with one trace id,
 * read from an in-memory exporter on both sides.
 *
 * The Python side runs the real OpenTelemetry SDK (Debian's packages,
 * unpacked by scripts/setup-python-otel.sh) with its InMemorySpanExporter.
 * opentelemetry-instrumentation-celery is in no Debian release and PyPI is
 * out of reach, so test/interop/harness/otel_trace.py connects Celery's
 * signals to the SDK where that instrumentation does (see its docstring).
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { trace } from '@opentelemetry/api';
import { createApp, type App } from '../../../src/client/app.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { createWorker, type WorkerHandle } from '../../../src/worker/worker.ts';
import { HARNESS_DIR, hasPythonOtel, PYTHON_OTEL_SITE } from '../../helpers/python-celery.ts';
import { installTestOtel, parentOf } from '../../helpers/otel.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery, PYTHON, requireService, sleep } from '../../helpers/services.ts';

const otel = installTestOtel();
const SCRIPT = `${HARNESS_DIR}otel_trace.py`;

/** A span as the Python harness prints it from the SDK's in-memory exporter. */
interface PySpan {
  name: string;
  kind: string;
  traceId: string;
  spanId: string;
  parentSpanId: string | null;
  attributes: Record<string, unknown>;
}

const PY_ENV = { ...process.env, PYTHONPATH: PYTHON_OTEL_SITE, PYTHONUNBUFFERED: '1' };

function pySend(broker: string, task: string): Promise<{ id: string; spans: PySpan[] }> {
  return new Promise((resolve, reject) => {
    execFile(PYTHON, [SCRIPT, 'send', broker, 'celery', task], { timeout: 30_000, cwd: HARNESS_DIR, env: PY_ENV }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`otel_trace.py send failed: ${err.message}\n${stderr}`));
      resolve(JSON.parse(stdout.trim().split('\n').pop()!) as { id: string; spans: PySpan[] });
    });
  });
}

/** The spans the Python worker exported for `taskId` (it prints them after each task). */
async function pyWorkerSpans(out: () => string, taskId: string, timeoutMs: number): Promise<PySpan[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const line of out().split('\n')) {
      if (!line.startsWith('{"task"')) continue;
      const parsed = JSON.parse(line) as { task: string; spans: PySpan[] };
      if (parsed.task === taskId) return parsed.spans;
    }
    if (Date.now() > deadline) throw new Error(`the Python worker exported no spans for ${taskId}:\n${out()}`);
    await sleep(50);
  }
}

describe('OpenTelemetry trace context: Python Celery ↔ Celeriac (Redis)', () => {
  const ready = hasRedisServer() && hasPythonCelery() && hasPythonOtel();
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
    py = spawn(PYTHON, [SCRIPT, 'worker', redis.url(2), redis.url(3), 'celery'], { cwd: HARNESS_DIR, stdio: ['ignore', 'pipe', 'pipe'], env: PY_ENV });
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
    if (!requireService(t, ready, 'redis-server, python3-celery and the Python OpenTelemetry SDK (scripts/setup-python-otel.sh)')) return;
    const { id, spans } = await pySend(redis!.url(0), 'otel.celeriac_trace');
    // Python's exporter: its request span and, under it, the send span the instrumentation makes.
    const request = spans.find((s) => s.name === 'python-request')!;
    const send = spans.find((s) => s.name === 'apply_async/otel.celeriac_trace')!;
    assert.ok(request && send, JSON.stringify(spans));
    assert.deepEqual([send.kind, send.traceId, send.parentSpanId, send.attributes['messaging.message_id'], send.attributes['celery.action']], ['PRODUCER', request.traceId, request.spanId, id, 'apply_async']);
    // Celeriac's exporter: the run span continues that trace, under Python's send span.
    const run = await otel.waitSpan('run/otel.celeriac_trace', 20_000, (s) => s.attributes['messaging.message_id'] === id);
    assert.equal(run.spanContext().traceId, send.traceId);
    assert.equal(parentOf(run), send.spanId);
    assert.equal(run.attributes['celery.state'], 'SUCCESS');
  });

  it('a trace started in a Celeriac client continues in a Python worker', async (t) => {
    if (!requireService(t, ready, 'redis-server, python3-celery and the Python OpenTelemetry SDK (scripts/setup-python-otel.sh)')) return;
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
      assert.equal(send.spanContext().traceId, traceId);
      // The carrier Python's task.request held: our send span, in our trace.
      assert.equal(seen.traceparent, `00-${traceId}-${send.spanContext().spanId}-01`);
      // Python's exporter: the run span is in the same trace, under our send span.
      const spans = await pyWorkerSpans(() => pyOut, taskId, 10_000);
      const run = spans.find((s) => s.name === 'run/otel.python_trace');
      assert.ok(run, JSON.stringify(spans));
      assert.deepEqual([run.kind, run.traceId, run.parentSpanId, run.attributes['celery.state'], run.attributes['messaging.message_id']], ['CONSUMER', traceId, send.spanContext().spanId, 'SUCCESS', taskId]);
    } finally {
      await client.close();
    }
  });
});
