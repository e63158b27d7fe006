// Dashboard: five counters, live throughput (completed / failed per minute over the last
// hour) and queue depth per worker, the ten most recent tasks, Process Tasks and Clean Old
// Tasks. The counters and the table come first (GET /dashboard); the throughput series
// (GET /stats/throughput) is requested at the same time and drawn when it arrives.

import * as api from '../api.js';
import { h, replace, keyed } from '../dom.js';
import { t, tn, num, language } from '../i18n.js';
import { icon } from '../icons.js';
import { Poller } from '../live.js';
import { button, can, notify, notifyError, pageHeader, emptyRow, skeletonRows, confirmDialog, link } from '../ui.js';
import { taskRow, processMessage } from '../taskops.js';
import { countsOf } from './stats.js';
import { throughputChart, queueChart } from '../charts.js';

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
      const value = h('span', { class: 'metric-value skeleton-text', 'data-metric': m.key }, '');
      metricEls[m.key] = value;
      const href = m.key === 'total' ? '/tasks' : `/tasks?status=${m.key}`;
      return h('a', { class: `metric metric-${m.key}`, href, 'data-link': '' }, icon(m.iconName, { size: 26 }), h('span', { class: 'metric-label' }, t(`status.${m.key}`)), value);
    }),
  );
  const tbody = h('tbody');
  const table = h(
    'table',
    { class: 'table tasks-table dense', id: 'recent-tasks', 'aria-busy': 'true' },
    h('caption', { class: 'sr-only' }, t('dashboard.recent')),
    h('thead', null, h('tr', null, ['task.id', 'task.worker', 'task.action', 'task.status', 'task.progress', 'task.created', 'task.actions'].map((k) => h('th', { scope: 'col' }, t(k))))),
    tbody,
  );

  // Placeholders until the first answer, so the page never shows an empty frame.
  replace(tbody, skeletonRows(7, 10));

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

  const throughputBox = h('div', { id: 'throughput-chart', class: 'chart-slot', 'aria-busy': 'true' }, h('div', { class: 'skeleton skeleton-chart' }));
  const queueBox = h('div', { id: 'queue-chart', class: 'chart-slot' }, h('div', { class: 'skeleton skeleton-chart' }));
  const charts = h(
    'div',
    { class: 'dashboard-charts' },
    h('section', { class: 'card', 'aria-labelledby': 'throughput-title' }, h('h2', { id: 'throughput-title' }, t('dashboard.throughput')), throughputBox),
    h('section', { class: 'card', 'aria-labelledby': 'queues-title' }, h('h2', { id: 'queues-title' }, t('dashboard.queues')), queueBox),
  );

  replace(
    root,
    pageHeader(t('title.dashboard'), ...actions),
    metrics,
    charts,
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
    for (const m of METRICS) {
      metricEls[m.key].classList.remove('skeleton-text');
      metricEls[m.key].textContent = num(c[m.key] || 0);
    }
    table.removeAttribute('aria-busy');
    // Rows are updated in place, so a refresh never takes the keyboard focus away.
    if (list.length) keyed(tbody, list, (task) => task.id, (task) => taskRow(task, { after: () => poller.now() }));
    else replace(tbody, emptyRow(7, t('tasks.none')));
    drawQueues(dash.queues || []);
    return true;
  };

  let lastQueues = '';
  const drawQueues = (queues) => {
    const key = JSON.stringify(queues);
    if (key === lastQueues) return;
    lastQueues = key;
    if (!queues.length) {
      replace(queueBox, h('p', { class: 'muted' }, t('dashboard.queues_empty')));
      return;
    }
    const shown = queues.slice(0, 10);
    replace(
      queueBox,
      queueChart(shown, { title: t('dashboard.queues'), labels: { running: t('status.running'), pending: t('status.pending') } }),
      queues.length > shown.length ? h('p', { class: 'muted' }, tn('dashboard.queues_more', { n: queues.length - shown.length })) : null,
    );
  };

  let lastSeries = '';
  const loadThroughput = async () => {
    const res = await api.get(api.routes.throughput());
    const key = JSON.stringify(res.series);
    if (key === lastSeries) return false;
    lastSeries = key;
    const buckets = (res.series || []).map((m) => ({ at: m.at, label: minuteLabel(m.at), completed: m.completed, failed: m.failed }));
    replace(throughputBox, throughputChart(buckets, { title: t('dashboard.throughput'), labels: { completed: t('status.completed'), failed: t('status.failed') } }), h('p', { class: 'muted chart-note' }, t('dashboard.throughput_note')));
    throughputBox.removeAttribute('aria-busy');
    return true;
  };
  // Idle dashboards back off to one request pair every 25 s, and stop while hidden.
  const poller = new Poller(load, { min: 1000, max: 25000 });
  // Minutes fill up slowly: the series is asked for every 5 s at most.
  const throughputPoller = new Poller(loadThroughput, { min: 5000, max: 30000 });
  // Both requests leave at once; the page is useful when the counts have arrived.
  const series = loadThroughput().catch(() => {});
  try {
    await load();
  } catch (e) {
    notifyError(e);
  }
  poller.start();
  series.finally(() => throughputPoller.start());
  return {
    refresh: () => {
      poller.now();
      throughputPoller.now();
    },
    destroy: () => {
      poller.stop();
      throughputPoller.stop();
    },
  };
}

/** POST /tasks/process: how many start and why the others wait (taskops.js words it). */
export { processMessage };

/** Hours and minutes of `ms` in the current language ("14:05", "2:05 PM"). */
function minuteLabel(ms) {
  try {
    return new Intl.DateTimeFormat(language(), { hour: 'numeric', minute: '2-digit' }).format(new Date(ms));
  } catch {
    return new Date(ms).toTimeString().slice(0, 5);
  }
}

/** POST /tasks/clean answers the clean-up report (deleted_tasks, removed_logs, …). */
export function cleanMessage(res) {
  const n = res && Array.isArray(res.deleted_tasks) ? res.deleted_tasks.length : 0;
  const files = res ? (res.removed_logs || 0) + (res.removed_result_dirs || 0) + (Array.isArray(res.orphans) ? res.orphans.length : 0) : 0;
  return n || files ? t('notify.cleaned', { n, files }) : t('notify.cleaned_none');
}
