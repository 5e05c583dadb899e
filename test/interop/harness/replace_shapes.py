"""Print, as JSON, the messages Celery 5.2.6's Task.replace sends.

The replaced task's request is the one test/interop/redis/canvas-replace.test.ts
gives Celeriac's replacementOf(): a chord header part (index 2) in the middle
of a chain, with a callback and an errback. Nothing is published: the app's
send_task_message is swapped for a list, so no broker is needed.

Output: {"task": [message, ...], "chain": [message, ...]}, each message
{"task", "id", "parent_id", "root_id", "group", "group_index", "args", "embed"}.
"""
import json

from celery import Celery, chain
from celery._state import _task_stack
from celery.exceptions import Ignore

app = Celery('replace_shapes', broker='memory://', backend='cache+memory://')
sent = []
app.amqp.send_task_message = lambda producer, name, message, **kw: sent.append((name, message))


@app.task(bind=True, name='t.replacer')
def replacer(self):
    pass


ID = '11111111-1111-4111-8111-111111111111'
ROOT = '22222222-2222-4222-8222-222222222222'
GROUP = '33333333-3333-4333-8333-333333333333'
BODY = app.signature('t.tsum', task_id='44444444-4444-4444-8444-444444444444')
NEXT = app.signature('t.add', args=(10,), task_id='55555555-5555-4555-8555-555555555555')
AFTER = app.signature('t.add', args=(20,), task_id='66666666-6666-4666-8666-666666666666')


def replaced_by(sig):
    sent.clear()
    replacer.push_request(
        id=ID, root_id=ROOT, parent_id=ROOT, group=GROUP, group_index=2,
        chord=dict(BODY), chain=[dict(AFTER), dict(NEXT)],
        callbacks=[dict(app.signature('t.record'))], errbacks=[dict(app.signature('t.on_error'))],
        is_eager=False, called_directly=False,
    )
    # A task running in a worker is on the task stack: send_task reads parent_id from it.
    _task_stack.push(replacer)
    try:
        replacer.replace(sig)
    except Ignore:
        pass
    finally:
        _task_stack.pop()
        replacer.pop_request()
    return [
        {'task': name, 'id': m.headers['id'], 'parent_id': m.headers['parent_id'], 'root_id': m.headers['root_id'],
         'group': m.headers['group'], 'group_index': m.headers.get('group_index'), 'args': list(m.body[0]), 'embed': m.body[2]}
        for name, m in sent
    ]


print(json.dumps({
    'task': replaced_by(app.signature('t.add', args=(1, 100))),
    'chain': replaced_by(chain(app.signature('t.mul', args=(1, 2)), app.signature('t.add', args=(1,)))),
}))
