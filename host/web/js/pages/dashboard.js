// Dashboard: five counters, the ten most recent tasks, Process Tasks and Clean Old Tasks.

import * as api from '../api.js';
import { h, replace, keyed } from '../dom.js';
import { t, tn, num } from '../i18n.js';
import { icon } from '../icons.js';
import { Poller } from '../live.js';
import { button, can, notify, notifyError, pageHeader, emptyRow, confirmDialog, link } from '../ui.js';
import { taskRow } from '../taskops.js';
import { countsOf } from './stats.js';

const METRICS = [
  { key: 'pending', iconName: 'clock' },
  { key: 'running', iconName: 'sync' },
  { key: 'completed', iconName: 'box' },
  { key: 'failed', iconName: 'bug' },
  { key: 'total', iconName: 'database' },
];

export async function mount(root) {
  const metricEls = {};
  const metrics = h(
    'section',
    { class: 'metrics', 'aria-label': t('dashboard.metrics') },
    METRICS.map((m) => {
      const value = h('span', { class: 'metric-value', 'data-metric': m.key }, '–');
      metricEls[m.key] = value;
      const href = m.key === 'total' ? '/tasks' : `/tasks?status=${m.key}`;
      return h('a', { class: `metric metric-${m.key}`, href, 'data-link': '' }, icon(m.iconName, { size: 26 }), h('span', { class: 'metric-label' }, t(`status.${m.key}`)), value);
    }),
  );
  const tbody = h('tbody');
  const table = h(
    'table',
    { class: 'table tasks-table', id: 'recent-tasks' },
    h('caption', { class: 'sr-only' }, t('dashboard.recent')),
    h('thead', null, h('tr', null, ['task.id', 'task.worker', 'task.action', 'task.status', 'task.progress', 'task.created', 'task.actions'].map((k) => h('th', { scope: 'col' }, t(k))))),
    tbody,
  );

  const actions = [];
  if (can('task.process')) {
    actions.push(
      button(t('dashboard.process'), async () => {
        try {
          const res = await api.post(api.routes.process());
          notify(processMessage(res), 'success');
        } catch (e) {
          notifyError(e);
        }
        poller.now();
      }, { cls: 'btn-primary', iconName: 'ui-play', attrs: { id: 'process-tasks' } }),
    );
  }
  if (can('task.clean')) {
    actions.push(
      button(t('dashboard.clean'), async () => {
        if (!(await confirmDialog(t('dashboard.clean_confirm'), { confirmLabel: t('dashboard.clean'), danger: true }))) return;
        try {
          const res = await api.post(api.routes.clean(), {});
          notify(cleanMessage(res), 'success');
        } catch (e) {
          notifyError(e);
        }
        poller.now();
      }, { iconName: 'trash', attrs: { id: 'clean-tasks' } }),
    );
  }

  replace(
    root,
    pageHeader(t('title.dashboard'), ...actions),
    metrics,
    h('section', { class: 'card' }, h('div', { class: 'card-header' }, h('h2', null, t('dashboard.recent')), link('/tasks', t('dashboard.all_tasks'))), h('div', { class: 'table-wrap' }, table)),
  );

  let last = '';
  const load = async () => {
    // GET /dashboard: {tasks: {pending, …, total}, active_workers, recent_tasks: [10]}.
    const dash = await api.get(api.routes.dashboard());
    const list = (dash.recent_tasks || []).slice(0, 10);
    const key = JSON.stringify(dash);
    if (key === last) return false;
    last = key;
    const c = countsOf(dash.tasks);
    for (const m of METRICS) metricEls[m.key].textContent = num(c[m.key] || 0);
    // Rows are updated in place, so a refresh never takes the keyboard focus away.
    if (list.length) keyed(tbody, list, (task) => task.id, (task) => taskRow(task, { after: () => poller.now() }));
    else replace(tbody, emptyRow(7, t('tasks.none')));
    return true;
  };
  // Idle dashboards back off to one request pair every 25 s, and stop while hidden.
  const poller = new Poller(load, { min: 1000, max: 25000 });
  try {
    await load();
  } catch (e) {
    notifyError(e);
  }
  poller.start();
  return {
    refresh: () => poller.now(),
    destroy: () => poller.stop(),
  };
}

/** POST /tasks/process answers {claimable, made_due}: the service starts them. */
export function processMessage(res) {
  const n = (res && res.claimable) || 0;
  if (!n) return t('notify.process_none');
  return tn('notify.process_started', { n, due: (res && res.made_due) || 0 });
}

/** POST /tasks/clean answers the clean-up report (deleted_tasks, removed_logs, …). */
export function cleanMessage(res) {
  const n = res && Array.isArray(res.deleted_tasks) ? res.deleted_tasks.length : 0;
  const files = res ? (res.removed_logs || 0) + (res.removed_result_dirs || 0) + (Array.isArray(res.orphans) ? res.orphans.length : 0) : 0;
  return n || files ? t('notify.cleaned', { n, files }) : t('notify.cleaned_none');
}
