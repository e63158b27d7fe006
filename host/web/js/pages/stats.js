// Statistics: overview figures, tasks by status (chart), per-worker table, and activity
// over time (today, this week, this month, a custom range) as a chart.

import * as api from '../api.js';
import { h, replace } from '../dom.js';
import { t, num, duration, dateTime } from '../i18n.js';
import { barChart, columnChart } from '../charts.js';
import { pageHeader, STATUSES, field, link, notifyError } from '../ui.js';
import { Poller } from '../live.js';

/**
 * Counts by status and the total from a statistics answer: the report or overview
 * (`{overview: {total, by_status}}`, `{total, by_status}`) or one worker's row
 * (`{created, pending, running, completed, failed, cancelled}`).
 */
export function countsOf(stats) {
  if (!stats || typeof stats !== 'object') return { total: 0 };
  const o = stats.overview || stats;
  const src = o.by_status || o.counts || o;
  const c = {};
  for (const s of STATUSES) c[s] = Number(src[s]) || 0;
  const sum = STATUSES.reduce((a, s) => a + c[s], 0);
  c.total = typeof o.total === 'number' ? o.total : typeof o.created === 'number' ? Math.max(o.created, sum) : sum;
  return c;
}

function ymd(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

function percent(r) {
  return typeof r === 'number' ? `${Math.round(r * 1000) / 10} %` : '—';
}

export async function mount(root) {
  const overview = h('dl', { class: 'figures big', id: 'stats-overview' });
  const statusChart = h('div', { id: 'status-chart' });
  const workerBody = h('tbody');
  const activityBox = h('div', { id: 'activity-chart' });
  let period = 'today';
  const periodButtons = ['today', 'week', 'month', 'custom'].map((p) =>
    h('button', { type: 'button', class: 'btn btn-small', 'data-period': p, 'aria-pressed': String(p === period), onclick: () => setPeriod(p) }, t(`stats.period.${p}`)),
  );
  const fromIn = h('input', { type: 'date', value: ymd(new Date(Date.now() - 6 * 86400000)) });
  const toIn = h('input', { type: 'date', value: ymd(new Date()) });
  const custom = h(
    'form',
    { class: 'inline-form custom-range', hidden: true },
    field(t('filter.from'), fromIn).wrap,
    field(t('filter.to'), toIn).wrap,
    h('button', { type: 'submit', class: 'btn btn-primary' }, t('filter.apply')),
  );
  custom.addEventListener('submit', (ev) => {
    ev.preventDefault();
    loadActivity();
  });
  const setPeriod = (p) => {
    period = p;
    for (const b of periodButtons) b.setAttribute('aria-pressed', String(b.dataset.period === p));
    custom.hidden = p !== 'custom';
    loadActivity();
  };

  replace(
    root,
    pageHeader(t('title.stats')),
    h('div', { class: 'stats-top' }, h('section', { class: 'card' }, h('h2', null, t('stats.overview')), overview), h('section', { class: 'card' }, h('h2', null, t('stats.by_status')), statusChart)),
    h(
      'section',
      { class: 'card' },
      h('h2', null, t('stats.per_worker')),
      h('div', { class: 'table-wrap' }, h('table', { class: 'table', id: 'worker-stats' }, h('thead', null, h('tr', null, h('th', { scope: 'col' }, t('task.worker')), ['total', ...STATUSES].map((s) => h('th', { scope: 'col', class: 'num' }, t(`status.${s}`))), h('th', { scope: 'col', class: 'num' }, t('stats.success_rate')), h('th', { scope: 'col', class: 'num' }, t('stats.avg_duration')), h('th', { scope: 'col' }, t('stats.last_execution')))), workerBody)),
    ),
    h('section', { class: 'card' }, h('div', { class: 'card-header' }, h('h2', null, t('stats.activity')), h('div', { class: 'segmented', role: 'group', 'aria-label': t('stats.period.label') }, periodButtons)), custom, activityBox),
  );

  let last = '';
  const load = async () => {
    const stats = await api.get(api.routes.stats());
    const key = JSON.stringify([stats.overview, stats.workers]);
    if (key === last) return false;
    last = key;
    const o = stats.overview || {};
    const c = countsOf(stats);
    const figs = [
      ['stats.total', num(c.total || 0)],
      ...STATUSES.map((s) => [`status.${s}`, num(c[s] || 0)]),
      ['stats.success_rate', percent(o.success_rate)],
      ['stats.failure_rate', percent(o.failure_rate)],
      ['stats.avg_duration', typeof o.average_duration_ms === 'number' ? duration(o.average_duration_ms) : '—'],
    ];
    replace(overview, figs.map(([k, v]) => h('div', { class: 'figure' }, h('dt', null, t(k)), h('dd', { 'data-figure': k }, v))));
    replace(statusChart, barChart(STATUSES.map((s) => ({ label: t(`status.${s}`), value: c[s] || 0, cls: `fill-${s}` })), { title: t('stats.by_status') }));
    const per = stats.workers || [];
    replace(
      workerBody,
      per.length
        ? per.map((w) => {
            const wc = countsOf(w);
            return h(
              'tr',
              { 'data-worker': w.worker },
              h('th', { scope: 'row' }, w.registered === false ? w.worker : link(`/workers/${encodeURIComponent(w.worker)}`, w.worker), w.title ? h('span', { class: 'muted' }, ` · ${w.title}`) : null),
              ['total', ...STATUSES].map((s) => h('td', { class: 'num', 'data-count': s }, num(wc[s] || 0))),
              h('td', { class: 'num' }, percent(w.success_rate)),
              h('td', { class: 'num' }, typeof w.average_duration_ms === 'number' ? duration(w.average_duration_ms) : '—'),
              h('td', { class: 'col-time' }, w.last_execution ? dateTime(w.last_execution) : '—'),
            );
          })
        : h('tr', { class: 'empty' }, h('td', { colspan: 10 }, t('stats.no_workers'))),
    );
    return true;
  };

  const loadActivity = async () => {
    const q = period === 'custom' ? { since: fromIn.value, until: toIn.value } : { period };
    try {
      const res = await api.get(api.routes.activity(q));
      replace(activityBox, activityChart(res));
    } catch (e) {
      notifyError(e);
    }
  };

  const poller = new Poller(load, { min: 2000, max: 25000 });
  // The report and the activity series are independent: asked for at once.
  await Promise.all([load(), loadActivity()]);
  poller.start();
  return {
    refresh: () => {
      last = '';
      poller.now();
      loadActivity();
    },
    destroy: () => poller.stop(),
  };
}

const SERIES = ['completed', 'failed', 'cancelled'];

/** A period's statistics (GET /stats/time) as figures and a column chart. */
function activityChart(p) {
  const series = p.series || [];
  const hourly = p.granularity === 'hour';
  const buckets = series.map((pt) => ({
    label: hourly ? (pt.label || '').slice(11) || pt.label : (pt.label || '').slice(5) || pt.label,
    values: { created: pt.created || 0, completed: pt.completed || 0, failed: pt.failed || 0, cancelled: pt.cancelled || 0 },
  }));
  const figures = [
    ['stats.created', num(p.created || 0)],
    ['status.completed', num(p.completed || 0)],
    ['status.failed', num(p.failed || 0)],
    ['status.cancelled', num(p.cancelled || 0)],
    ['stats.success_rate', percent(p.success_rate)],
    ['stats.avg_duration', typeof p.average_duration_ms === 'number' ? duration(p.average_duration_ms) : '—'],
  ];
  const range = p.since && p.until ? `${p.since.local || ''} — ${p.until.local || ''}${p.timezone ? ` (${p.timezone})` : ''}` : '';
  return h(
    'div',
    null,
    h('p', { class: 'muted', id: 'activity-range' }, range),
    h('dl', { class: 'figures', id: 'activity-figures' }, figures.map(([k, v]) => h('div', null, h('dt', null, t(k)), h('dd', null, v)))),
    h('h3', { class: 'chart-title' }, t('stats.created')),
    columnChart(buckets, [{ key: 'created', label: t('stats.created'), cls: 'fill-pending' }], { title: `${t('stats.activity')}: ${t('stats.created')}` }),
    h('h3', { class: 'chart-title' }, t('stats.finished')),
    columnChart(buckets, SERIES.map((s) => ({ key: s, label: t(`status.${s}`), cls: `fill-${s}` })), { title: `${t('stats.activity')}: ${t('stats.finished')}` }),
  );
}
