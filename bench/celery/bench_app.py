"""The Python Celery app of the benchmark: the no-op task `bench.noop`,
late ack (as Celeriac's bench app), results in the Redis backend, JSON.

Configured from BENCH_BROKER_URL and BENCH_BACKEND_URL. Prints BENCH-READY
on stdout when the worker is ready to consume.
"""
import os

from celery import Celery
from celery.signals import worker_ready

app = Celery('bench', broker=os.environ['BENCH_BROKER_URL'], backend=os.environ['BENCH_BACKEND_URL'])
app.conf.update(
    task_serializer='json',
    result_serializer='json',
    accept_content=['json'],
    task_acks_late=True,
    worker_prefetch_multiplier=4,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name='bench.noop')
def noop():
    return None


@worker_ready.connect
def _ready(**_kwargs):
    # Straight to fd 1: the worker redirects sys.stdout into its logger.
    os.write(1, ('BENCH-READY {"pid": %d}\n' % os.getpid()).encode())
