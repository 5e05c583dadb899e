"""Extra tasks for the task-model interop tests (loaded with --include).

tm.progress(steps, pause)  update_state('PROGRESS', {current, total}) per step
tm.request()                what the worker saw: custom headers, time limits,
                            retries, reply_to, shadow (from self.request)
"""
import time

from harness_tasks import app


@app.task(name='tm.progress', bind=True)
def progress(self, steps, pause):
    for i in range(1, steps + 1):
        self.update_state(state='PROGRESS', meta={'current': i, 'total': steps})
        time.sleep(pause)
    return 'done'


@app.task(name='tm.request', bind=True)
def request(self):
    r = self.request
    return {
        'retries': r.retries,
        'timelimit': list(r.timelimit) if r.timelimit else None,
        'reply_to': r.reply_to,
        'shadow': getattr(r, 'shadow', None),
        'x_tenant': getattr(r, 'x_tenant', None),
        'headers': {k: v for k, v in (r.headers or {}).items() if k.startswith('x_')} if isinstance(r.headers, dict) else None,
    }
