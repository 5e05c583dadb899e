"""Trace-context interop with Python Celery, on the real OpenTelemetry SDK.

The SDK (api, sdk, semantic conventions) comes from Debian's packages,
unpacked by scripts/setup-python-otel.sh and put on PYTHONPATH by the test.
opentelemetry-instrumentation-celery itself is in no Debian release and
PyPI is out of reach, so this script wires Celery's signals to the SDK the
way that instrumentation does:

* ``before_task_publish``: start a PRODUCER span ``apply_async/<task>``,
  make it current and ``inject()`` the context into the ``headers`` dict
  Celery publishes as the message headers; ``after_task_publish`` ends it;
* ``task_prerun``: ``extract()`` the context from ``task.request`` (a getter
  that reads attributes, as the instrumentation's), start a CONSUMER span
  ``run/<task>`` under it; ``task_postrun`` sets ``celery.state`` and ends it.

Spans go to the SDK's InMemorySpanExporter; the script prints what it
exported as JSON (one object per line, ``{"spans": [...]}``) so the Node
test reads them.

Usage:
  otel_trace.py send BROKER QUEUE TASK          -> {"id": ..., "spans": [...]}
  otel_trace.py worker BROKER BACKEND QUEUE     -> solo worker; a {"spans": [...]} line after each task
"""
import json
import sys

from celery import Celery
from celery.signals import after_task_publish, before_task_publish, task_postrun, task_prerun
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
trace.set_tracer_provider(PROVIDER)
TRACER = trace.get_tracer('celeriac-interop-harness')

mode = sys.argv[1]
app = Celery('otel_trace', broker=sys.argv[2], backend=sys.argv[3] if mode == 'worker' else None)
app.conf.update(enable_utc=True, timezone='UTC', worker_hijack_root_logger=False)

# Open spans by task id, with the token that made each current.
OPEN = {}


class RequestGetter(Getter):
    """Reads the carrier's attributes, as the instrumentation's getter reads task.request."""

    def get(self, carrier, key):
        value = getattr(carrier, key, None)
        if value is None:
            return None
        return value if isinstance(value, (list, tuple)) else [value]

    def keys(self, carrier):
        return []


def hexid(n, width):
    return format(n, '0%dx' % width)


def span_json(span):
    ctx = span.get_span_context()
    return {
        'name': span.name,
        'kind': span.kind.name,
        'traceId': hexid(ctx.trace_id, 32),
        'spanId': hexid(ctx.span_id, 16),
        'parentSpanId': hexid(span.parent.span_id, 16) if span.parent else None,
        'attributes': dict(span.attributes or {}),
    }


def dump(extra=None):
    out = dict(extra or {})
    out['spans'] = [span_json(s) for s in EXPORTER.get_finished_spans()]
    EXPORTER.clear()
    # The real stdout: a worker redirects sys.stdout into its log.
    sys.__stdout__.write(json.dumps(out) + '\n')
    sys.__stdout__.flush()


@before_task_publish.connect
def start_publish_span(sender=None, headers=None, routing_key=None, **_kwargs):
    task_id = (headers or {}).get('id')
    span = TRACER.start_span('apply_async/%s' % sender, kind=trace.SpanKind.PRODUCER, attributes={
        'celery.action': 'apply_async',
        'celery.task_name': sender,
        'messaging.message_id': task_id,
        'messaging.destination': routing_key or '',
    })
    token = otel_context.attach(trace.set_span_in_context(span))
    OPEN[('publish', task_id)] = (span, token)
    if headers is not None:
        propagate.inject(headers)


@after_task_publish.connect
def end_publish_span(sender=None, headers=None, **_kwargs):
    entry = OPEN.pop(('publish', (headers or {}).get('id')), None)
    if entry:
        span, token = entry
        otel_context.detach(token)
        span.end()


@task_prerun.connect
def start_run_span(task_id=None, task=None, **_kwargs):
    parent = propagate.extract(task.request, getter=RequestGetter())
    span = TRACER.start_span('run/%s' % task.name, context=parent, kind=trace.SpanKind.CONSUMER, attributes={
        'celery.action': 'run',
        'celery.task_name': task.name,
        'messaging.message_id': task_id,
    })
    token = otel_context.attach(trace.set_span_in_context(span))
    OPEN[('run', task_id)] = (span, token)


@task_postrun.connect
def end_run_span(task_id=None, state=None, **_kwargs):
    entry = OPEN.pop(('run', task_id), None)
    if entry:
        span, token = entry
        span.set_attribute('celery.state', state or '')
        otel_context.detach(token)
        span.end()
        dump({'task': task_id})


@app.task(bind=True, name='otel.python_trace')
def python_trace(self):
    # What the instrumentation's getter reads, for the test's own check of the carrier.
    return {key: getattr(self.request, key, None) for key in ('traceparent', 'tracestate')}


if mode == 'send':
    queue, task = sys.argv[3:5]
    # The Python application's own request span: the task's send is its child.
    with TRACER.start_as_current_span('python-request', kind=trace.SpanKind.SERVER):
        r = app.send_task(task, args=[], queue=queue)
    dump({'id': r.id})
elif mode == 'worker':
    queue = sys.argv[4]
    app.worker_main(['worker', '-P', 'solo', '-Q', queue, '-l', 'INFO', '-n', 'otelpy@localhost',
                     '--without-mingle', '--without-gossip', '--without-heartbeat'])
