// Shared pieces of the interface: session state, permissions, badges, progress bars,
// notifications, dialogs and navigation.

import { h, rich, replace, nextId, keyed } from './dom.js';
import { t, num, dateTime, relativeTime } from './i18n.js';
import { icon } from './icons.js';
import * as api from './api.js';

export const session = { user: null };

/** Reads the signed-in user (GET /auth/me); null when not signed in. */
export async function loadSession() {
  try {
    const me = await api.get(api.routes.me());
    adoptSession(me);
  } catch {
    session.user = null;
  }
  return session.user;
}

/** Takes the user and CSRF token from a login or /auth/me answer. */
export function adoptSession(res) {
  if (!res) return;
  const user = res.user || res;
  const token = res.csrf_token || res.csrf || (res.session && res.session.csrf_token);
  if (token) api.setCsrf(token);
  session.user = user && user.name ? { name: user.name, role: user.role } : null;
}

const OPERATOR = ['task.create', 'task.execute', 'task.cancel', 'task.retry', 'task.process'];
const ADMIN = [...OPERATOR, 'task.any', 'task.delete', 'task.clean', 'worker.toggle', 'worker.discover', 'worker.settings', 'worker.schedule'];
const PERMS = { viewer: [], operator: OPERATOR, admin: ADMIN };

/** Whether the signed-in user's role allows `perm`. */
export function can(perm) {
  const role = session.user && session.user.role;
  return !!(role && PERMS[role] && PERMS[role].includes(perm));
}

export const STATUSES = ['pending', 'running', 'completed', 'failed', 'cancelled'];
export const PRIORITIES = ['high', 'normal', 'low'];

export function statusBadge(status) {
  const known = STATUSES.includes(status) ? status : 'unknown';
  return h('span', { class: `badge status-${known}`, 'data-status': status }, t(`status.${known}`));
}

export function progressBar(percent, { label = null, status = '' } = {}) {
  const p = Math.max(0, Math.min(100, Math.round(Number(percent) || 0)));
  const bar = h(
    'div',
    {
      class: `progress ${status ? `progress-${status}` : ''}`,
      role: 'progressbar',
      'aria-valuemin': 0,
      'aria-valuemax': 100,
      'aria-valuenow': p,
      'aria-label': label || t('task.progress'),
    },
    h('div', { class: 'progress-fill' }),
    h('span', { class: 'progress-text' }, `${p} %`),
  );
  // Through the CSSOM, so a strict Content-Security-Policy (no inline styles) allows it.
  bar.firstChild.style.width = `${p}%`;
  return bar;
}

/** Updates a bar made by progressBar() in place. */
export function setProgress(bar, percent, status) {
  const p = Math.max(0, Math.min(100, Math.round(Number(percent) || 0)));
  bar.setAttribute('aria-valuenow', p);
  bar.className = `progress ${status ? `progress-${status}` : ''}`;
  bar.querySelector('.progress-fill').style.width = `${p}%`;
  bar.querySelector('.progress-text').textContent = `${p} %`;
}

/** A button with an optional icon; `onclick` may be async (the button is disabled meanwhile). */
export function button(label, onclick, { cls = '', iconName = null, title = null, type = 'button', attrs = {} } = {}) {
  const b = h('button', { type, class: `btn ${cls}`.trim(), title, ...attrs }, iconName ? icon(iconName, { size: 16 }) : null, h('span', null, label));
  if (onclick) {
    b.addEventListener('click', async (ev) => {
      if (b.disabled) return;
      b.disabled = true;
      b.setAttribute('aria-busy', 'true');
      try {
        await onclick(ev);
      } finally {
        b.disabled = false;
        b.removeAttribute('aria-busy');
      }
    });
  }
  return b;
}

/** Shows a notification (kind: info, success, error) for a few seconds. */
export function notify(message, kind = 'info', { timeout = 6000 } = {}) {
  const region = document.getElementById('toasts');
  const close = h('button', { type: 'button', class: 'toast-close', 'aria-label': t('action.close') }, icon('ui-x', { size: 14 }));
  const toast = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, h('div', { class: 'toast-body' }, rich(message)), close);
  const remove = () => toast.remove();
  close.addEventListener('click', remove);
  region.append(toast);
  if (timeout) setTimeout(remove, kind === 'error' ? timeout * 2 : timeout);
  return toast;
}

/**
 * Error codes of the API (http/error.rs, the Problem codes of ops/) worded for a browser
 * user in the current language (`apierror.<code>`): what happened and what to do in
 * the interface, never a command to type.
 */
