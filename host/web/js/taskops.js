// Task operations shared by the dashboard, the task list, a worker's page and the
// task details page.

import * as api from './api.js';
import { h } from './dom.js';
import { t } from './i18n.js';
import { button, can, session, notify, notifyError, statusBadge, progressBar, workerCell, link, navigate, timeAgo } from './ui.js';

/** Which operations a task in `status` allows for the current user. */
export function allowedOps(task) {
  const st = task.status;
  // Operators may cancel and retry only the tasks they started; admins any.
  const mine = can('task.any') || (session.user && task.started_by === session.user.name);
  return {
    execute: can('task.execute') && st === 'pending',
    cancel: can('task.cancel') && mine && (st === 'pending' || st === 'running') && !task.cancel_requested,
    retry: can('task.retry') && mine && (st === 'failed' || st === 'cancelled'),
  };
}

const DONE_KEYS = {
  execute: 'notify.task_executed',
  cancel: 'notify.task_cancel',
  retry: 'notify.task_retried',
};

/** Runs execute / cancel / retry on a task and notifies; resolves to the API's answer. */
export async function runOp(task, op) {
  try {
    const res = await api.post(api.routes.taskAction(task.id, op));
    // cancel answers {result: "cancelled" | "requested"}; execute (202) and retry the task.
    const key = op === 'cancel' && res && res.result === 'requested' ? 'notify.task_cancel_requested' : DONE_KEYS[op];
    notify(t(key, { id: task.id }), 'success');
    return res;
  } catch (e) {
    notifyError(e);
    return null;
  }
}

/** Quick-action buttons for a task row; `after()` refreshes the view. */
export function quickActions(task, after) {
  const ops = allowedOps(task);
  const wrap = h('div', { class: 'quick-actions' });
  wrap.append(link(`/tasks/${task.id}`, t('action.view')));
  const mk = (op, iconName, cls) =>
    button(t(`action.${op}`), async () => {
      await runOp(task, op);
      after && after();
    }, { cls: `btn-small ${cls}`, iconName, attrs: { 'data-op': op, 'aria-label': `${t(`action.${op}`)} #${task.id}` } });
  if (ops.execute) wrap.append(mk('execute', 'ui-play', ''));
  if (ops.cancel) wrap.append(mk('cancel', 'ui-stop', 'btn-warn'));
  if (ops.retry) wrap.append(mk('retry', 'ui-retry', ''));
  return wrap;
}

/** One task as a table row. */
export function taskRow(task, { after, select = null, showMessage = false } = {}) {
  const cells = [];
  if (select) cells.push(h('td', { class: 'col-select' }, select));
  cells.push(
    h('td', { class: 'col-id' }, link(`/tasks/${task.id}`, `#${task.id}`)),
    h('td', { 'data-label': t('task.worker') }, workerCell(task)),
    h('td', { 'data-label': t('task.action') }, task.action),
    h('td', { 'data-label': t('task.status') }, statusBadge(task.status)),
    h('td', { class: 'col-progress', 'data-label': t('task.progress') }, progressBar(task.progress, { status: task.status, label: t('task.progress_of', { id: task.id }) })),
  );
  if (showMessage) cells.push(h('td', { class: 'col-message', 'data-label': t('task.message') }, task.message || ''));
  cells.push(
    h('td', { class: 'col-time', 'data-label': t('task.created') }, timeAgo(task.created_at)),
    h('td', { class: 'col-actions' }, quickActions(task, after)),
  );
  const row = h('tr', { class: 'row-link', 'data-task-id': task.id, 'data-status': task.status }, cells);
  // The whole row opens the task for pointer users; keyboard users have the #id link.
  // Clicks on the row's own controls, and clicks that end a text selection, do not.
  row.addEventListener('click', (ev) => {
    if (ev.button !== 0 || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.altKey || ev.defaultPrevented) return;
    if (ev.target instanceof Element && ev.target.closest('a, button, input, select, textarea, label, summary, [role="button"]')) return;
    const sel = window.getSelection && window.getSelection();
    if (sel && !sel.isCollapsed && row.contains(sel.anchorNode)) return;
    navigate(`/tasks/${task.id}`);
  });
  return row;
}

/** Unwraps a list answer: an array, or an object with tasks/items. */
export function listOf(res, key = 'tasks') {
  if (Array.isArray(res)) return res;
  if (!res || typeof res !== 'object') return [];
  return res[key] || res.items || res.data || [];
}
