// Workers, tasks, task detail and queues views. Every value from a task or a
// worker goes into the page as text (h() children / textContent).
import { api, badge, fmtAge, fmtTime, h, replace, toast } from './dom.mjs';

/** Run an action and report its outcome. */
async function act(label, path, body, after) {
  try {
    const r = await api(path, { method: 'POST', body });
    toast(`${label}: ${r.message ?? 'done'}`, r.ok === false ? 'error' : 'info');
    after?.();
  } catch (err) {
    toast(`${label} refused: ${err.message}`, 'error');
  }
}

const can = (me, p) => me.permissions.includes(p);

// ---- workers ---------------------------------------------------------------
export async function workersView(main, me) {
  const { workers } = await api('/api/workers');
  const now = Date.now() / 1000;
  const rows = workers.map((w) =>
    h('tbody', {},
      h('tr', {},
        h('td', {}, h('button', { type: 'button', class: 'link', 'aria-expanded': 'false', onclick: (e) => toggle(e.currentTarget) }, w.hostname)),
        h('td', {}, h('span', { class: `badge ${w.status === 'online' ? 'success' : 'failure'}` }, w.status)),
        h('td', {}, w.lastHeartbeat ? `${fmtAge(now - w.lastHeartbeat)} ago` : '—'),
        h('td', {}, w.software ?? ''),
        h('td', { class: 'num' }, w.pool ? `${w.pool.live ?? '?'}/${w.pool.target ?? '?'} ${w.pool.kind ?? ''}` : ''),
        h('td', { class: 'num' }, (w.loadavg ?? []).map((x) => Number(x).toFixed(2)).join(' ')),
        h('td', { class: 'num' }, w.active),
        h('td', { class: 'num' }, w.processed),
        h('td', { class: 'num' }, w.failed),
      ),
      h('tr', { class: 'detail', hidden: true }, h('td', { colspan: 9 }, workerDetail(w, me))),
    ),
  );
  function toggle(btn) {
    const detail = btn.closest('tbody').querySelector('tr.detail');
    detail.hidden = !detail.hidden;
    btn.setAttribute('aria-expanded', String(!detail.hidden));
  }
  replace(main,
    h('h1', {}, 'Workers'),
    h('table', { class: 'grid', 'aria-label': 'Workers' },
      h('thead', {}, h('tr', {}, ...['Worker', 'Status', 'Heartbeat', 'Software', 'Pool', 'Load', 'Active', 'Processed', 'Failed'].map((c) => h('th', { scope: 'col' }, c)))),
      ...rows,
    ),
    workers.length === 0 ? h('p', { class: 'muted' }, 'No worker has reported yet (workers send events when started with -E / task events on).') : null,
    can(me, 'operate') ? rateLimitForm(workers) : null,
  );
}

function workerDetail(w, me) {
  const list = (title, items) => h('div', {}, h('h3', {}, title), items && items.length ? h('ul', {}, items.map((x) => h('li', {}, x))) : h('p', { class: 'muted' }, items ? 'none' : 'not known yet'));
  const taskList = (title, tasks) => list(title, tasks?.map((t) => h('span', {}, h('a', { href: `#/task/${encodeURIComponent(t.id)}` }, t.id.slice(0, 8)), ' ', t.name ?? '')));
  const admin = can(me, 'admin');
  const refresh = () => location.hash.startsWith('#/workers') && window.dispatchEvent(new HashChangeEvent('hashchange'));
  const queueInput = h('input', { type: 'text', placeholder: 'queue', 'aria-label': 'queue name', maxlength: 255 });
  return h('div', { class: 'cols' },
    taskList('Active tasks', w.activeTasks),
    taskList('Reserved tasks', w.reservedTasks),
    list('Queues consumed', w.queues),
    list('Registered tasks', w.registered),
    admin
      ? h('div', { class: 'actions' },
          h('h3', {}, 'Admin'),
          h('button', { type: 'button', onclick: () => act('pool grow', `/api/workers/${encodeURIComponent(w.hostname)}/pool`, { delta: 1 }, refresh) }, 'Pool +1'),
          h('button', { type: 'button', onclick: () => act('pool shrink', `/api/workers/${encodeURIComponent(w.hostname)}/pool`, { delta: -1 }, refresh) }, 'Pool −1'),
          h('div', {}, queueInput,
            h('button', { type: 'button', onclick: () => queueInput.value && act('add consumer', `/api/workers/${encodeURIComponent(w.hostname)}/consumers`, { queue: queueInput.value, action: 'add' }, refresh) }, 'Add consumer'),
            h('button', { type: 'button', onclick: () => queueInput.value && act('cancel consumer', `/api/workers/${encodeURIComponent(w.hostname)}/consumers`, { queue: queueInput.value, action: 'cancel' }, refresh) }, 'Cancel consumer')),
          h('button', { type: 'button', class: 'danger', onclick: () => confirm(`Shut down ${w.hostname}?`) && act('shutdown', `/api/workers/${encodeURIComponent(w.hostname)}/shutdown`, undefined, refresh) }, 'Shut down'),
        )
      : null,
  );
}

