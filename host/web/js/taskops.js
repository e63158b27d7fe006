// Task operations shared by the dashboard, the task list, a worker's page and the
// task details page.

import * as api from './api.js';
import { h } from './dom.js';
import { t, tn, dateTime, relativeTime } from './i18n.js';
import { serviceText } from './servicetext.js';
import { button, can, session, notify, notifyError, statusBadge, progressBar, workerCell, link, navigate, timeAgo } from './ui.js';

/**
 * Which operations the current user may take on a task: what the API says
 * (`task.allowed`, decided by the rules the operations apply). Only task summaries from
 * elsewhere that lack it (the dashboard's) fall back to the role table.
 */
export function allowedOps(task) {
  if (task.allowed && typeof task.allowed === 'object') {
    const a = task.allowed;
    return { execute: !!a.execute, cancel: !!a.cancel, retry: !!a.retry };
  }
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
  cancel: 'notify.task_cancel',
  retry: 'notify.task_retried',
};

/**
 * The variant of a waiting code's text: a held worker, dependencies not listed, or a
 * limit per key used up by its rate rather than its concurrency.
 */
function suffix(w) {
  if (w.code === 'worker_inactive' && w.reason === 'held') return '_held';
  if (w.code === 'dependencies' && !(Array.isArray(w.waiting_on) && w.waiting_on.length)) return '_none';
  if (w.code === 'limit' && w.kind === 'rate') return '_rate';
  return '';
}

/** A limit's rate period (`per_secs`) in the largest whole unit: `1 min`, `90 s`. */
function limitPeriod(secs) {
  if (typeof secs !== 'number' || secs <= 0) return '';
  for (const [unit, n] of [['d', 86400], ['h', 3600], ['min', 60]]) {
    if (secs >= n && secs % n === 0) return t(`limit_period.${unit}`, { n: secs / n });
  }
  return t('limit_period.s', { n: secs });
}

/** The parameters a `limit` code's texts use (the key is plugin data: shown as text). */
function limitParams(w) {
  return {
    key: typeof w.key === 'string' ? w.key : '',
    in_use: w.in_use ?? '',
    period: limitPeriod(w.per_secs),
  };
}

/** `#3, #4`: the tasks a task waits for (`waiting_on`). */
function waitingIds(w) {
  return Array.isArray(w.waiting_on) ? w.waiting_on.map((id) => `#${id}`).join(', ') : '';
}

/**
 * Why a pending task waits, in the current language: the API sends a code with its
 * parameters (`{code: "retry_at", at}`); an unknown code is shown as it is.
 */
export function waitingText(w) {
  if (!w || typeof w !== 'object' || typeof w.code !== 'string') return '';
  const key = `waiting.${w.code}${suffix(w)}`;
  const text = t(key, {
    ids: waitingIds(w),
    at: typeof w.at === 'number' ? dateTime(w.at) : '',
    limit: w.limit ?? '',
    running: w.running ?? '',
    capacity: w.capacity ?? '',
    until: typeof w.until === 'number' ? dateTime(w.until) : '',
    ...limitParams(w),
  });
  return text === key ? w.code : text;
}

/**
 * Why a pending task waits, in a few words for a table row ("worker inactive", "retry in
 * 3 minutes", "slots busy 2/2"); waitingText() has the whole sentence.
 */
export function waitingShort(w) {
  if (!w || typeof w !== 'object' || typeof w.code !== 'string') return '';
  const key = `waiting_short.${w.code}${suffix(w)}`;
  const text = t(key, {
    ids: waitingIds(w),
    at: typeof w.at === 'number' ? relativeTime(w.at) : '',
    limit: w.limit ?? '',
    running: w.running ?? '',
    capacity: w.capacity ?? '',
    ...limitParams(w),
  });
  return text === key ? w.code : text;
}

/** What execute did (its answer: the task with `result` and `waiting`), in words. */
export function executeMessage(id, res) {
  if (res && res.result === 'waiting') {
    return [t('notify.task_executed_waiting', { id, why: waitingText(res.waiting) || t('waiting.queued') }), 'warn'];
  }
  if (res && res.result === 'started') {
    if (res.status === 'running') return [t('notify.task_executed_running', { id }), 'success'];
    // A quick attempt already ended: for good, or back to pending for its next retry.
    if (res.status === 'pending') return [t('notify.task_executed_again', { id, n: res.attempts, why: waitingText(res.waiting) }), 'warn'];
    return [t('notify.task_executed_ended', { id, status: t(`status.${res.status}`) }), res.status === 'completed' ? 'success' : 'warn'];
  }
  return [t('notify.task_executed_due', { id }), 'info'];
}

/**
 * What "Process tasks" did (`{claimable, made_due, starting, waiting: {code: n}}`):
 * how many start now and, per reason, how many keep waiting.
 */
export function processMessage(res) {
  if (!res || typeof res !== 'object') return t('notify.process_none');
  const waiting = res.waiting && typeof res.waiting === 'object' ? res.waiting : {};
  const reasons = Object.entries(waiting).filter(([, n]) => typeof n === 'number' && n > 0);
  const starting = typeof res.starting === 'number' ? res.starting : res.claimable || 0;
  if (!starting && !reasons.length) return t('notify.process_none');
  const parts = [];
  if (starting) parts.push(tn('notify.process_starting', { n: starting }));
  for (const [code, n] of reasons) parts.push(tn(`notify.process_waiting_${code}`, { n }));
  return parts.join(' ');
}

/** Runs execute / cancel / retry on a task and notifies; resolves to the API's answer. */
export async function runOp(task, op) {
  try {
    const res = await api.post(api.routes.taskAction(task.id, op));
    if (op === 'execute') {
      // The answer says whether a service took the task, or why it still waits.
      const [message, kind] = executeMessage(task.id, res);
      notify(message, kind);
      return res;
    }
    // cancel answers {result: "cancelled" | "requested"}; retry the task.
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

/** A pending task's reason to wait, short, with the whole sentence on hover. */
function waitingNote(task) {
  if (task.status !== 'pending' || !task.waiting) return null;
  const short = waitingShort(task.waiting);
  if (!short) return null;
  return h('span', { class: `waiting-note waiting-${task.waiting.code}`, 'data-waiting': task.waiting.code, title: waitingText(task.waiting) }, short);
}

/** One task as a table row. */
export function taskRow(task, { after, select = null, showMessage = false } = {}) {
  const cells = [];
  if (select) cells.push(h('td', { class: 'col-select' }, select));
  cells.push(
    h('td', { class: 'col-id' }, link(`/tasks/${task.id}`, `#${task.id}`)),
    h('td', { 'data-label': t('task.worker') }, workerCell(task)),
    h('td', { 'data-label': t('task.action') }, task.action),
    h('td', { class: 'col-status', 'data-label': t('task.status') }, statusBadge(task.status), waitingNote(task)),
    h('td', { class: 'col-progress', 'data-label': t('task.progress') }, progressBar(task.progress, { status: task.status, label: t('task.progress_of', { id: task.id }) })),
  );
  if (showMessage) {
    // The service's own messages in the user's language; what plugins write unchanged.
    const text = serviceText(task.message || (task.status === 'failed' ? task.error : '') || '');
    cells.push(h('td', { class: 'col-message', 'data-label': t('task.message'), title: text || null }, text));
  }
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
