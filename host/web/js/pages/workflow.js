// One workflow (GET /workflows/{id}): its overall progress, Cancel and Retry for the
// group, its graph (an SVG DAG, layered left to right by dependency depth, each node
// coloured by its task's status and linking to the task's page) and its steps as a
// table; live-updating while anything in it is pending or running.

import * as api from '../api.js';
import { h, s, keyed, replace } from '../dom.js';
import { t, tn } from '../i18n.js';
import { Poller } from '../live.js';
import { button, can, session, confirmDialog, notify, notifyError, progressBar, setProgress, statusBadge, link, navigate } from '../ui.js';
import { countsText } from './workflows.js';

const NODE_W = 168;
const NODE_H = 46;
const GAP_X = 56;
const GAP_Y = 14;
const PAD = 8;

/** Who may change the workflow: operators their own, admins any (as the API decides). */
function mayChange(w) {
  return can('task.cancel') && (can('task.any') || (session.user && w.started_by === session.user.name));
}

/** Each step's column: 0 without dependencies, else one more than its deepest one. */
function layers(steps) {
  const depth = new Map();
  const byName = new Map(steps.map((st) => [st.step, st]));
  const visit = (st, seen = new Set()) => {
    if (depth.has(st.step)) return depth.get(st.step);
    if (seen.has(st.step)) return 0;
    seen.add(st.step);
    let d = 0;
    for (const a of st.after) {
      const dep = byName.get(a);
      if (dep) d = Math.max(d, visit(dep, seen) + 1);
    }
    depth.set(st.step, d);
    return d;
  };
  steps.forEach((st) => visit(st));
  return depth;
}