function rateLimitForm(workers) {
  const task = h('input', { type: 'text', required: true, 'aria-label': 'task name', placeholder: 'task name', list: 'task-names', maxlength: 255 });
  const rate = h('input', { type: 'text', required: true, 'aria-label': 'rate', placeholder: '10/m', pattern: '[0-9]+(\\.[0-9]+)?(/[smh])?', size: 8 });
  const worker = h('select', { 'aria-label': 'worker' }, h('option', { value: '' }, 'all workers'), workers.map((w) => h('option', { value: w.hostname }, w.hostname)));
  return h('form', { class: 'inline', onsubmit: (e) => (e.preventDefault(), act('rate limit', '/api/rate-limit', { task: task.value, rate: rate.value, ...(worker.value ? { worker: worker.value } : {}) })) },
    h('h2', {}, 'Rate limit'), task, rate, worker, h('button', { type: 'submit' }, 'Set'));
}

// ---- tasks -----------------------------------------------------------------
const taskFilters = { id: '', name: '', state: '', worker: '', from: '', to: '' };
let cursors = [''];

export async function tasksView(main, me, params) {
  if (params.reset) cursors = [''];
  const page = cursors.length - 1;
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(taskFilters)) {
    if (!v) continue;
    q.set(k, k === 'from' || k === 'to' ? String(Math.floor(new Date(v).getTime() / 1000)) : v);
  }
  q.set('limit', '50');
  if (cursors[page]) q.set('cursor', cursors[page]);
  const [data, names, workers] = await Promise.all([api(`/api/tasks?${q}`), api('/api/task-names'), api('/api/workers')]);
  const field = (key, props) => h('label', {}, props['aria-label'], h('input', { ...props, value: taskFilters[key], oninput: (e) => (taskFilters[key] = e.target.value) }));
  const state = h('select', { onchange: (e) => (taskFilters.state = e.target.value) },
    ['', 'PENDING', 'RECEIVED', 'STARTED', 'SUCCESS', 'FAILURE', 'RETRY', 'REVOKED', 'REJECTED'].map((s) => h('option', { value: s, selected: taskFilters.state === s }, s || 'any state')));
  const worker = h('select', { onchange: (e) => (taskFilters.worker = e.target.value) },
    h('option', { value: '' }, 'any worker'), workers.workers.map((w) => h('option', { value: w.hostname, selected: taskFilters.worker === w.hostname }, w.hostname)));
  const go = () => tasksView(main, me, { reset: true });
  replace(main,
    h('h1', {}, 'Tasks'),
    h('form', { class: 'filters', role: 'search', onsubmit: (e) => (e.preventDefault(), go()) },
      field('id', { type: 'search', 'aria-label': 'Task id', id: 'filter-id', placeholder: 'id', maxlength: 200 }),
      field('name', { type: 'search', 'aria-label': 'Name', placeholder: 'name contains', list: 'task-names', maxlength: 255 }),
      h('label', {}, 'State', state), h('label', {}, 'Worker', worker),
      field('from', { type: 'datetime-local', 'aria-label': 'From' }),
      field('to', { type: 'datetime-local', 'aria-label': 'To' }),
      h('button', { type: 'submit' }, 'Filter'),
      h('button', { type: 'button', onclick: () => (Object.keys(taskFilters).forEach((k) => (taskFilters[k] = '')), go()) }, 'Clear'),
    ),
    h('datalist', { id: 'task-names' }, names.names.map((n) => h('option', { value: n }))),
    h('p', { class: 'muted', id: 'task-count' }, `${data.totalIsEstimate ? '≈' : ''}${data.total} task(s) · page ${page + 1}`),
    h('table', { class: 'grid', 'aria-label': 'Tasks' },
      h('thead', {}, h('tr', {}, ...['Id', 'Name', 'State', 'Worker', 'Received', 'Runtime', 'Args', 'Result / exception'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, data.items.map((t) =>
        h('tr', {},
          h('td', { class: 'mono' }, h('a', { href: `#/task/${encodeURIComponent(t.id)}`, title: t.id }, t.id.slice(0, 8))),
          h('td', {}, t.name ?? ''),
          h('td', {}, badge(t.state)),
          h('td', {}, t.worker ?? ''),
          h('td', {}, fmtTime(t.received ?? t.sent)),
          h('td', { class: 'num' }, t.runtime !== undefined ? `${Number(t.runtime).toFixed(3)}s` : ''),
          h('td', { class: 'mono clip' }, t.args ?? ''),
          h('td', { class: 'mono clip' }, t.exception ?? t.result ?? ''),
        ))),
    ),
    h('nav', { class: 'pager', 'aria-label': 'Pages' },
      h('button', { type: 'button', disabled: page === 0, onclick: () => (cursors.pop(), tasksView(main, me, {})) }, '← Newer'),
      h('button', { type: 'button', disabled: !data.nextCursor, onclick: () => (cursors.push(data.nextCursor), tasksView(main, me, {})) }, 'Older →'),
    ),
  );
}

// ---- task detail -----------------------------------------------------------
export async function taskView(main, me, params) {
  const id = params.id;
  const clear = params.clear === true;
  const t = await api(`/api/tasks/${encodeURIComponent(id)}${clear ? '?clear=1' : ''}`);
  const refresh = (c = clear) => taskView(main, me, { id, clear: c });
  const link = (x) => (x ? h('a', { href: `#/task/${encodeURIComponent(x)}`, class: 'mono' }, x) : '—');
  const dl = (pairs) => h('dl', { class: 'kv' }, pairs.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v === undefined || v === null || v === '' ? '—' : v)]));
  const block = (title, text) => (text === undefined || text === null ? null : h('section', {}, h('h2', {}, title), h('pre', { class: 'payload', tabindex: 0 }, text)));
  const operate = can(me, 'operate');
  replace(main,
    h('p', {}, h('a', { href: '#/tasks' }, '← Tasks')),
    h('h1', {}, t.name ?? 'task', ' ', badge(t.state)),
    h('div', { class: 'actions' },
      operate ? h('button', { type: 'button', id: 'revoke', onclick: () => act('revoke', `/api/tasks/${encodeURIComponent(id)}/revoke`, {}, () => refresh()) }, 'Revoke') : null,
      operate ? h('button', { type: 'button', class: 'danger', onclick: () => confirm('Terminate the running task (SIGTERM)?') && act('terminate', `/api/tasks/${encodeURIComponent(id)}/revoke`, { terminate: true, signal: 'SIGTERM' }, () => refresh()) }, 'Terminate') : null,
      operate && ['FAILURE', 'REVOKED', 'REJECTED'].includes(t.state) ? h('button', { type: 'button', onclick: () => act('retry', `/api/tasks/${encodeURIComponent(id)}/retry`, undefined, () => refresh()) }, 'Retry') : null,
      can(me, 'view-clear')
        ? h('button', { type: 'button', id: 'toggle-clear', onclick: () => refresh(!clear) }, clear ? 'Hide clear text' : 'Show args/result in clear (audited)')
        : null,
    ),
    dl([
      ['Id', h('span', { class: 'mono' }, t.id)], ['Worker', t.worker], ['Sent', fmtTime(t.sent)], ['Received', fmtTime(t.received)], ['Started', fmtTime(t.started)],
      ['Finished', fmtTime(t.finished)], ['Runtime', t.runtime !== undefined ? `${t.runtime}s` : undefined], ['Retries', t.retries], ['ETA', t.eta], ['Expires', t.expires],
      ['Root', link(t.rootId)], ['Parent', link(t.parentId)], ['Group', t.groupId], ['Children', t.children.length ? h('span', {}, t.children.map((c) => [link(c), ' '])) : undefined],
    ]),
    h('p', { class: 'muted' }, clear ? 'Shown in clear text; this view was written to the audit log.' : 'Arguments and results are redacted.'),
    block('Args', t.args), block('Kwargs', t.kwargs), block('Result', t.result), block('Exception', t.exception), block('Traceback', t.traceback),
    h('section', {}, h('h2', {}, 'Timeline'),
      h('table', { class: 'grid', 'aria-label': 'Timeline' },
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Time'), h('th', { scope: 'col' }, 'Event'), h('th', { scope: 'col' }, 'Worker'), h('th', { scope: 'col' }, 'Fields'))),
        h('tbody', {}, t.timeline.map((e) => h('tr', {}, h('td', {}, fmtTime(e.timestamp)), h('td', {}, e.type), h('td', {}, e.worker ?? ''), h('td', { class: 'mono clip' }, JSON.stringify(e.fields))))))),
  );
}

