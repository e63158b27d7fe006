// Workflows: groups of tasks created together with dependencies (GET /workflows), newest
// first, each with its overall progress and its tasks per status, a page at a time;
// live-updating.

import * as api from '../api.js';
import { h, keyed } from '../dom.js';
import { t, tn, num, dateTime } from '../i18n.js';
import { Poller } from '../live.js';
import { pageHeader, progressBar, link, notifyError, statusBadge, emptyRow, navigate, fillPager, STATUSES } from '../ui.js';

const PER_PAGE = 50;

/** `3 completed · 1 running`: a workflow's tasks per status, the empty ones left out. */
export function countsText(counts) {
  return STATUSES.filter((s) => counts && counts[s] > 0)
    .map((s) => `${num(counts[s])} ${t(`status.${s}`).toLocaleLowerCase()}`)
    .join(' · ');
}

export async function mount(root, params, query) {
  const page = Math.max(1, Number(query.get('page')) || 1);
  const body = h('tbody', { id: 'workflow-rows' });
  const summary = h('p', { class: 'muted', id: 'workflows-summary' });
  const pager = h('nav', { class: 'pager', 'aria-label': t('pager.label') });
  frame(root, body, summary, pager);

  let last = '';
  const load = async () => {
    const res = await api.get(api.routes.workflows({ limit: PER_PAGE, offset: (page - 1) * PER_PAGE }));
    const key = JSON.stringify([res.workflows, res.total]);
    if (key === last) return false;
    last = key;
    summary.textContent = tn('workflows.total', { n: res.total });
    const pages = Math.max(1, Math.ceil(res.total / PER_PAGE));
    fillPager(pager, { page, pages, hasNext: page < pages, go: (p) => navigate(`/workflows?page=${p}`) });
    const list = res.workflows || [];
    if (!list.length) {
      body.replaceChildren(emptyRow(6, t('workflows.none')));
      return true;
    }
    for (const el of [...body.children]) if (el.dataset.key === undefined) el.remove();
    keyed(body, list, (w) => w.id, row);
    return true;
  };
  const poller = new Poller(load, { min: 1000, max: 10000 });
  try {
    await load();
  } catch (e) {
    notifyError(e);
  }
  poller.start();
  return { refresh: () => poller.now(), destroy: () => poller.stop() };
}

function frame(root, body, summary, pager) {
  root.replaceChildren(
    pageHeader(t('title.workflows')),
    h('p', { class: 'muted' }, t('workflows.intro')),
    summary,
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'table', id: 'workflows-table' },
        h('caption', { class: 'sr-only' }, t('title.workflows')),
        h(
          'thead',
          null,
          h(
            'tr',
            null,
            ['task.id', 'workflow.name', 'task.status', 'task.progress', 'workflow.tasks', 'task.created'].map((k) => h('th', { scope: 'col' }, t(k))),
          ),
        ),
        body,
      ),
    ),
    pager,
  );
}

function row(w) {
  return h(
    'tr',
    { 'data-workflow-id': w.id },
    h('td', null, link(`/workflows/${w.id}`, `#${w.id}`)),
    h('td', null, link(`/workflows/${w.id}`, w.name)),
    h('td', null, statusBadge(w.status)),
    h('td', { class: 'col-progress' }, progressBar(w.progress, { status: w.status, label: t('workflow.progress_of', { id: w.id }) })),
    h('td', null, h('span', null, tn('workflow.task_count', { n: w.tasks })), h('br'), h('span', { class: 'muted' }, countsText(w.counts))),
    h('td', { title: w.started_by ? t('workflow.by', { user: w.started_by }) : null }, dateTime(w.created_at)),
  );
}