/** The graph as SVG: nodes by column and row, edges from each dependency to its step. */
export function graph(steps) {
  const depth = layers(steps);
  const columns = [];
  for (const st of steps) {
    const d = depth.get(st.step) || 0;
    (columns[d] = columns[d] || []).push(st);
  }
  const pos = new Map();
  columns.forEach((col, c) => col.forEach((st, r) => pos.set(st.step, { x: PAD + c * (NODE_W + GAP_X), y: PAD + r * (NODE_H + GAP_Y) })));
  const rows = Math.max(1, ...columns.map((c) => (c ? c.length : 0)));
  const width = PAD * 2 + columns.length * NODE_W + Math.max(0, columns.length - 1) * GAP_X;
  const height = PAD * 2 + rows * NODE_H + (rows - 1) * GAP_Y;
  const edges = [];
  for (const st of steps) {
    const to = pos.get(st.step);
    for (const a of st.after) {
      const from = pos.get(a);
      if (!from || !to) continue;
      const x1 = from.x + NODE_W;
      const y1 = from.y + NODE_H / 2;
      const x2 = to.x;
      const y2 = to.y + NODE_H / 2;
      const mid = (x1 + x2) / 2;
      edges.push(s('path', { class: `wf-edge${st.after_any ? ' wf-edge-any' : ''}`, d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2 - 6},${y2}`, 'marker-end': 'url(#wf-arrow)', 'data-from': a, 'data-to': st.step }));
    }
  }
  const nodes = steps.map((st) => {
    const p = pos.get(st.step);
    const task = st.task;
    const label = `${st.step}: #${task.id} ${t(`status.${task.status}`)} ${task.progress} %`;
    const href = `/tasks/${task.id}`;
    const a = s(
      'a',
      { href, class: `wf-node wf-${task.status}`, 'data-step': st.step, 'data-status': task.status, 'aria-label': label },
      s('title', null, `${st.step} · #${task.id} · ${task.worker}/${task.action} · ${t(`status.${task.status}`)}`),
      s('rect', { x: p.x, y: p.y, width: NODE_W, height: NODE_H, rx: 8 }),
      s('text', { x: p.x + 10, y: p.y + 19, class: 'wf-step' }, clip(st.step, 20)),
      s('text', { x: p.x + 10, y: p.y + 36, class: 'wf-sub' }, clip(`#${task.id} · ${t(`status.${task.status}`)}${task.status === 'running' ? ` ${task.progress} %` : ''}`, 24)),
    );
    // The router's links are HTML anchors; an SVG one navigates through it here.
    a.addEventListener('click', (ev) => {
      if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
      ev.preventDefault();
      navigate(href);
    });
    return a;
  });
  return s(
    'svg',
    { class: 'wf-graph', id: 'workflow-graph', width, height, viewBox: `0 0 ${width} ${height}`, role: 'group', 'aria-label': t('workflow.graph') },
    s('defs', null, s('marker', { id: 'wf-arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'wf-arrow' }))),
    edges,
    nodes,
  );
}

function clip(text, n) {
  const str = String(text);
  return str.length > n ? `${str.slice(0, n - 1)}…` : str;
}

export async function mount(root, params) {
  const id = params.id;
  const title = h('h1', { id: 'page-title', tabindex: '-1' }, t('workflow.title', { id }));
  const badge = h('span', { id: 'workflow-status' });
  const bar = progressBar(0, { label: t('workflow.progress') });
  bar.id = 'workflow-progress';
  const counts = h('p', { class: 'muted', id: 'workflow-counts' });
  const buttons = h('div', { class: 'page-actions', id: 'workflow-actions' });
  const graphBox = h('div', { class: 'wf-graph-wrap card', id: 'workflow-graph-box' });
  const stepsBody = h('tbody', { id: 'workflow-steps' });
  replace(
    root,
    h('p', { class: 'breadcrumb' }, link('/workflows', t('title.workflows')), ' / ', `#${id}`),
    h('div', { class: 'page-header' }, title, buttons),
    h('div', { class: 'wf-summary' }, badge, bar, counts),
    h('h2', null, t('workflow.graph')),
    graphBox,
    h('h2', null, t('workflow.steps')),
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'table' },
        h('caption', { class: 'sr-only' }, t('workflow.steps')),
        h('thead', null, h('tr', null, ['workflow.step', 'task.id', 'task.status', 'task.progress', 'workflow.after', 'task.message'].map((k) => h('th', { scope: 'col' }, t(k))))),
        stepsBody,
      ),
    ),
  );

  let wf = null;
  let lastGraph = '';
  const act = async (op) => {
    if (op === 'cancel' && !(await confirmDialog(t('workflow.cancel_confirm', { id, n: wf.counts.pending + wf.counts.running }), { confirmLabel: t('workflow.cancel'), danger: true }))) return;
    try {
      const res = await api.post(api.routes.workflowAction(id, op));
      notify(op === 'cancel' ? t('notify.workflow_cancelled', { id, cancelled: res.cancelled, requested: res.requested }) : tn('notify.workflow_retried', { id, n: res.retried }), 'success');
      if (res.workflow) show(res.workflow);
    } catch (e) {
      notifyError(e);
    }
    poller.now();
  };

  const show = (w) => {
    wf = w;
    title.textContent = t('workflow.title_named', { id: w.id, name: w.name });
    document.title = `${w.name} · stask`;
    replace(badge, statusBadge(w.status));
    setProgress(bar, w.progress, w.status);
    counts.textContent = `${tn('workflow.task_count', { n: w.tasks })} · ${countsText(w.counts)}${w.started_by ? ` · ${t('workflow.by', { user: w.started_by })}` : ''}`;
    const mine = mayChange(w);
    const live = w.counts.pending + w.counts.running > 0;
    const ended = w.counts.failed + w.counts.cancelled > 0;
    replace(
      buttons,
      mine && live ? button(t('workflow.cancel'), () => act('cancel'), { cls: 'btn-warn', iconName: 'ui-stop', attrs: { id: 'workflow-cancel' } }) : null,
      mine && ended ? button(t('workflow.retry'), () => act('retry'), { cls: 'btn-primary', iconName: 'ui-retry', attrs: { id: 'workflow-retry' } }) : null,
    );
    const g = JSON.stringify(w.steps.map((st) => [st.step, st.after, st.task.id, st.task.status, st.task.progress]));
    if (g !== lastGraph) {
      lastGraph = g;
      replace(graphBox, graph(w.steps));
    }
    keyed(stepsBody, w.steps, (st) => st.step, (st) =>
      h(
        'tr',
        { 'data-step': st.step },
        h('th', { scope: 'row' }, st.step),
        h('td', null, link(`/tasks/${st.task.id}`, `#${st.task.id}`)),
        h('td', null, statusBadge(st.task.status)),
        h('td', { class: 'col-progress' }, progressBar(st.task.progress, { status: st.task.status, label: t('task.progress_of', { id: st.task.id }) })),
        h('td', null, st.after.length ? st.after.join(', ') + (st.after_any ? ` (${t('workflow.after_any')})` : '') : '—'),
        h('td', { class: 'col-message' }, st.task.message || ''),
      ),
    );
  };

  let last = '';
  const load = async () => {
    const w = await api.get(api.routes.workflow(id));
    const key = JSON.stringify(w);
    if (key === last) return false;
    last = key;
    show(w);
    return true;
  };
  const poller = new Poller(load, { min: 1000, max: 10000 });
  await load();
  poller.start();
  return { refresh: () => poller.now(), destroy: () => poller.stop() };
}
