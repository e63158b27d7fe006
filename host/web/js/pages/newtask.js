// New task: an active worker, one of its actions, JSON data (checked in the browser:
// it must parse and be an object) and a priority; optionally a unique key (with the
// period and statuses in which a task with it counts): when such a task is there, the
// API answers it instead of creating one and the page opens it. "Runs after" names
// tasks it waits for (`after`, and `after_any` to run whatever their outcome).

import * as api from '../api.js';
import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { can, field, select, notify, navigate, pageHeader, errorText, PRIORITIES, STATUSES } from '../ui.js';
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
  const uniqueKey = h('input', { type: 'text', name: 'unique_key', id: 'new-unique-key', maxlength: 512, autocomplete: 'off', class: 'mono' });
  const uniqueFor = h('input', { type: 'text', name: 'unique_for', id: 'new-unique-for', autocomplete: 'off', placeholder: '10m' });
  // The API's default statuses (pending and running) start checked.
  const DEFAULT_STATES = ['pending', 'running'];
  const stateBoxes = STATUSES.map((s) => h('input', { type: 'checkbox', value: s, checked: DEFAULT_STATES.includes(s), id: `new-unique-state-${s}` }));
  const noUnique = h('input', { type: 'checkbox', name: 'no_unique', id: 'new-no-unique' });
  const after = h('input', { type: 'text', name: 'after', id: 'new-after', autocomplete: 'off', inputmode: 'numeric', class: 'mono', placeholder: '12, 15', value: query.get('after') || '' });
  const afterAny = h('input', { type: 'checkbox', name: 'after_any', id: 'new-after-any' });

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
    // An action's default key: shown as the placeholder, and it can be turned off.
    const template = a && a.unique_key ? a.unique_key : '';
    uniqueKey.placeholder = template;
    keyDefault.textContent = template ? t('newtask.unique_key_default', { template }) : '';
    fNoUnique.wrap.hidden = !template;
    if (!template) noUnique.checked = false;
  };
  const keyDefault = h('p', { class: 'field-help', id: 'new-unique-key-default' });
  const fNoUnique = field(t('newtask.no_unique'), noUnique);
  workerSel.addEventListener('change', () => fillActions(null));
  actionSel.addEventListener('change', describe);
  await fillActions(query.get('action'));

  const fWorker = field(t('task.worker'), workerSel);
  const fAction = field(t('task.action'), actionSel, { extra: actionHelp });
  const fData = field(t('newtask.data'), data, { help: t('newtask.data_help') });
  const fPrio = field(t('task.priority'), prio);
  const fAttempts = field(t('newtask.max_attempts'), attempts);
  const fAfter = field(t('newtask.after'), after, { help: t('newtask.after_help') });
  const fAfterAny = field(t('newtask.after_any'), afterAny);
  const fUniqueKey = field(t('newtask.unique_key'), uniqueKey, { help: t('newtask.unique_key_help'), extra: keyDefault });
  const fUniqueFor = field(t('newtask.unique_for'), uniqueFor, { help: t('newtask.unique_for_help') });
  const statesErr = h('p', { class: 'field-error', id: 'new-unique-states-err', role: 'alert', hidden: true });
  const statesSet = h('fieldset', { class: 'days unique-states', id: 'new-unique-states', 'aria-describedby': 'new-unique-states-err' }, h('legend', null, t('newtask.unique_states')),
    stateBoxes.map((b) => h('label', { class: 'inline-check', for: b.id }, b, t(`status.${b.value}`))), statesErr);
  const fStates = {
    setError: (m) => {
      statesErr.textContent = m || '';
      statesErr.hidden = !m;
    },
  };
  const uniqueSet = h('details', { class: 'unique-options', id: 'new-unique' }, h('summary', null, t('newtask.unique')), fUniqueKey.wrap, h('div', { class: 'two-fields' }, fUniqueFor.wrap), statesSet, fNoUnique.wrap);
  const msg = h('p', { class: 'form-message', role: 'status', id: 'new-task-message' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', id: 'create-task' }, t('newtask.submit'));
  const form = h('form', { class: 'card new-task-form', novalidate: true }, fWorker.wrap, fAction.wrap, fData.wrap, h('div', { class: 'two-fields' }, fPrio.wrap, fAttempts.wrap), fAfter.wrap, fAfterAny.wrap, uniqueSet, h('div', { class: 'form-actions' }, submit, msg));

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
    for (const f of [fUniqueKey, fUniqueFor, fStates, fNoUnique, fAfter, fAfterAny]) f.setError(null);
    const deps = parseIds(after.value);
    if (!deps) {
      fAfter.setError(t('newtask.after_invalid'));
      after.focus();
      return;
    }
    const body = { worker: workerSel.value, action: actionSel.value, data: parsed.value, priority: prio.value, max_attempts: n };
    if (deps.length) body.after = deps;
    // Without ids the API says what is missing, next to the field.
    if (afterAny.checked) body.after_any = true;
    const key = uniqueKey.value.trim();
    if (key) body.unique_key = key;
    if (noUnique.checked && !key) body.no_unique = true;
    // Period and statuses mean something only with a key (given, or the action's).
    if (key || (uniqueKey.placeholder && !noUnique.checked)) {
      const within = uniqueFor.value.trim();
      if (within) body.unique_for = within;
      const states = stateBoxes.filter((b) => b.checked).map((b) => b.value);
      if (!states.length) {
        fStates.setError(t('newtask.unique_states_none'));
        uniqueSet.open = true;
        stateBoxes[0].focus();
        return;
      }
      if (states.join() !== DEFAULT_STATES.join()) body.unique_states = states;
    }
    submit.disabled = true;
    try {
      const res = await api.post(api.routes.tasks(), body);
      const id = res.id ?? (res.task && res.task.id) ?? (Array.isArray(res.ids) ? res.ids[0] : undefined);
      if (res.existing) notify(t('notify.task_existing', { id, key: res.unique_key }), 'info');
      else notify(t('notify.task_created', { id }), 'success');
      navigate(`/tasks/${id}`);
    } catch (e) {
      const map = { worker: fWorker, action: fAction, data: fData, priority: fPrio, max_attempts: fAttempts, unique_key: fUniqueKey, unique_for: fUniqueFor, unique_states: fStates, no_unique: fNoUnique, after: fAfter, after_any: fAfter };
      if (e.field && e.field.startsWith('unique')) uniqueSet.open = true;
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

/** Task ids typed as `12, 15` (commas or spaces); `[]` when empty, `null` when not ids. */
export function parseIds(text) {
  const parts = String(text).split(/[\s,]+/).filter(Boolean);
  const ids = parts.map((p) => (/^#?\d+$/.test(p) ? Number(p.replace('#', '')) : NaN));
  if (ids.some((n) => !Number.isSafeInteger(n) || n < 1)) return null;
  return [...new Set(ids)];
}