const WORDED = new Set([
  'task_not_found', 'worker_not_found', 'unknown_worker', 'worker_inactive', 'library_missing',
  'not_pending', 'not_retryable', 'already_finished', 'not_finished', 'not_your_task',
  'sensitive_data', 'secret_key_missing', 'secret_unreadable', 'secret_key_from_env',
  'plugins_dir_missing', 'no_schedule', 'settings_changed', 'last_admin', 'invalid_role',
  'store_unavailable', 'store_read_only', 'internal_error', 'forbidden',
]);

/** The parts of an API message a worded error names: task id, worker, status, user. */
function errorParams(message) {
  const m = String(message || '');
  const p = {};
  let x;
  if ((x = /\btask #?(\d+)/.exec(m))) p.id = x[1];
  if ((x = /\bworker '([^']*)'/.exec(m))) p.worker = x[1];
  if ((x = /\bis (?:already )?(pending|running|completed|failed|cancelled)\b/.exec(m))) p.status = t(`status.${x[1]}`).toLocaleLowerCase();
  if ((x = /\bstarted by ([^;]+?);/.exec(m))) p.user = x[1];
  if ((x = /^'([^']*)' is the last admin/.exec(m))) p.user = x[1];
  return p;
}

const CLI = /`[^`]*`|\brun stask\b|\bstask (?:tasks|workers|users|tokens|secrets|serve|init|migrate|check)\b|(?:^|\s)--[a-z][\w-]*|\bSTASK_[A-Z_]+|\bstask\.toml\b/;

/**
 * An English message without what is meant for a command line: a sentence, clause or
 * aside naming a `stask …` command, a `--flag` or an environment variable is left out.
 */
export function withoutCliHints(text) {
  if (typeof text !== 'string' || !text) return '';
  if (!CLI.test(text)) return text;
  let s = text.replace(/\s*\([^()]*\)/g, (m) => (CLI.test(m) ? '' : m));
  s = s
    .split(/(?<=[;.:])\s+|,\s+or\s+/)
    .filter((part) => !CLI.test(part))
    .join(' ')
    .trim()
    .replace(/[;,:]$/, '.');
  return s;
}

/** The message of an API error in the current language, for a browser user. */
export function errorText(e) {
  if (!e) return t('error.unknown');
  if (e.status === 0) return t('error.network');
  if (e.code && WORDED.has(e.code)) {
    const key = `apierror.${e.code}`;
    const text = t(key, errorParams(e.message));
    if (text !== key && !/\{\w+\}/.test(text)) return text;
  }
  if (e.status === 403 && !e.message) return t('error.forbidden');
  return withoutCliHints(e.message) || (e.status >= 500 ? t('apierror.internal_error') : t('error.unknown'));
}

export function notifyError(e) {
  if (e && e.name === 'AbortError') return;
  notify(errorText(e), 'error');
}

/** Asks for confirmation in a modal dialog; resolves to true when confirmed. */
export function confirmDialog(message, { confirmLabel = t('action.confirm'), danger = false } = {}) {
  return new Promise((resolve) => {
    const dlg = document.getElementById('confirm-dialog');
    const body = dlg.querySelector('.dialog-body');
    replace(body, h('p', null, message));
    const ok = dlg.querySelector('[data-confirm]');
    const cancel = dlg.querySelector('[data-cancel]');
    ok.textContent = confirmLabel;
    cancel.textContent = t('action.cancel_dialog');
    ok.className = `btn ${danger ? 'btn-danger' : 'btn-primary'}`;
    const done = (v) => {
      ok.removeEventListener('click', yes);
      cancel.removeEventListener('click', no);
      dlg.removeEventListener('close', no);
      if (dlg.open) dlg.close();
      resolve(v);
    };
    const yes = () => done(true);
    const no = () => done(false);
    ok.addEventListener('click', yes);
    cancel.addEventListener('click', no);
    dlg.addEventListener('close', no);
    dlg.showModal();
    ok.focus();
  });
}

/** A link handled by the client router. */
export function link(href, ...children) {
  return h('a', { href, 'data-link': '' }, ...children);
}

export function navigate(path) {
  window.dispatchEvent(new CustomEvent('stask:navigate', { detail: path }));
}

export function pageHeader(title, ...actions) {
  return h('div', { class: 'page-header' }, h('h1', { tabindex: '-1', id: 'page-title' }, title), h('div', { class: 'page-actions' }, actions));
}

export function emptyRow(cols, text) {
  return h('tr', { class: 'empty' }, h('td', { colspan: cols }, text));
}

/** A labelled form field; returns {wrap, input, setError}. */
export function field(label, input, { help = null, extra = null } = {}) {
  const id = input.id || nextId('fld');
  input.id = id;
  const err = h('p', { class: 'field-error', id: `${id}-err`, role: 'alert', hidden: true });
  const helpEl = help ? h('p', { class: 'field-help', id: `${id}-help` }, help) : null;
  const describedBy = [helpEl ? `${id}-help` : null, `${id}-err`].filter(Boolean).join(' ');
  input.setAttribute('aria-describedby', describedBy);
  const isCheck = input.type === 'checkbox';
  const lab = h('label', { for: id }, label);
  const wrap = h('div', { class: `field ${isCheck ? 'field-check' : ''}` }, isCheck ? [input, lab] : [lab, input], extra, helpEl, err);
  const setError = (msg) => {
    if (msg) {
      err.textContent = msg;
      err.hidden = false;
      input.setAttribute('aria-invalid', 'true');
      wrap.classList.add('has-error');
    } else {
      err.textContent = '';
      err.hidden = true;
      input.removeAttribute('aria-invalid');
      wrap.classList.remove('has-error');
    }
  };
  return { wrap, input, setError };
}

export function select(options, value, attrs = {}) {
  return h(
    'select',
    attrs,
    options.map((o) => h('option', { value: o.value, selected: String(o.value) === String(value) }, o.label)),
  );
}

/** "worker (scope)" cell contents. */
export function workerCell(task) {
  const scope = task.scope || task.worker_scope;
  return h('span', { class: 'worker-cell' }, link(`/workers/${encodeURIComponent(task.worker)}`, task.worker), scope ? h('span', { class: 'muted' }, ` · ${scope}`) : null);
}

export function fmtCount(n) {
  return num(n || 0);
}

/**
 * A task time as "3 minutes ago" with the date and time on hover; every such element on
 * the page is brought up to date twice a minute.
 */
export function timeAgo(ms) {
  const d = ms === null || ms === undefined || ms === '' ? null : new Date(typeof ms === 'number' ? ms : String(ms));
  if (!d || Number.isNaN(d.getTime())) return h('span', null, dateTime(ms));
  return h('time', { datetime: d.toISOString(), title: dateTime(ms), 'data-reltime': d.getTime() }, relativeTime(d.getTime()));
}

setInterval(() => {
  for (const el of document.querySelectorAll('time[data-reltime]')) {
    const text = relativeTime(Number(el.dataset.reltime));
    if (el.textContent !== text) el.textContent = text;
  }
}, 30000);

/**
 * Placeholder rows while a table's data loads: `n` rows of `cols` grey bars, hidden
 * from assistive technology (the table says aria-busy meanwhile).
 */
export function skeletonRows(cols, n = 8) {
  const rows = [];
  for (let i = 0; i < n; i += 1) {
    const cells = [];
    for (let c = 0; c < cols; c += 1) cells.push(h('td', null, h('span', { class: 'skeleton' })));
    rows.push(h('tr', { class: 'skeleton-row', 'aria-hidden': 'true' }, cells));
  }
  return rows;
}

/** Loading placeholder. */
export function loading() {
  return h('p', { class: 'loading', role: 'status' }, t('common.loading'));
}

/**
 * Fills the pager `nav` (`aria-label` "Pages") with Previous, "Page N of M" (or "Page N"
 * when `pages` is unknown) and Next; `go(p)` opens page p. The buttons are rebuilt only
 * when what they show changed, so a live refresh never takes the keyboard focus away.
 */
export function fillPager(pager, { page, pages, hasNext, go }) {
  const sig = JSON.stringify([page, pages, hasNext]);
  if (pager.dataset.sig === sig) return;
  pager.dataset.sig = sig;
  keyed(
    pager,
    ['prev', 'info', 'next'],
    (k) => k,
    (k) =>
      k === 'prev'
        ? h('button', { type: 'button', class: 'btn btn-small', disabled: page <= 1, onclick: () => go(page - 1), 'data-page': 'prev' }, t('pager.prev'))
        : k === 'next'
          ? h('button', { type: 'button', class: 'btn btn-small', disabled: !hasNext, onclick: () => go(page + 1), 'data-page': 'next' }, t('pager.next'))
          : h('span', { class: 'pager-info' }, pages !== null ? t('pager.page_of', { page, pages }) : t('pager.page', { page })),
    (k) => `${k}${sig}`,
  );
}
