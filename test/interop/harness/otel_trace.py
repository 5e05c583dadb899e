"""Trace-context interop with Python Celery, without the OpenTelemetry packages.

Debian has no python3-opentelemetry and PyPI is out of reach, so this script
does by hand exactly what opentelemetry-instrumentation-celery does with
the context, at the same places:

* client: a ``before_task_publish`` handler writes ``traceparent`` (and
  ``tracestate``) into the ``headers`` dict Celery publishes as the message
  headers (the instrumentation calls ``inject(headers)`` there);
* worker: the task reads them back with ``getattr(task.request, key)``
  (the instrumentation's getter does the same in ``task_prerun``).

Usage:
  otel_trace.py send BROKER QUEUE TASK TRACEPARENT TRACESTATE   -> prints {"id": ...}
  otel_trace.py worker BROKER BACKEND QUEUE                      -> runs a solo worker
"""
import json
import sys

from celery import Celery
from celery.signals import before_task_publish

mode = sys.argv[1]
app = Celery('otel_trace', broker=sys.argv[2], backend=sys.argv[3] if mode == 'worker' else None)
app.conf.update(enable_utc=True, timezone='UTC', worker_hijack_root_logger=False)

TRACE = {}


@before_task_publish.connect
def inject_trace_context(sender=None, headers=None, **_kwargs):
    # The same dict the instrumentation's propagator writes into.
    if headers is not None:
        headers.update(TRACE)


@app.task(bind=True, name='otel.python_trace')
def python_trace(self):
    return {key: getattr(self.request, key, None) for key in ('traceparent', 'tracestate')}


if mode == 'send':
    queue, task, traceparent, tracestate = sys.argv[3:7]
    TRACE.update(traceparent=traceparent, tracestate=tracestate)
    r = app.send_task(task, args=[], queue=queue)
    print(json.dumps({'id': r.id}))
elif mode == 'worker':
    queue = sys.argv[4]
    app.worker_main(['worker', '-P', 'solo', '-Q', queue, '-l', 'INFO', '-n', 'otelpy@localhost',
                     '--without-mingle', '--without-gossip', '--without-heartbeat'])
