"""The client side of a Python Celery measurement. Usage:
client.py '<job JSON>' (the same job shape as clients/node-client.ts).
Prints one JSON line.

- enqueue serial: `noop.apply_async()` in a loop;
- enqueue inflight: k threads each calling `apply_async()` (Celery's
  publishing is synchronous; its producer pool is shared by the threads);
- enqueue bulk: `group(noop.s() for ...).apply_async()` per batch (Celery
  publishes a group's tasks one by one over one producer);
- latency: `noop.delay().get()`.
"""
import json
import math
import sys
import threading
import time

from celery import group

from bench_app import app, noop


def run_mode(mode, n, inflight, batch):
    if mode == 'serial':
        for _ in range(n):
            noop.apply_async()
    elif mode == 'inflight':
        counter = {'next': 0}
        lock = threading.Lock()

        def lane():
            while True:
                with lock:
                    if counter['next'] >= n:
                        return
                    counter['next'] += 1
                noop.apply_async()

        threads = [threading.Thread(target=lane) for _ in range(min(inflight, n))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        done = 0
        while done < n:
            k = min(batch, n - done)
            group(noop.s() for _ in range(k)).apply_async()
            done += k


def pct(sorted_values, p):
    rank = min(len(sorted_values), max(1, math.ceil(p / 100.0 * len(sorted_values))))
    return sorted_values[rank - 1]


def main():
    job = json.loads(sys.argv[1])
    op = job['op']
    if op == 'enqueue':
        mode, n = job['mode'], job['n']
        inflight, batch = job.get('inflight', 100), job.get('batch', 1000)
        if job.get('warmup'):
            run_mode(mode, job['warmup'], inflight, batch)
        c0 = time.process_time()
        t0 = time.perf_counter()
        run_mode(mode, n, inflight, batch)
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - c0
        print(json.dumps({'seconds': seconds, 'n': n, 'cpuMs': cpu * 1000}))
    elif op == 'latency':
        for _ in range(job.get('warmup', 0)):
            noop.delay().get(timeout=30)
        samples = []
        for _ in range(job['n']):
            t0 = time.perf_counter()
            noop.delay().get(timeout=30)
            samples.append((time.perf_counter() - t0) * 1000)
        s = sorted(samples)
        print(json.dumps({'n': len(s), 'p50': pct(s, 50), 'p95': pct(s, 95), 'p99': pct(s, 99), 'mean': sum(s) / len(s)}))
    else:
        raise SystemExit('unknown op %s' % op)
    sys.stdout.flush()


if __name__ == '__main__':
    try:
        main()
    except Exception as e:  # noqa: BLE001 - reported to the runner as JSON
        print(json.dumps({'error': '%s: %s' % (type(e).__name__, e)}))
        sys.exit(1)
