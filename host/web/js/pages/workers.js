// Workers: every registered worker with its state and task count; Discover, Rescan and
// Clean Orphaned for administrators.

import * as api from '../api.js';
import { h, replace, keyed } from '../dom.js';
import { t, tn, num, relativeTime } from '../i18n.js';
import { icon } from '../icons.js';
import { Poller } from '../live.js';
import { button, can, notify, notifyError, pageHeader, link, confirmDialog } from '../ui.js';
import { listOf } from '../taskops.js';
import { scheduleDescription } from '../servicetext.js';

export function taskCount(w) {
  if (typeof w.task_count === 'number') return w.task_count;
  if (typeof w.tasks_count === 'number') return w.tasks_count;
  if (w.tasks && typeof w.tasks.total === 'number') return w.tasks.total;
  if (w.stats && typeof w.stats.total === 'number') return w.stats.total;
  if (w.counts && typeof w.counts.total === 'number') return w.counts.total;
  return 0;
}

/** The activate / deactivate switch of a worker (administrators only). */
export function activeToggle(w, after) {
  const sw = h(
    'button',
    {
      type: 'button',
      role: 'switch',
      class: 'switch',
      'aria-checked': String(!!w.active),
      'aria-label': t('workers.toggle_label', { id: w.identifier }),
      'data-toggle': w.identifier,
    },
    h('span', { class: 'switch-knob', 'aria-hidden': 'true' }),
    h('span', { class: 'switch-text' }, w.active ? t('workers.active') : t('workers.inactive')),
  );
  sw.addEventListener('click', async () => {
    sw.disabled = true;
    const activate = sw.getAttribute('aria-checked') !== 'true';
    try {
      await api.post(api.routes.workerAction(w.identifier, activate ? 'activate' : 'deactivate'));
      w.active = activate;
      sw.setAttribute('aria-checked', String(activate));
      sw.querySelector('.switch-text').textContent = activate ? t('workers.active') : t('workers.inactive');
      notify(t(activate ? 'notify.worker_activated' : 'notify.worker_deactivated', { id: w.identifier }), 'success');
      after && after();
    } catch (e) {
      notifyError(e);
    } finally {
      sw.disabled = false;
    }
  });
  return sw;
}

/** One line of what the worker's runs may touch beyond the sandbox's baseline. */
function accessLine(w) {
  const a = w.access;
  if (!a) return null;
  const list = (v) => (v && v.length ? v.join(', ') : t('sandbox.nothing'));
  return h(
    'p',
    { class: 'field-help worker-access', 'data-access-summary': w.identifier },
    `${t('sandbox.title')}: ${t('sandbox.reads')} ${list(a.reads)} · ${t('sandbox.writes')} ${list(a.writes)} · ${t('sandbox.connects')} ${list(a.connects)}`,
  );
}

function libraryMissing(w) {
  return w.library_exists === false || (w.library && w.library.exists === false);
}

export function activeIndicator(w) {
  return h('span', { class: `indicator ${w.active ? 'on' : 'off'}`, 'data-active': String(!!w.active) }, h('span', { class: 'dot', 'aria-hidden': 'true' }), w.active ? t('workers.active') : t('workers.inactive'));
}

function names(list) {
  return (list || []).map((x) => (typeof x === 'string' ? x : x.identifier || x.path || '?')).join(', ');
}

export function discoverMessage(r) {
  if (!r) return t('notify.discover_none');
  const parts = [];
  if (r.registered && r.registered.length) parts.push(tn('notify.discover_registered', { n: r.registered.length, names: names(r.registered) }));
  if (r.relocated && r.relocated.length) parts.push(t('notify.discover_relocated', { n: r.relocated.length, names: names(r.relocated) }));
  if (r.held && r.held.length) parts.push(t('notify.discover_held', { n: r.held.length, names: names(r.held) }));
  if (r.restored && r.restored.length) parts.push(tn('notify.discover_restored', { n: r.restored.length, names: names(r.restored) }));
  if (r.skipped && r.skipped.length) parts.push(tn('notify.discover_skipped', { n: r.skipped.length, names: r.skipped.map((s) => `${(s.path || '').split('/').pop()} (${s.reason})`).join('; ') }));
  if (!parts.length) parts.push(t('notify.discover_none'));
  if (typeof r.already_registered === 'number') parts.push(t('notify.discover_known', { n: r.already_registered }));
  return parts.join(' ');
}

/** Whether a discover / rescan answer reports something an operator must look at. */
export function reportsProblems(r) {
  if (!r) return false;
  return ['missing', 'failed', 'skipped', 'held'].some((k) => Array.isArray(r[k]) && r[k].length > 0);
}

export function rescanMessage(r) {
  if (!r) return t('notify.rescan_none');
  const parts = [];
  if (r.updated && r.updated.length) parts.push(tn('notify.rescan_updated', { n: r.updated.length, names: names(r.updated) }));
  if (r.failed && r.failed.length) parts.push(tn('notify.rescan_failed', { n: r.failed.length, names: r.failed.map((s) => `${(s.path || '').split('/').pop()} (${s.reason})`).join('; ') }));
  if (r.missing && r.missing.length) parts.push(tn('notify.rescan_missing', { n: r.missing.length, names: names(r.missing) }));
  if (!parts.length) parts.push(t('notify.rescan_none'));
  if (typeof r.unchanged === 'number') parts.push(t('notify.rescan_unchanged', { n: r.unchanged }));
  return parts.join(' ');
}