// ---- queues ----------------------------------------------------------------
export async function queuesView(main, me) {
  const { queues } = await api('/api/queues');
  const operate = can(me, 'operate');
  const refresh = () => queuesView(main, me);
  const dlqBox = h('section', { id: 'dead-letters' });
  async function showDead(name, clear = false) {
    const { deadLetters } = await api(`/api/queues/${encodeURIComponent(name)}/dead-letters${clear ? '?clear=1' : ''}`);
    replace(dlqBox,
      h('h2', {}, 'Dead letters of ', h('span', { class: 'mono' }, name)),
      operate && deadLetters.length
        ? h('div', { class: 'actions' },
            h('button', { type: 'button', onclick: () => act('redrive all', `/api/queues/${encodeURIComponent(name)}/dead-letters/redrive`, {}, () => showDead(name)) }, 'Redrive all'),
            h('button', { type: 'button', class: 'danger', onclick: () => confirm(`Drop every dead letter of ${name}?`) && act('drop all', `/api/queues/${encodeURIComponent(name)}/dead-letters/drop`, {}, () => showDead(name)) }, 'Drop all'))
        : null,
      can(me, 'view-clear') ? h('button', { type: 'button', onclick: () => showDead(name, !clear) }, clear ? 'Hide clear text' : 'Show args in clear (audited)') : null,
      h('table', { class: 'grid', 'aria-label': 'Dead letters' },
        h('thead', {}, h('tr', {}, ...['Id', 'Name', 'Reason', 'When', 'Args', ''].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, deadLetters.map((d) =>
          h('tr', {},
            h('td', { class: 'mono' }, d.id), h('td', {}, d.name ?? ''), h('td', {}, d.reason), h('td', {}, fmtTime(d.at)), h('td', { class: 'mono clip' }, d.args ?? ''),
            h('td', {}, operate
              ? [h('button', { type: 'button', onclick: () => act('redrive', `/api/queues/${encodeURIComponent(name)}/dead-letters/redrive`, { ids: [d.id] }, () => showDead(name)) }, 'Redrive'),
                 h('button', { type: 'button', class: 'danger', onclick: () => act('drop', `/api/queues/${encodeURIComponent(name)}/dead-letters/drop`, { ids: [d.id] }, () => showDead(name)) }, 'Drop')]
              : null),
          ))),
      ),
      deadLetters.length === 0 ? h('p', { class: 'muted' }, 'No dead letters.') : null,
    );
  }
  replace(main,
    h('h1', {}, 'Queues'),
    h('table', { class: 'grid', 'aria-label': 'Queues' },
      h('thead', {}, h('tr', {}, ...['Queue', 'Depth', 'In /s', 'Out /s', 'Oldest', 'Dead letters', 'State', 'Consumers', ''].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, queues.map((q) =>
        h('tr', {},
          h('td', { class: 'mono' }, q.name), h('td', { class: 'num' }, q.depth), h('td', { class: 'num' }, q.rateIn.toFixed(2)), h('td', { class: 'num' }, q.rateOut.toFixed(2)),
          h('td', { class: 'num' }, fmtAge(q.oldestAgeSeconds)),
          h('td', { class: 'num' }, h('button', { type: 'button', class: 'link', onclick: () => showDead(q.name) }, String(q.deadLetters))),
          h('td', {}, q.paused ? h('span', { class: 'badge retry' }, 'paused') : h('span', { class: 'badge success' }, 'consuming')),
          h('td', {}, q.consumers.join(', ')),
          h('td', {}, operate
            ? q.paused
              ? h('button', { type: 'button', onclick: () => act('resume', `/api/queues/${encodeURIComponent(q.name)}/resume`, undefined, refresh) }, 'Resume')
              : h('button', { type: 'button', onclick: () => act('pause', `/api/queues/${encodeURIComponent(q.name)}/pause`, undefined, refresh) }, 'Pause')
            : null),
        ))),
    ),
    dlqBox,
  );
}
