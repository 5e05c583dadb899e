// The Beat view: celeriac beat's leader and each entry's last run, from
// GET /api/beat. Every value is put in as text (h() makes text nodes).
import { api, fmtTime, h, replace } from './dom.mjs';

/** @param {HTMLElement} main */
export async function beatView(main) {
  const b = await api('/api/beat');
  if (!b.available) {
    replace(main, h('h1', {}, 'Beat'), h('p', { class: 'muted', id: 'beat-unavailable' }, `celeriac beat's state (schedule ${b.namespace}) cannot be read: ${b.detail ?? 'unknown reason'}`));
    return;
  }
  const leader = b.leader
    ? h('p', { id: 'beat-leader' }, 'Leader: ', h('span', { class: 'mono' }, b.leader.holder), ` · fencing token ${b.leader.token} · lease until ${fmtTime(b.leader.expiresAt)}`)
    : h('p', { id: 'beat-leader', class: 'muted' }, 'No beat holds the lease: no periodic task is being sent.');
  replace(main,
    h('h1', {}, 'Beat'),
    h('p', { class: 'muted' }, `Schedule ${b.namespace}, state in ${b.where ?? '?'}`),
    leader,
    h('table', { class: 'grid', 'aria-label': 'Beat entries' },
      h('thead', {}, h('tr', {}, ...['Entry', 'Last run', 'Task id', 'Token', 'Sent', 'Passed over', 'Published'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, b.entries.map((e) =>
        h('tr', {},
          h('td', {}, e.name), h('td', {}, fmtTime(e.lastRun)),
          h('td', { class: 'mono' }, h('a', { href: `#/task/${encodeURIComponent(e.taskId)}` }, e.taskId)),
          h('td', {}, e.token), h('td', {}, e.total), h('td', {}, e.skipped),
          h('td', {}, e.confirmed ? 'yes' : 'not confirmed (the leader may have stopped before sending it)'),
        ))),
    ),
    b.entries.length === 0 ? h('p', { class: 'muted' }, 'No entry has run yet.') : null,
    h('p', { class: 'muted' }, 'The next run depends on the schedule in the beat\'s own module: see `celeriac beat status -A <module>`.'),
  );
}
