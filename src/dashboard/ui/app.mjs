// The dashboard's entry: login, the hash router, navigation, live updates
// (SSE) and keyboard shortcuts. No build step: plain ES modules.
import { api, ApiError, h, replace, setCsrf, toast } from './dom.mjs';
import { chartsView } from './charts.mjs';
import { queuesView, tasksView, taskView, workersView } from './views.mjs';
import { auditView, usersView } from './admin.mjs';
import { beatView } from './beat.mjs';

const main = document.getElementById('main');
const top = document.getElementById('top');
let me;

const VIEWS = [
  { key: 'w', path: 'workers', label: 'Workers', render: workersView },
  { key: 't', path: 'tasks', label: 'Tasks', render: tasksView },
  { key: 'q', path: 'queues', label: 'Queues', render: queuesView },
  { key: 'c', path: 'charts', label: 'Charts', render: chartsView },
  { key: 'b', path: 'beat', label: 'Beat', render: beatView },
  { key: 'a', path: 'audit', label: 'Audit', render: auditView, permission: 'admin' },
  { key: 'u', path: 'users', label: 'Users', render: usersView, permission: 'admin' },
];

async function loginView() {
  top.hidden = true;
  const methods = await api('/api/auth-methods').catch(() => ({ password: true, oidc: false }));
  const user = h('input', { id: 'username', name: 'username', autocomplete: 'username', required: true, maxlength: 64, autofocus: true });
  const pass = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const error = h('p', { class: 'error', role: 'alert', id: 'login-error' });
  replace(main,
    h('section', { class: 'login' },
      h('h1', {}, 'Celeriac dashboard'),
      methods.password
        ? h('form', { id: 'login-form', onsubmit: async (e) => {
            e.preventDefault();
            error.textContent = '';
            try {
              await api('/api/login', { method: 'POST', body: { username: user.value, password: pass.value } });
              pass.value = '';
              start();
            } catch (err) {
              error.textContent = err.message;
            }
          } },
          h('label', { for: 'username' }, 'User name'), user,
          h('label', { for: 'password' }, 'Password'), pass,
          h('button', { type: 'submit', id: 'login' }, 'Log in'), error)
        : null,
      methods.oidc ? h('p', {}, h('a', { class: 'button', href: '/auth/oidc/login', id: 'sso' }, 'Log in with single sign-on')) : null,
    ),
  );
  user.focus();
}

function nav() {
  const current = location.hash.replace(/^#\/?/, '').split('/')[0] || 'workers';
  replace(document.getElementById('nav'),
    VIEWS.filter((v) => !v.permission || me.permissions.includes(v.permission)).map((v) =>
      h('a', { href: `#/${v.path}`, 'aria-current': current === v.path || (current === 'task' && v.path === 'tasks') ? 'page' : undefined, title: `${v.label} (${v.key})` }, v.label)));
}

async function route() {
  if (!me) return;
  nav();
  const [path, ...rest] = location.hash.replace(/^#\/?/, '').split('/');
  try {
    if (path === 'task' && rest.length) return await taskView(main, me, { id: decodeURIComponent(rest.join('/')) });
    const view = VIEWS.find((v) => v.path === path) ?? VIEWS[0];
    if (view.permission && !me.permissions.includes(view.permission)) return replace(main, h('p', { class: 'error' }, 'Your role cannot see this view.'));
    await view.render(main, me, { reset: true });
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return loggedOut();
    replace(main, h('p', { class: 'error', role: 'alert' }, `Could not load: ${err.message}`));
  }
}

let source;
let refreshTimer;
function live() {
  source?.close();
  source = new EventSource('/api/events');
  const status = document.getElementById('live');
  source.addEventListener('open', () => (status.textContent = '● live'));
  source.addEventListener('error', () => (status.textContent = '○ reconnecting'));
  source.addEventListener('batch', (e) => {
    const { updates } = JSON.parse(e.data);
    const stats = updates.filter((u) => u.kind === 'stats').at(-1);
    if (stats) status.textContent = `● live · ${stats.eventsPerSecond.toFixed(0)} ev/s · ${stats.workers} workers`;
    // Refetch the live views, at most every two seconds, and never while the user is typing in a form.
    const path = location.hash.replace(/^#\/?/, '').split('/')[0] || 'workers';
    const relevant = (path === 'tasks' && updates.some((u) => u.kind === 'task')) || (path === 'workers' && updates.some((u) => u.kind === 'worker'));
    const typing = document.activeElement && ['INPUT', 'SELECT', 'TEXTAREA'].includes(document.activeElement.tagName);
    if (relevant && !typing && !refreshTimer) {
      refreshTimer = setTimeout(() => {
        refreshTimer = undefined;
        const view = VIEWS.find((v) => v.path === path);
        if (path === 'workers' && document.querySelector('tr.detail:not([hidden])')) return; // keep an open detail open
        view?.render(main, me, {}).catch(() => {});
      }, 2000);
    }
  });
}

function loggedOut() {
  me = undefined;
  source?.close();
  loginView();
}

async function start() {
  try {
    me = await api('/api/me');
  } catch {
    return loginView();
  }
  setCsrf(me.csrf);
  top.hidden = false;
  document.getElementById('whoami').textContent = `${me.user} (${me.role}${me.permissions.includes('view-clear') ? ', clear text' : ''})`;
  live();
  await route();
}

document.getElementById('logout').addEventListener('click', async () => {
  await api('/api/logout', { method: 'POST' }).catch(() => {});
  loggedOut();
});
document.getElementById('logout-all').addEventListener('click', async () => {
  if (!confirm('End every session of this account, on every device?')) return;
  await api('/api/logout-everywhere', { method: 'POST' }).catch(() => {});
  loggedOut();
});
window.addEventListener('hashchange', route);
document.addEventListener('keydown', (e) => {
  if (!me || e.ctrlKey || e.metaKey || e.altKey) return;
  const t = e.target;
  if (t instanceof HTMLElement && (['INPUT', 'SELECT', 'TEXTAREA'].includes(t.tagName) || t.isContentEditable)) return;
  if (e.key === '/') {
    const filter = document.getElementById('filter-id');
    if (filter) (e.preventDefault(), filter.focus());
    return;
  }
  if (e.key === '?') return toast('Keys: w workers · t tasks · q queues · c charts · b beat · a audit · u users · / search tasks');
  const view = VIEWS.find((v) => v.key === e.key && (!v.permission || me.permissions.includes(v.permission)));
  if (view) location.hash = `#/${view.path}`;
});

start();
