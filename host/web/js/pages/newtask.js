// New task: an active worker, one of its actions, JSON data (checked in the browser:
// it must parse and be an object) and a priority.

import * as api from '../api.js';
import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { can, field, select, notify, navigate, pageHeader, errorText, PRIORITIES } from '../ui.js';
import { listOf } from '../taskops.js';
import { parseJsonObject } from './worker.js';

export async function mount(root, params, query) {
  if (!can('task.create')) {
    replace(root, pageHeader(t('title.new')), h('p', { class: 'notice' }, t('error.forbidden')));
    return {};
  }
  const workers = listOf(await api.get(api.routes.workers()), 'workers').filter((w) => w.active);
  if (!workers.length) {
    replace(root, pageHeader(t('title.new')), h('p', { class: 'notice' }, t('newtask.no_workers')), h('p', null, h('a', { href: '/workers', 'data-link': '' }, t('title.workers'))));
    return {};
  }
  const wanted = query.get('worker');
  const first = workers.find((w) => w.identifier === wanted) || workers[0];
  const workerSel = select(workers.map((w) => ({ value: w.identifier, label: `${w.title || w.identifier} (${w.identifier})` })), first.identifier, { name: 'worker', id: 'new-worker' });
  const actionSel = h('select', { name: 'action', id: 'new-action' });
  const actionHelp = h('p', { class: 'field-help action-help', id: 'action-description' });
  const data = h('textarea', { name: 'data', id: 'new-data', rows: 8, spellcheck: 'false', class: 'mono' }, query.get('data') || '{}');
  const prio = select(PRIORITIES.map((p) => ({ value: p, label: t(`priority.${p}`) })), 'normal', { name: 'priority', id: 'new-priority' });
  const attempts = h('input', { type: 'number', name: 'max_attempts', id: 'new-attempts', min: 1, max: 100, value: 3 });

  // GET /workers lists no actions; a worker's own page (GET /workers/{id}) has them.
  const details = new Map();
  const actionsOf = async (id) => {
    if (!details.has(id)) details.set(id, api.get(api.routes.worker(id)).then((w) => w.actions || []).catch(() => []));
    return details.get(id);
  };
  let actions = [];
  const fillActions = async (preferred) => {
    const id = workerSel.value;
    actionSel.disabled = true;
    const list = await actionsOf(id);
    if (workerSel.value !== id) return;
    actions = list;
    replace(actionSel, actions.map((a) => h('option', { value: a.name, selected: a.name === preferred }, `${a.title || a.name} (${a.name})`)));
    actionSel.disabled = false;
    describe();
  };
  const describe = () => {
    const a = actions.find((x) => x.name === actionSel.value);
    actionHelp.textContent = a ? a.description || '' : '';
  };
  workerSel.addEventListener('change', () => fillActions(null));
  actionSel.addEventListener('change', describe);
  await fillActions(query.get('action'));

  const fWorker = field(t('task.worker'), workerSel);
  const fAction = field(t('task.action'), actionSel, { extra: actionHelp });
  const fData = field(t('newtask.data'), data, { help: t('newtask.data_help') });
  const fPrio = field(t('task.priority'), prio);
  const fAttempts = field(t('newtask.max_attempts'), attempts);
  const msg = h('p', { class: 'form-message', role: 'status', id: 'new-task-message' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', id: 'create-task' }, t('newtask.submit'));
  const form = h('form', { class: 'card new-task-form', novalidate: true }, fWorker.wrap, fAction.wrap, fData.wrap, h('div', { class: 'two-fields' }, fPrio.wrap, fAttempts.wrap), h('div', { class: 'form-actions' }, submit, msg));

  const check = () => {
    const parsed = parseJsonObject(data.value);
    fData.setError(parsed.error || null);
    return parsed;
  };
  data.addEventListener('blur', check);
  data.addEventListener('input', () => {
    if (data.getAttribute('aria-invalid')) check();
  });

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    msg.textContent = '';
    const parsed = check();
    if (parsed.error) {
      data.focus();
      return;
    }
    const n = Number(attempts.value);
    if (!Number.isInteger(n) || n < 1 || n > 100) {
      fAttempts.setError(t('newtask.bad_attempts'));
      attempts.focus();
      return;
    }
    fAttempts.setError(null);
    submit.disabled = true;
    try {
      const res = await api.post(api.routes.tasks(), { worker: workerSel.value, action: actionSel.value, data: parsed.value, priority: prio.value, max_attempts: n });
      const id = res.id ?? (res.task && res.task.id) ?? (Array.isArray(res.ids) ? res.ids[0] : undefined);
      notify(t('notify.task_created', { id }), 'success');
      navigate(`/tasks/${id}`);
    } catch (e) {
      const map = { worker: fWorker, action: fAction, data: fData, priority: fPrio, max_attempts: fAttempts };
      const f = e.field && (map[e.field] || (e.field.startsWith('data') ? fData : null));
      if (f) f.setError(e.message);
      else msg.textContent = errorText(e);
    } finally {
      submit.disabled = false;
    }
  });

  replace(root, pageHeader(t('title.new')), form);
  return {};
}