export function orphanMessage(r) {
  const list = r && (r.deleted || r.removed || r.workers);
  if (list && list.length) return tn('notify.orphans_removed', { n: list.length, names: names(list) });
  return t('notify.orphans_none');
}

/**
 * A worker's schedule on its card: what it is and when it next runs ("in 3 hours", the
 * time itself on hover), or that it runs on demand.
 */
export function scheduleLine(sched, id = null) {
  const kind = sched && sched.kind ? sched.kind : 'manual';
  if (kind === 'manual') return h('p', { class: 'worker-schedule muted', 'data-schedule': 'manual', id }, icon('clock', { size: 16 }), ' ', t('workers.schedule_manual'));
  let next = null;
  if (sched.paused) next = t('workers.schedule_paused');
  else if (sched.next_run) {
    // The sentence is translated whole; the time goes where its placeholder is.
    const [before, after = ''] = t('workers.next_run', { when: '\u0000' }).split('\u0000');
    const when = h('time', { datetime: new Date(sched.next_run.at).toISOString(), title: sched.next_run.local, 'data-reltime': sched.next_run.at, class: 'next-run' }, relativeTime(sched.next_run.at));
    next = h('span', { class: 'schedule-next' }, before, when, after);
  }
  return h('p', { class: 'worker-schedule', 'data-schedule': kind, id }, icon('clock', { size: 16 }), ' ', h('span', { class: 'schedule-desc' }, scheduleDescription(sched) || t(`schedule.kind.${kind}`)), next ? [' · ', next] : null);
}

export async function mount(root) {
  const grid = h('div', { class: 'worker-grid', id: 'worker-list', 'aria-live': 'polite' });
  const actions = [];
  let shown = [];
  const op = (label, route, msg, iconName, id, confirm = null) =>
    button(label, async () => {
      if (confirm && !(await confirmDialog(confirm(), { confirmLabel: label, danger: true }))) return;
      try {
        const res = await api.post(route);
        // An answer that reports a problem (a library gone or refused, a worker held)
        // is a warning, never a green success.
        notify(msg(res), reportsProblems(res) ? 'warning' : 'success', { timeout: 10000 });
      } catch (e) {
        notifyError(e);
      }
      poller.now();
    }, { iconName, attrs: { id } });
  if (can('worker.discover')) {
    actions.push(
      op(t('workers.discover'), api.routes.discover(), discoverMessage, 'search', 'discover-workers'),
      op(t('workers.rescan'), api.routes.rescan(), rescanMessage, 'sync', 'rescan-workers'),
      op(t('workers.clean_orphaned'), api.routes.cleanOrphaned(), orphanMessage, 'trash', 'clean-orphaned', () => {
        const missing = shown.filter(libraryMissing).map((w) => w.identifier);
        return missing.length ? t('workers.clean_orphaned_confirm', { names: missing.join(', ') }) : t('workers.clean_orphaned_confirm_unknown');
      }),
    );
  }
  replace(root, pageHeader(t('title.workers'), ...actions), grid);

  let last = '';
  const load = async () => {
    const res = await api.get(api.routes.workers());
    const list = listOf(res, 'workers');
    shown = list;
    const key = JSON.stringify(list);
    if (key === last) return false;
    last = key;
    if (!list.length) {
      replace(grid, h('p', { class: 'empty-state' }, t('workers.none')));
      return true;
    }
    keyed(grid, list, (w) => w.identifier, card);
    return true;
  };
  const card = (w) =>
    h(
      'article',
      { class: `worker-card ${w.active ? '' : 'inactive'}`, 'data-worker': w.identifier },
      h(
        'div',
        { class: 'worker-head' },
        h('span', { class: 'worker-icon' }, icon(w.icon, { size: 28 })),
        h('div', { class: 'worker-title' }, h('h2', null, link(`/workers/${encodeURIComponent(w.identifier)}`, w.title || w.identifier)), h('code', { class: 'worker-id' }, w.identifier), w.scope ? h('span', { class: 'tag' }, w.scope) : null),
      ),
      h('p', { class: 'worker-desc' }, w.description || ''),
      w.inactive_reason ? h('p', { class: 'notice', 'data-inactive-reason': w.identifier }, t('workers.inactive_reason', { reason: w.inactive_reason })) : null,
      accessLine(w),
      scheduleLine(w.schedule),
      h(
        'div',
        { class: 'worker-foot' },
        activeIndicator(w),
        h('span', { class: 'worker-count' }, t('workers.task_count', { n: num(taskCount(w)) })),
        libraryMissing(w) ? h('span', { class: 'tag tag-warn' }, t('workers.library_missing')) : null,
        can('worker.toggle') ? activeToggle(w, () => poller.now()) : null,
      ),
    );
  const poller = new Poller(load, { min: 2000, max: 25000 });
  await load();
  poller.start();
  return { refresh: () => poller.now(), destroy: () => poller.stop() };
}
