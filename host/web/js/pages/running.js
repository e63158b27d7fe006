// Running now: each host's runner slots, what each slot runs and for how long, and this
// machine's per-worker limits (GET /running). Slots are drawn as a row of cells, busy ones
// filled; the tasks below them are listed oldest first. Durations tick every second
// between polls, measured from the service's clock (its `now`), not the browser's.

import * as api from '../api.js';
import { h, replace, keyed } from '../dom.js';
import { t, tn, num, duration } from '../i18n.js';
import { Poller } from '../live.js';
import { pageHeader, progressBar, link, notifyError, workerCell, loading } from '../ui.js';

export async function mount(root) {
  const hostsBox = h('div', { id: 'running-hosts', class: 'running-hosts' }, loading());
  const limitsBody = h('tbody');
  const limitsCard = h(
    'section',
    { class: 'card', id: 'worker-limits', hidden: true },
    h('h2', null, t('running.limits')),
    h('div', { class: 'table-wrap' }, h('table', { class: 'table' }, h('caption', { class: 'sr-only' }, t('running.limits')), h('thead', null, h('tr', null, h('th', { scope: 'col' }, t('task.worker')), h('th', { scope: 'col', class: 'num' }, t('running.limit')), h('th', { scope: 'col', class: 'num' }, t('status.running')))), limitsBody)),
  );
  replace(root, pageHeader(t('title.running')), h('p', { class: 'muted', id: 'running-summary' }), hostsBox, limitsCard);

  // Service clock minus browser clock, so "for how long" is the service's measure.
  let skew = 0;
  const tickDurations = () => {
    const now = Date.now() + skew;
    for (const el of root.querySelectorAll('[data-since]')) {
      const text = duration(Math.max(0, now - Number(el.dataset.since)));
      if (el.textContent !== text) el.textContent = text;
    }
  };

  let last = '';
  const load = async () => {
    const res = await api.get(api.routes.running());
    skew = res.now - Date.now();
    const key = JSON.stringify([res.hosts, res.worker_limits]);
    if (key === last) return false;
    last = key;
    const hosts = res.hosts || [];
    const running = hosts.reduce((n, x) => n + x.tasks.length, 0);
    const slots = hosts.reduce((n, x) => n + (x.capacity || 0), 0);
    document.getElementById('running-summary').textContent = t('running.summary', { running: num(running), slots: num(slots), hosts: tn('running.hosts', { n: hosts.length }) });
    // In place, so a refresh never takes the keyboard focus away.
    keyed(hostsBox, hosts, (x) => x.id || `here:${x.name}`, hostCard);
    const limits = res.worker_limits || [];
    limitsCard.hidden = !limits.length;
    keyed(limitsBody, limits, (l) => l.worker, (l) =>
      h('tr', { 'data-worker': l.worker, class: l.running >= l.limit ? 'at-limit' : '' }, h('th', { scope: 'row' }, link(`/workers/${encodeURIComponent(l.worker)}`, l.worker)), h('td', { class: 'num' }, num(l.limit)), h('td', { class: 'num' }, num(l.running))),
    );
    tickDurations();
    return true;
  };

  const poller = new Poller(load, { min: 1000, max: 10000 });
  try {
    await load();
  } catch (e) {
    replace(hostsBox);
    notifyError(e);
  }
  poller.start();
  const ticker = setInterval(tickDurations, 1000);
  return {
    refresh: () => poller.now(),
    destroy: () => {
      poller.stop();
      clearInterval(ticker);
    },
  };
}

/** One host: its name and state, its slots as cells, and a table of what runs. */
function hostCard(host) {
  const cap = typeof host.capacity === 'number' ? host.capacity : null;
  const busy = host.tasks.length;
  const cells = cap === null ? busy : Math.max(cap, busy);
  const slotTitle = cap === null ? t('running.slots_unknown', { busy: num(busy) }) : t('running.slots', { busy: num(busy), cap: num(cap) });
  const slots = h(
    'ol',
    { class: 'slots', 'aria-label': slotTitle },
    Array.from({ length: cells }, (_, i) => {
      const task = host.tasks[i];
      return h('li', { class: task ? 'slot busy' : 'slot', title: task ? `#${task.id} ${task.worker} · ${task.action}` : t('running.idle') }, h('span', { class: 'sr-only' }, task ? `#${task.id}` : t('running.idle')));
    }),
  );
  const state = host.alive === false ? h('span', { class: 'badge status-failed' }, t('running.silent')) : null;
  const rows = host.tasks.map((task) =>
    h(
      'tr',
      { 'data-task-id': task.id },
      h('td', null, link(`/tasks/${task.id}`, `#${task.id}`)),
      h('td', null, workerCell(task)),
      h('td', null, task.action),
      h('td', { class: 'col-progress' }, progressBar(task.progress, { status: 'running', label: t('task.progress_of', { id: task.id }) })),
      h('td', { class: 'num col-for', 'data-since': task.started_at || '' }, task.started_at ? '' : '—'),
      h('td', { class: 'col-message' }, task.message || ''),
    ),
  );
  return h(
    'section',
    { class: 'card host-card', 'data-host': host.id || host.name },
    h(
      'div',
      { class: 'card-header' },
      h('h2', null, host.name, host.id ? h('span', { class: 'muted host-id' }, ` · ${host.id.split('/').slice(1).join('/')}`) : null),
      h('span', { class: 'slot-count' }, slotTitle),
      state,
    ),
    slots,
    busy
      ? h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            { class: 'table running-table' },
            h('caption', { class: 'sr-only' }, t('running.tasks_on', { host: host.name })),
            h('thead', null, h('tr', null, ['task.id', 'task.worker', 'task.action', 'task.progress', 'running.for', 'task.message'].map((k) => h('th', { scope: 'col', class: k === 'running.for' ? 'num' : '' }, t(k))))),
            h('tbody', null, rows),
          ),
        )
      : h('p', { class: 'muted' }, t('running.none')),
  );
}
