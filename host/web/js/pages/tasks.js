// Tasks: state tabs with live counts (All / Pending / Running / Completed / Failed /
// Cancelled), filters (worker, action, search; priority, user and dates under "More
// filters"), a compact table, pagination, and bulk cancel / retry / delete of the
// selected tasks. The page paints at once with skeleton rows; the workers list, the
// tasks and the counts are requested in parallel.

import * as api from '../api.js';
import { h, replace, keyed } from '../dom.js';
import { t, tn, num } from '../i18n.js';
import { Poller } from '../live.js';
import { button, can, notify, notifyError, errorText, pageHeader, emptyRow, skeletonRows, select, field, confirmDialog, navigate, fillPager, STATUSES, PRIORITIES } from '../ui.js';
import { taskRow, listOf } from '../taskops.js';
import { countsOf } from './stats.js';

const PER_PAGE = 25;
const FILTERS = ['status', 'worker', 'action', 'priority', 'user', 'from', 'to', 'q'];
const TABS = ['', ...STATUSES];

/**
 * Counts per status for the tabs, from the counts the store keeps (constant cost at any
 * number of tasks, never a COUNT over the table): all tasks, or one worker's when the
 * list is filtered by worker. Other filters do not narrow them.
 */
async function statusCounts(worker) {
  if (!worker) return countsOf(await api.get(api.routes.statsOverview()));
  const res = await api.get(api.routes.statsWorkers());
  const w = (res.workers || []).find((x) => x.worker === worker) || {};
  const c = {};
  for (const s of STATUSES) c[s] = Number(w[s]) || 0;
  c.total = STATUSES.reduce((a, s) => a + c[s], 0);
  return c;
}

