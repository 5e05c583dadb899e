// Admin views: the audit log (with export) and local accounts.
import { api, fmtTime, h, replace, toast } from './dom.mjs';

export async function auditView(main) {
  const { entries } = await api('/api/audit?limit=500');
  replace(main,
    h('h1', {}, 'Audit log'),
    h('p', {}, h('a', { href: '/api/audit/export', download: 'celeriac-dashboard-audit.jsonl', class: 'button' }, 'Export (JSON lines)')),
    h('table', { class: 'grid', 'aria-label': 'Audit log' },
      h('thead', {}, h('tr', {}, ...['When', 'Who', 'What', 'From', 'Outcome', 'Detail'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, entries.map((e) =>
        h('tr', {},
          h('td', {}, fmtTime(Date.parse(e.at) / 1000)), h('td', {}, e.who), h('td', {}, e.what), h('td', { class: 'mono' }, e.from),
          h('td', {}, h('span', { class: `badge ${e.outcome === 'ok' ? 'success' : e.outcome === 'denied' ? 'revoked' : 'failure'}` }, e.outcome)),
          h('td', { class: 'mono clip' }, e.detail ? JSON.stringify(e.detail) : ''),
        ))),
    ),
  );
}

export async function usersView(main) {
  const data = await api('/api/users');
  const name = h('input', { type: 'text', required: true, 'aria-label': 'user name', placeholder: 'name', maxlength: 64, pattern: '[A-Za-z0-9._@-]+' });
  const password = h('input', { type: 'password', required: true, 'aria-label': 'password', placeholder: 'password (16+ characters)', minlength: 16, autocomplete: 'new-password' });
  const role = h('select', { 'aria-label': 'role' }, ['viewer', 'operator', 'admin'].map((r) => h('option', { value: r }, r)));
  const viewClear = h('input', { type: 'checkbox', 'aria-label': 'may view clear text' });
  const remove = async (n) => {
    if (!confirm(`Remove ${n}?`)) return;
    try {
      await api(`/api/users/${encodeURIComponent(n)}`, { method: 'DELETE' });
      usersView(main);
    } catch (err) {
      toast(err.message, 'error');
    }
  };
  replace(main,
    h('h1', {}, 'Users'),
    data.enabled ? null : h('p', { class: 'muted' }, 'Local accounts are off (single sign-on only).'),
    h('table', { class: 'grid', 'aria-label': 'Users' },
      h('thead', {}, h('tr', {}, ...['Name', 'Role', 'Clear text', ''].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, data.users.map((u) => h('tr', {}, h('td', {}, u.name), h('td', {}, u.role), h('td', {}, u.viewClear ? 'yes' : 'no'), h('td', {}, h('button', { type: 'button', class: 'danger', onclick: () => remove(u.name) }, 'Remove'))))),
    ),
    data.enabled
      ? h('form', { class: 'inline', onsubmit: async (e) => {
          e.preventDefault();
          try {
            await api('/api/users', { method: 'POST', body: { name: name.value, password: password.value, role: role.value, viewClear: viewClear.checked } });
            toast(`${name.value} saved`);
            usersView(main);
          } catch (err) {
            toast(err.message, 'error');
          }
        } }, h('h2', {}, 'Add or update a user'), name, password, role, h('label', {}, viewClear, ' view clear text'), h('button', { type: 'submit' }, 'Save'))
      : null,
  );
}
