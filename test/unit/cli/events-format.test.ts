/**
 * `celeriac events` formatting: Python's datetime text for `--dump`
 * (expected values printed by Python 3's `str(datetime.utcfromtimestamp(t))`),
 * Celery's dump layout, control characters neutralised, the live view.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createDumper, plainLine, pyUtcTimestamp, renderView, safe } from '../../../src/cli/events-format.ts';
import { createEventState } from '../../../src/client/events/state.ts';
import type { CeleryEvent } from '../../../src/client/events/types.ts';
import { readVector } from '../../helpers/fixtures.ts';

// [timestamp, Python's str(datetime.utcfromtimestamp(timestamp))]
const PY_TIMES: Array<[number, string]> = [
  [1795501012.3553057, '2026-11-24 06:16:52.355306'], [1795501005.28487, '2026-11-24 06:16:45.284870'], [1795501012.0, '2026-11-24 06:16:52'],
  [1795501012.9999995, '2026-11-24 06:16:53'], [1795501012.0000005, '2026-11-24 06:16:52'], [1795501012.0000014, '2026-11-24 06:16:52.000001'],
  [1700000000.5000005, '2023-11-14 22:13:20.500000'], [1795501032.3832765, '2026-11-24 06:17:12.383276'], [1795501015.0849173, '2026-11-24 06:16:55.084917'],
  [1795501065.0934472, '2026-11-24 06:17:45.093447'], [1795501007.2436287, '2026-11-24 06:16:47.243629'], [1795501053.5882003, '2026-11-24 06:17:33.588200'],
  [1795501036.5688918, '2026-11-24 06:17:16.568892'], [1795501005.7998924, '2026-11-24 06:16:45.799892'], [1795501050.7435734, '2026-11-24 06:17:30.743573'],
  [1795501003.7495658, '2026-11-24 06:16:43.749566'], [1795501043.3645685, '2026-11-24 06:17:23.364568'], [1795501006.9855423, '2026-11-24 06:16:46.985542'],
  [1795501009.0713012, '2026-11-24 06:16:49.071301'], [1795501042.4519188, '2026-11-24 06:17:22.451919'],
];

const vector = (type: string): CeleryEvent => ({ ...readVector<{ event: Record<string, unknown> }>(`events/${type}.json`).event, local_received: 1795501012.5 }) as CeleryEvent;

describe('celeriac events formatting', () => {
  it('prints times as Python does', () => {
    for (const [t, py] of PY_TIMES) assert.equal(pyUtcTimestamp(t), py, String(t));
  });

  it('dumps as celery events --dump: humanised type, sorted fields, task name remembered from task-received', () => {
    const dump = createDumper();
    assert.equal(
      dump(vector('worker-heartbeat')),
      'pyworker@localhost [2026-11-24 06:16:54.349283] heartbeat: active=0, clock=60, freq=2.0, loadavg=[1.16, 0.97, 0.5], local_received=1795501012.5, pid=14480, processed=18, sw_ident=py-celery, sw_sys=Linux, sw_ver=5.2.6, utcoffset=0',
    );
    // os.getloadavg() gives floats: a whole 3.0 is printed as Python prints it (it arrives as 3 in JSON).
    assert.match(dump({ ...vector('worker-heartbeat'), loadavg: [3, 2.39, 0] } as CeleryEvent), /loadavg=\[3\.0, 2\.39, 0\.0\],/);
    const received = vector('task-received');
    assert.match(dump(received), /^pyworker@localhost \[[^\]]+\] task received: tasks\.add\(2d0acf73-4aec-4c50-95cf-7026e8379ac0\) args=\(2, 3\) kwargs=\{\} clock=2, eta=None, expires=None, local_received=1795501012\.5, parent_id=None, pid=14480, retries=0, root_id=2d0acf73-4aec-4c50-95cf-7026e8379ac0, utcoffset=0$/);
    assert.match(dump(vector('task-succeeded')), /\] task succeeded: tasks\.add\(2d0acf73-[^)]+\) args=\(2, 3\) kwargs=\{\} clock=16, local_received=1795501012\.5, pid=14480, result=5, runtime=0\.015446814999904745, utcoffset=0$/);
    assert.match(dump(vector('task-revoked')), /\] task revoked:  clock=20, expired=True, local_received=1795501012\.5, pid=14480, signum=None, terminated=False, utcoffset=0$/);
  });

  it('neutralises control characters and bidi overrides from untrusted text', () => {
    assert.equal(safe('a\u001b[2Jb\u202ec\n'), 'a\\u001b[2Jb\\u202ec\\u000a');
    const line = plainLine({ ...vector('task-failed'), hostname: 'x\u0007y', exception: 'E\u001b]0;title\u0007' } as CeleryEvent);
    assert.ok(!/[\u0000-\u001f]/.test(line), line);
    const dumped = createDumper()({ ...vector('worker-online'), sw_ident: '\u001b[31mred' } as CeleryEvent);
    assert.ok(!/[\u0000-\u001f]/.test(dumped), dumped);
  });

  it('renders the live view: workers with status, counts by state, rates, last tasks', () => {
    const s = createEventState();
    const now = 1795501013;
    for (const t of ['worker-online', 'task-received', 'task-started', 'task-succeeded', 'task-failed']) s.apply({ ...vector(t), local_received: now - 1 } as CeleryEvent);
    const lines = renderView(s, now, { source: 'redis://localhost:6379/0', received: 5, malformed: 1, dropped: 0, lastTasks: 5, width: 200 });
    const text = lines.join('\n');
    assert.match(text, /events 5, malformed 1/);
    assert.match(text, /pyworker@localhost\s+ONLINE\s+0\s+0\s+1\.26 0\.99 0\.50\s+py-celery 5\.2\.6/);
    assert.match(text, /SUCCESS 1\s+FAILURE 1/);
    assert.match(text, /tasks\.add\s+1\s+1\s+0\s+0\s+0\.1/);
    assert.match(text, /2d0acf73-4aec-4c50-95cf-7026e8379ac0 tasks\.add\s+SUCCESS/);
    assert.match(text, /024b5d3e-3f5f-48a1-88c7-9a55dcc31941\s+FAILURE .*ValueError\('bad value'\)/);
    assert.ok(lines.every((l) => l.length <= 200));
    assert.match(renderView(s, now + 10, { source: 's', received: 5, malformed: 0, dropped: 0, lastTasks: 5, width: 80 }).join('\n'), /pyworker@localhost\s+OFFLINE/);
  });
});