export async function mount(root, params, query) {
  const f = {};
  for (const k of FILTERS) f[k] = query.get(k) || '';
  let page = Math.max(1, Number(query.get('page')) || 1);

  // Known at once: the chosen worker (so the filter shows it before the list arrives).
  const workerSel = select([{ value: '', label: t('filter.any') }, ...(f.worker ? [{ value: f.worker, label: f.worker }] : [])], f.worker, { name: 'worker' });
  const actionIn = h('input', { type: 'text', name: 'action', value: f.action, autocomplete: 'off' });
  const prioSel = select([{ value: '', label: t('filter.any') }, ...PRIORITIES.map((p) => ({ value: p, label: t(`priority.${p}`) }))], f.priority, { name: 'priority' });
  const userIn = h('input', { type: 'text', name: 'user', value: f.user, autocomplete: 'off' });
  const fromIn = h('input', { type: 'date', name: 'from', value: f.from });
  const toIn = h('input', { type: 'date', name: 'to', value: f.to });
  const qIn = h('input', { type: 'search', name: 'q', value: f.q, placeholder: t('filter.search_placeholder') });
  const more = h(
    'details',
    { class: 'filters-more', open: !!(f.priority || f.user || f.from || f.to) },
    h('summary', null, t('filter.more')),
    h('div', { class: 'filters-more-fields' }, field(t('task.priority'), prioSel).wrap, field(t('task.user'), userIn).wrap, field(t('filter.from'), fromIn).wrap, field(t('filter.to'), toIn).wrap),
  );
  const form = h(
    'form',
    { class: 'filters card', role: 'search', 'aria-label': t('filter.label') },
    field(t('filter.search'), qIn).wrap,
    field(t('task.worker'), workerSel).wrap,
    field(t('task.action'), actionIn).wrap,
    h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn btn-primary', id: 'apply-filters' }, t('filter.apply')), h('button', { type: 'reset', class: 'btn' }, t('filter.reset'))),
    more,
  );
  const filterQuery = (over = {}) => {
    const q = new URLSearchParams();
    const vals = { status: f.status, worker: workerSel.value, action: actionIn.value.trim(), priority: prioSel.value, user: userIn.value.trim(), from: fromIn.value, to: toIn.value, q: qIn.value.trim(), ...over };
    for (const k of FILTERS) if (vals[k]) q.set(k, vals[k]);
    const s = q.toString();
    return `/tasks${s ? `?${s}` : ''}`;
  };
  const apply = () => navigate(filterQuery());
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    apply();
  });
  form.addEventListener('reset', (ev) => {
    ev.preventDefault();
    navigate('/tasks');
  });
  workerSel.addEventListener('change', apply);
  prioSel.addEventListener('change', apply);

  // State tabs: links to the same filters with another status, each with its count.
  const tabCounts = {};
  const tabs = h(
    'nav',
    { class: 'state-tabs', 'aria-label': t('tasks.tabs_label'), id: 'state-tabs' },
    TABS.map((s) => {
      const count = h('span', { class: 'tab-count skeleton-text', 'data-count': s || 'all' }, '');
      tabCounts[s || 'all'] = count;
      const a = h('a', { href: filterQuery({ status: s }), 'data-link': '', class: 'state-tab', 'data-tab': s || 'all' }, h('span', null, s ? t(`status.${s}`) : t('tasks.tab_all')), count);
      if (s === f.status) a.setAttribute('aria-current', 'page');
      return a;
    }),
  );

  // Selection and bulk actions.
  const selected = new Set();
  const selectAll = h('input', { type: 'checkbox', 'aria-label': t('tasks.select_all'), id: 'select-all' });
  const bulkInfo = h('span', { class: 'bulk-info', 'aria-live': 'polite' });
  const bulkButtons = [];
  const bulk = (op, cls, iconName) =>
    button(t(`bulk.${op}`), async () => {
      const ids = [...selected];
      if (!ids.length) return;
      if (op === 'delete' && !(await confirmDialog(tn('bulk.delete_confirm', { n: ids.length }), { confirmLabel: t('bulk.delete'), danger: true }))) return;
      try {
        const res = await api.post(api.routes.tasksBulk(), { action: op, ids });
        notify(bulkMessage(op, ids.length, res), 'success');
        selected.clear();
      } catch (e) {
        notifyError(e);
      }
      last = '';
      poller.now();
    }, { cls: `btn-small ${cls}`, iconName, attrs: { 'data-bulk': op } });
  if (can('task.cancel')) bulkButtons.push(bulk('cancel', 'btn-warn', 'ui-stop'));
  if (can('task.retry')) bulkButtons.push(bulk('retry', '', 'ui-retry'));
  if (can('task.delete')) bulkButtons.push(bulk('delete', 'btn-danger', 'trash'));
  const updateBulk = () => {
    bulkInfo.textContent = t('bulk.selected', { n: selected.size });
    for (const b of bulkButtons) b.disabled = selected.size === 0;
  };

  const tbody = h('tbody');
  const showSelect = bulkButtons.length > 0;
  const heads = ['task.id', 'task.worker', 'task.action', 'task.status', 'task.progress', 'task.message', 'task.created', 'task.actions'];
  const cols = heads.length + (showSelect ? 1 : 0);
  const table = h(
    'table',
    { class: 'table tasks-table dense', id: 'tasks-table', 'aria-busy': 'true' },
    h('thead', null, h('tr', null, showSelect ? h('th', { class: 'col-select', scope: 'col' }, selectAll) : null, heads.map((k) => h('th', { scope: 'col' }, t(k))))),
    tbody,
  );
  // Until the first answer: placeholder rows the size of a page, so nothing jumps.
  replace(tbody, skeletonRows(cols, 12));
  const pager = h('nav', { class: 'pager', 'aria-label': t('pager.label') });
  selectAll.addEventListener('change', () => {
    for (const cb of tbody.querySelectorAll('input[data-select]')) {
      cb.checked = selectAll.checked;
      const id = Number(cb.dataset.select);
      if (selectAll.checked) selected.add(id);
      else selected.delete(id);
    }
    updateBulk();
  });

  const summary = h('span', { class: 'muted tasks-summary', 'aria-live': 'polite', id: 'tasks-summary' });
  const toolbar = h(
    'div',
    { class: 'list-toolbar' },
    bulkButtons.length ? h('div', { class: 'bulk-bar', role: 'toolbar', 'aria-label': t('bulk.label') }, bulkInfo, bulkButtons) : null,
    summary,
  );
  replace(
    root,
    pageHeader(t('title.tasks'), can('task.create') ? h('a', { href: '/tasks/new', 'data-link': '', class: 'btn btn-primary' }, t('nav.new_task')) : null),
    form,
    h('section', { class: 'card card-list' }, h('div', { class: 'list-head' }, tabs, toolbar), h('div', { class: 'table-wrap' }, table), pager),
  );
  updateBulk();

  // The workers for the filter arrive beside the tasks, not before them.
  api
    .get(api.routes.workers())
    .then((res) => {
      const ids = listOf(res, 'workers').map((w) => w.identifier);
      if (f.worker && !ids.includes(f.worker)) ids.unshift(f.worker);
      const chosen = workerSel.value;
      replace(workerSel, h('option', { value: '' }, t('filter.any')), ids.map((id) => h('option', { value: id, selected: id === chosen }, id)));
    })
    .catch(() => {});

  // GET /tasks refuses unknown parameters; dates are local days of the service's
  // timezone (created_to includes its day).
  const apiQuery = () => ({
    status: f.status,
    worker: f.worker,
    action: f.action,
    priority: f.priority,
    user: f.user,
    created_from: f.from,
    created_to: f.to,
    q: f.q,
    limit: PER_PAGE,
    offset: (page - 1) * PER_PAGE,
  });

  let lastCounts = '';
  const showCounts = (c) => {
    const key = JSON.stringify(c);
    if (key === lastCounts) return false;
    lastCounts = key;
    for (const s of TABS) {
      const el = tabCounts[s || 'all'];
      el.classList.remove('skeleton-text');
      el.textContent = num((s ? c[s] : c.total) || 0);
    }
    return true;
  };

  let last = '';
  const loadList = async () => {
    const res = await api.get(api.routes.tasks(apiQuery()));
    const list = listOf(res);
    const total = res && typeof res.total === 'number' ? res.total : null;
    const key = JSON.stringify(res);
    if (key === last) return false;
    last = key;
    table.removeAttribute('aria-busy');
    // Rows are updated in place (keyed by task id), so a refresh never takes the
    // keyboard focus away; a row is rebuilt only when its task changed.
    const row = (task) => {
      let cb = null;
      if (showSelect) {
        cb = h('input', { type: 'checkbox', 'data-select': task.id, 'aria-label': t('tasks.select', { id: task.id }), checked: selected.has(task.id) });
        cb.addEventListener('change', () => {
          if (cb.checked) selected.add(task.id);
          else selected.delete(task.id);
          updateBulk();
        });
      }
      return taskRow(task, { after: () => poller.now(), select: cb, showMessage: true });
    };
    if (list.length) keyed(tbody, list, (task) => task.id, row, (task) => JSON.stringify([task, selected.has(task.id)]));
    else replace(tbody, emptyRow(cols, t('tasks.none')));
    const pages = total !== null ? Math.max(1, Math.ceil(total / PER_PAGE)) : null;
    summary.textContent = total !== null ? tn('tasks.count', { n: total }) : '';
    const go = (p) => {
      const q = new URLSearchParams(location.search);
      q.set('page', String(p));
      navigate(`/tasks?${q}`);
    };
    const hasNext = pages !== null ? page < pages : list.length === PER_PAGE || (res && res.has_more);
    fillPager(pager, { page, pages, hasNext, go });
    selectAll.checked = list.length > 0 && list.every((x) => selected.has(x.id));
    return true;
  };
  // The list and the counts leave together; a failed count never hides the list.
  const load = async () => {
    const [changed, counts] = await Promise.all([loadList(), statusCounts(f.worker).catch(() => null)]);
    const countsChanged = counts ? showCounts(counts) : false;
    return changed || countsChanged;
  };
  const poller = new Poller(load, { min: 1000, max: 25000 });
  try {
    await load();
  } catch (e) {
    table.removeAttribute('aria-busy');
    if (e && e.status === 401) throw e;
    replace(tbody, emptyRow(cols, errorText(e)));
  }
  poller.start();
  return { refresh: () => { last = ''; lastCounts = ''; poller.now(); }, destroy: () => poller.stop() };
}

function bulkMessage(op, n, res) {
  if (res && typeof res === 'object') {
    const ok = res.succeeded ?? res.ok ?? res.done ?? res.affected ?? res.updated ?? res.deleted;
    const failed = res.failed ?? res.skipped ?? res.errors;
    const okN = Array.isArray(ok) ? ok.length : typeof ok === 'number' ? ok : null;
    const failN = Array.isArray(failed) ? failed.length : typeof failed === 'number' ? failed : 0;
    if (okN !== null) return t(`bulk.done_${op}`, { n: okN, failed: failN });
  }
  return t(`bulk.done_${op}`, { n, failed: 0 });
}
