// One worker: details, run an action, schedule, settings form generated from the
// declared schema, statistics and recent tasks.

import * as api from '../api.js';
import { h, replace, nextId, jsonText } from '../dom.js';
import { t, num, dateTime, duration } from '../i18n.js';
import { icon } from '../icons.js';
import { Poller } from '../live.js';
import { button, can, notify, notifyError, field, select, emptyRow, navigate, link, errorText, STATUSES } from '../ui.js';
import { taskRow, listOf } from '../taskops.js';
import { activeToggle, activeIndicator, taskCount, scheduleLine } from './workers.js';
import { countsOf } from './stats.js';
import { scheduleDescription, serviceText } from '../servicetext.js';
import { barChart } from '../charts.js';

const TIMEOUT_KEY = 'timeout_secs';

/** Settings every worker accepts, enforced by the host: [key, kind]. */
const HOST_SETTINGS = [
  ['max_memory_mb', 'integer'],
  ['max_cpu_secs', 'integer'],
  ['max_open_files', 'integer'],
  ['sandbox_reads', 'string'],
  ['sandbox_writes', 'string'],
  ['sandbox_connects', 'string'],
  // Limits per key: a JSON array replacing the worker's own (issue 17).
  ['limits', 'json'],
];

export async function mount(root, params) {
  const id = params.id;
  let worker = await api.get(api.routes.worker(id));
  worker = worker.worker || worker;

  const statsBox = h('div', { class: 'worker-stats' });
  const tasksBody = h('tbody');
  const scheduleBox = h('section', { class: 'card', id: 'schedule', 'aria-labelledby': 'schedule-title' });
  const settingsBox = h('section', { class: 'card', id: 'settings', 'aria-labelledby': 'settings-title' });

  const header = h(
    'div',
    { class: 'worker-header card' },
    h('span', { class: 'worker-icon big' }, icon(worker.icon, { size: 40 })),
    h(
      'div',
      { class: 'worker-header-main' },
      h('h1', { id: 'page-title', tabindex: '-1' }, worker.title || worker.identifier),
      h('p', { class: 'worker-meta' }, h('code', null, worker.identifier), worker.scope ? h('span', { class: 'tag' }, worker.scope) : null, worker.version ? h('span', { class: 'muted' }, `v${worker.version}`) : null, activeIndicator(worker)),
      h('p', { class: 'worker-desc' }, worker.description || ''),
      scheduleLine(worker.schedule, 'worker-schedule-line'),
    ),
    h('div', { class: 'worker-header-actions' }, can('worker.toggle') ? activeToggle(worker, () => navigate(location.pathname)) : null),
  );

  replace(
    root,
    h('p', { class: 'breadcrumb' }, link('/workers', t('title.workers')), ' / ', worker.identifier),
    header,
    runActionCard(worker),
    h('div', { class: 'two-col' }, scheduleBox, settingsBox),
    sandboxCard(worker),
    h('section', { class: 'card' }, h('h2', null, t('worker.statistics')), statsBox),
    h(
      'section',
      { class: 'card' },
      h('div', { class: 'card-header' }, h('h2', null, t('worker.recent_tasks')), link(`/tasks?worker=${encodeURIComponent(id)}`, t('dashboard.all_tasks'))),
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'table tasks-table' },
          h('thead', null, h('tr', null, ['task.id', 'task.worker', 'task.action', 'task.status', 'task.progress', 'task.created', 'task.actions'].map((k) => h('th', { scope: 'col' }, t(k))))),
          tasksBody,
        ),
      ),
    ),
  );

  renderSettings(settingsBox, worker);
  // The schedule, the tasks and the statistics are asked for at once.
  const scheduled = renderSchedule(scheduleBox, worker);

  let last = '';
  const load = async () => {
    const [tasks, stats] = await Promise.all([
      api.get(api.routes.tasks({ worker: id, limit: 10 })),
      api.get(api.routes.statsWorkers()).catch(() => null),
    ]);
    const list = listOf(tasks).slice(0, 10);
    const key = JSON.stringify([list, stats]);
    if (key === last) return false;
    last = key;
    replace(tasksBody, list.length ? list.map((task) => taskRow({ ...task, scope: worker.scope }, { after: () => poller.now() })) : emptyRow(7, t('tasks.none')));
    renderStats(statsBox, worker, stats);
    return true;
  };
  const poller = new Poller(load, { min: 1000, max: 25000 });
  await Promise.all([load(), scheduled]);
  poller.start();
  return { refresh: () => poller.now(), destroy: () => poller.stop() };
}

/** Counts from GET /stats/workers (all time), with rates and durations. */
function renderStats(box, worker, stats) {
  const row = stats && Array.isArray(stats.workers) ? stats.workers.find((w) => w.worker === worker.identifier) : null;
  const c = row ? countsOf(row) : countsOf({ ...(worker.tasks || {}), total: taskCount(worker) });
  const items = STATUSES.map((s) => ({ label: t(`status.${s}`), value: c[s] || 0, cls: `fill-${s}` }));
  const pct = (r) => (typeof r === 'number' ? `${Math.round(r * 1000) / 10} %` : '—');
  const figs = [['status.total', num(c.total || 0)], ...STATUSES.map((s) => [`status.${s}`, num(c[s] || 0)])];
  if (row) {
    figs.push(['stats.success_rate', pct(row.success_rate)]);
    figs.push(['stats.avg_duration', typeof row.average_duration_ms === 'number' ? duration(row.average_duration_ms) : '—']);
    figs.push(['stats.last_execution', row.last_execution ? dateTime(row.last_execution) : '—']);
  }
  replace(
    box,
    h('dl', { class: 'figures', id: 'worker-figures' }, figs.map(([k, v]) => h('div', null, h('dt', null, t(k)), h('dd', { 'data-figure': k, class: k === 'stats.last_execution' ? 'small' : null }, v)))),
    barChart(items, { title: t('stats.by_status') }),
  );
}

// ---- run an action ---------------------------------------------------------------------

function runActionCard(worker) {
  const actions = worker.actions || [];
  if (!can('task.create') || !actions.length) {
    return h('section', { class: 'card' }, h('h2', null, t('worker.actions')), h('ul', { class: 'action-list' }, actions.map((a) => h('li', null, h('strong', null, a.title || a.name), ' ', h('code', null, a.name), a.description ? h('p', { class: 'muted' }, a.description) : null))));
  }
  const sel = select(actions.map((a) => ({ value: a.name, label: `${a.title || a.name} (${a.name})` })), actions[0].name, { id: 'run-action-select' });
  const desc = h('p', { class: 'field-help' });
  const update = () => {
    const a = actions.find((x) => x.name === sel.value);
    desc.textContent = a ? a.description || '' : '';
  };
  sel.addEventListener('change', update);
  update();
  const f = field(t('worker.action'), sel);
  return h(
    'section',
    { class: 'card run-action' },
    h('h2', null, t('worker.run_action')),
    h('div', { class: 'inline-form' }, f.wrap, button(t('worker.run'), () => navigate(`/tasks/new?worker=${encodeURIComponent(worker.identifier)}&action=${encodeURIComponent(sel.value)}`), { cls: 'btn-primary', iconName: 'ui-play', attrs: { id: 'run-action' } })),
    desc,
    worker.active ? null : h('p', { class: 'notice' }, t('worker.inactive_note')),
    worker.inactive_reason ? h('p', { class: 'notice', 'data-inactive-reason': worker.identifier }, t('workers.inactive_reason', { reason: worker.inactive_reason })) : null,
  );
}

// ---- sandbox -----------------------------------------------------------------------------

/** What the worker's runs may touch beyond the baseline: what applies, and what it declares. */
function sandboxCard(worker) {
  const access = worker.access || { reads: [], writes: [], connects: [], declared: {} };
  const declared = access.declared || {};
  const row = (kind) => {
    const now = access[kind] || [];
    const own = declared[kind] || [];
    const changed = JSON.stringify(now) !== JSON.stringify(own);
    return h(
      'div',
      null,
      h('dt', null, t(`sandbox.${kind}`)),
      h(
        'dd',
        { 'data-access': kind },
        now.length ? h('code', null, now.join(', ')) : h('span', { class: 'muted' }, t('sandbox.nothing')),
        changed ? h('p', { class: 'field-help' }, t('sandbox.declared', { list: own.length ? own.join(', ') : t('sandbox.nothing') })) : null,
      ),
    );
  };
  return h(
    'section',
    { class: 'card', id: 'sandbox', 'aria-labelledby': 'sandbox-title' },
    h('h2', { id: 'sandbox-title' }, t('sandbox.title')),
    h('p', { class: 'field-help' }, t('sandbox.help')),
    h(
      'dl',
      { class: 'figures' },
      row('reads'),
      row('writes'),
      row('connects'),
      // Follow-up tasks its runs may create (the manifest's declaration; not a setting).
      h(
        'div',
        null,
        h('dt', null, t('sandbox.enqueues')),
        h(
          'dd',
          { 'data-access': 'enqueues' },
          worker.enqueues?.length ? h('code', null, worker.enqueues.join(', ')) : h('span', { class: 'muted' }, t('sandbox.nothing')),
        ),
      ),
    ),
  );
}

// ---- settings ----------------------------------------------------------------------------

function isSecretValue(v) {
  return v && typeof v === 'object' && v.secret === true;
}

/** The settings schema with the host's timeout_secs appended. */
function schemaOf(worker) {
  const schema = [...(worker.settings_schema || worker.schema || [])];
  if (!schema.some((s) => s.key === TIMEOUT_KEY)) {
    schema.push({ key: TIMEOUT_KEY, title: t('worker.timeout'), description: t('worker.timeout_help'), kind: 'integer', default: null, required: false, secret: false, builtin: true });
  }
  for (const [key, kind] of HOST_SETTINGS) {
    if (!schema.some((s) => s.key === key)) {
      schema.push({ key, title: t(`host_setting.${key}`), description: t(`host_setting.${key}_help`), kind, default: null, required: false, secret: false, builtin: true });
    }
  }
  return schema;
}

/** Parses a field's text as its kind; returns {value} or {error}. */
export function parseSetting(kind, raw) {
  const text = raw.trim();
  switch (kind) {
    case 'integer':
      if (!/^-?\d+$/.test(text)) return { error: t('settings.expect_integer') };
      if (!Number.isSafeInteger(Number(text))) return { error: t('settings.expect_integer') };
      return { value: Number(text) };
    case 'number':
      if (text === '' || !Number.isFinite(Number(text))) return { error: t('settings.expect_number') };
      return { value: Number(text) };
    case 'boolean':
      return { value: raw === true || raw === 'true' };
    case 'json':
      try {
        return { value: JSON.parse(text) };
      } catch {
        return { error: t('settings.expect_json') };
      }
    default:
      return { value: raw };
  }
}

function renderSettings(box, worker) {
  const editable = can('worker.settings');
  const schema = schemaOf(worker);
  const current = worker.settings || {};
  const fields = [];
  const form = h('form', { class: 'settings-form', novalidate: true, id: 'settings-form' });
  for (const spec of schema) {
    const cur = current[spec.key];
    const label = spec.title ? `${spec.title} (${spec.key})` : spec.key;
    let input;
    let extra = null;
    let clear = null;
    if (spec.secret) {
      const isSet = isSecretValue(cur) ? !!cur.set : !!cur;
      // Write-only: never pre-filled; the field only says whether a value is stored.
      input = h('input', { type: 'password', autocomplete: 'new-password', name: spec.key, placeholder: isSet ? t('settings.secret_keep') : '', disabled: !editable, 'data-key': spec.key });
      clear = editable && isSet ? h('input', { type: 'checkbox', id: nextId('clr'), 'data-clear': spec.key }) : null;
      extra = h('div', { class: 'secret-state' }, h('span', { class: `tag ${isSet ? 'tag-ok' : ''}`, 'data-secret-state': spec.key }, isSet ? t('settings.set') : t('settings.not_set')), clear ? h('label', { class: 'inline-check' }, clear, t('settings.clear_secret')) : null);
    } else if (spec.kind === 'boolean') {
      const v = cur === undefined || cur === null ? spec.default : cur;
      input = h('input', { type: 'checkbox', name: spec.key, checked: v === true, disabled: !editable, 'data-key': spec.key });
    } else {
      const v = cur === undefined || cur === null ? '' : spec.kind === 'json' ? JSON.stringify(cur) : String(cur);
      input = h('input', {
        type: 'text',
        name: spec.key,
        value: v,
        inputmode: spec.kind === 'integer' ? 'numeric' : spec.kind === 'number' ? 'decimal' : null,
        placeholder: spec.default !== undefined && spec.default !== null ? t('settings.default', { value: String(spec.default) }) : '',
        disabled: !editable,
        'data-key': spec.key,
        'data-kind': spec.kind,
      });
    }
    const help = [spec.description || '', spec.required ? t('settings.required') : '', `${t('settings.type')}: ${t(`kind.${spec.kind}`)}`].filter(Boolean).join(' · ');
    const f = field(label, input, { help, extra });
    fields.push({ spec, input, clear, f, original: cur });
    form.append(f.wrap);
  }
  const msg = h('p', { class: 'form-message', role: 'status' });
  if (editable) form.append(h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn btn-primary', id: 'save-settings' }, t('action.save')), msg));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    msg.textContent = '';
    const values = {};
    const unset = [];
    let firstError = null;
    for (const { spec, input, clear, f, original } of fields) {
      f.setError(null);
      if (spec.secret) {
        if (clear && clear.checked) unset.push(spec.key);
        else if (input.value !== '') values[spec.key] = input.value;
        continue;
      }
      if (spec.kind === 'boolean') {
        if (input.checked !== (original === undefined || original === null ? spec.default === true : original === true)) values[spec.key] = input.checked;
        continue;
      }
      const text = input.value;
      const had = original !== undefined && original !== null;
      if (text.trim() === '' && spec.kind !== 'string') {
        if (had) unset.push(spec.key);
        else if (spec.required && (spec.default === undefined || spec.default === null)) {
          f.setError(t('settings.required_error'));
          firstError = firstError || input;
        }
        continue;
      }
      if (text === '' && spec.kind === 'string' && !had) continue;
      // An emptied host list setting goes back to what the worker declares.
      if (spec.builtin && spec.kind === 'string' && text.trim() === '') {
        if (had) unset.push(spec.key);
        continue;
      }
      const parsed = parseSetting(spec.kind, text);
      if (parsed.error) {
        f.setError(parsed.error);
        firstError = firstError || input;
        continue;
      }
      if (spec.builtin && spec.kind === 'integer' && parsed.value < 1) {
        f.setError(t('settings.expect_positive'));
        firstError = firstError || input;
        continue;
      }
      const same = spec.kind === 'json' ? JSON.stringify(original) === JSON.stringify(parsed.value) : original === parsed.value;
      if (!had || !same) values[spec.key] = parsed.value;
    }
    if (firstError) {
      firstError.focus();
      msg.textContent = t('settings.fix_errors');
      return;
    }
    if (!Object.keys(values).length && !unset.length) {
      msg.textContent = t('settings.nothing_changed');
      return;
    }
    // PATCH takes a JSON merge patch: a value sets a key, null removes it.
    const patch = { ...values };
    for (const k of unset) patch[k] = null;
    try {
      const res = await api.patch(api.routes.workerSettings(worker.identifier), patch);
      notify(t('notify.settings_saved', { id: worker.identifier }), 'success');
      if (res && res.settings) worker.settings = res.settings;
      renderSettings(box, worker);
    } catch (e) {
      const target = e.field && fields.find((x) => x.spec.key === e.field);
      if (target) {
        target.f.setError(e.message);
        target.input.focus();
        msg.textContent = t('settings.fix_errors');
      } else {
        msg.textContent = errorText(e);
        notifyError(e);
      }
    }
  });
  replace(box, h('h2', { id: 'settings-title' }, t('worker.settings')), editable ? null : h('p', { class: 'muted' }, t('worker.readonly')), form);
}

// ---- schedule ----------------------------------------------------------------------------

const KINDS = ['manual', 'once', 'hourly', 'daily', 'weekly', 'regular'];
const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];

async function renderSchedule(box, worker) {
  let sched;
  try {
    sched = await api.get(api.routes.workerSchedule(worker.identifier));
    sched = sched.schedule || sched;
    // The header's line follows the schedule as saved, paused or resumed here.
    const line = document.getElementById('worker-schedule-line');
    if (line) line.replaceWith(scheduleLine(sched, 'worker-schedule-line'));
  } catch (e) {
    replace(box, h('h2', { id: 'schedule-title' }, t('worker.schedule')), h('p', { class: 'error-box' }, errorText(e)));
    return;
  }
  const editable = can('worker.schedule');
  const spec = sched.spec || {};
  const kind = sched.kind && KINDS.includes(sched.kind) ? sched.kind : 'manual';
  const summary = h(
    'dl',
    { class: 'kv', id: 'schedule-summary' },
    h('dt', null, t('schedule.current')),
    h('dd', null, scheduleDescription(sched) || t(`schedule.kind.${kind}`)),
    h('dt', null, t('schedule.next_run')),
    h('dd', { id: 'schedule-next' }, sched.paused ? t('schedule.paused') : sched.next_run ? `${sched.next_run.local || dateTime(sched.next_run.at)}` : '—'),
    sched.last_run ? [h('dt', null, t('schedule.last_run')), h('dd', null, sched.last_run.local || dateTime(sched.last_run.at))] : null,
    sched.skipped_count ? [h('dt', null, t('schedule.skipped')), h('dd', null, `${num(sched.skipped_count)}${sched.last_skip_reason ? ` — ${serviceText(sched.last_skip_reason)}` : ''}`)] : null,
    sched.timezone ? [h('dt', null, t('schedule.timezone')), h('dd', null, sched.timezone)] : null,
  );
  const children = [h('h2', { id: 'schedule-title' }, t('worker.schedule')), summary];
  if (editable) {
    const kindSel = select(KINDS.map((k) => ({ value: k, label: t(`schedule.kind.${k}`) })), kind, { name: 'kind' });
    const at = h('input', { type: 'time', name: 'at', value: spec.at && spec.at.length === 5 ? spec.at : '08:00' });
    const onceAt = h('input', { type: 'datetime-local', name: 'once_at', value: spec.kind === 'once' && spec.at ? String(spec.at).replace(' ', 'T') : '' });
    const minute = h('input', { type: 'number', name: 'minute', min: 0, max: 59, value: spec.minute ?? 0 });
    const every = h('input', { type: 'number', name: 'every', min: 1, value: spec.every_minutes ?? 60 });
    const from = h('input', { type: 'time', name: 'from', value: spec.from || '00:00' });
    const to = h('input', { type: 'time', name: 'to', value: spec.to || '23:59' });
    const dayBoxes = DAYS.map((d) => h('label', { class: 'inline-check' }, h('input', { type: 'checkbox', value: d, checked: (spec.days || []).includes(d) }), t(`day.${d}`)));
    const data = h('textarea', { name: 'data', rows: 3, spellcheck: 'false', class: 'mono' }, jsonText(sched.data && Object.keys(sched.data).length ? sched.data : {}));
    const fKind = field(t('schedule.kind'), kindSel);
    const fAt = field(t('schedule.at'), at);
    const fOnce = field(t('schedule.once_at'), onceAt);
    const fMinute = field(t('schedule.minute'), minute);
    const fEvery = field(t('schedule.every'), every);
    const fFrom = field(t('schedule.from'), from);
    const fTo = field(t('schedule.to'), to);
    const daysSet = h('fieldset', { class: 'days' }, h('legend', null, t('schedule.days')), dayBoxes);
    const fData = field(t('schedule.data'), data, { help: t('schedule.data_help') });
    const all = { once: [fOnce.wrap], hourly: [fMinute.wrap], daily: [fAt.wrap], weekly: [daysSet, fAt.wrap], regular: [fEvery.wrap, fFrom.wrap, fTo.wrap] };
    const show = () => {
      for (const w of [fAt.wrap, fOnce.wrap, fMinute.wrap, fEvery.wrap, fFrom.wrap, fTo.wrap, daysSet, fData.wrap]) w.hidden = true;
      for (const w of all[kindSel.value] || []) w.hidden = false;
      fData.wrap.hidden = kindSel.value === 'manual';
    };
    kindSel.addEventListener('change', show);
    show();
    const msg = h('p', { class: 'form-message', role: 'status' });
    const form = h('form', { class: 'schedule-form', novalidate: true }, fKind.wrap, fOnce.wrap, daysSet, fAt.wrap, fMinute.wrap, fEvery.wrap, fFrom.wrap, fTo.wrap, fData.wrap);
    const pauseBtn =
      kind !== 'manual'
        ? button(sched.paused ? t('schedule.resume') : t('schedule.pause'), async () => {
            try {
              await api.post(`${api.routes.workerSchedule(worker.identifier)}/${sched.paused ? 'resume' : 'pause'}`);
              notify(t(sched.paused ? 'notify.schedule_resumed' : 'notify.schedule_paused', { id: worker.identifier }), 'success');
              await renderSchedule(box, worker);
            } catch (e) {
              notifyError(e);
            }
          }, { attrs: { id: 'schedule-pause' } })
        : null;
    form.append(h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn btn-primary', id: 'save-schedule' }, t('action.save')), pauseBtn, msg));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      for (const f of [fOnce, fAt, fMinute, fEvery, fFrom, fTo, fData]) f.setError(null);
      msg.textContent = '';
      const k = kindSel.value;
      const body = { kind: k };
      if (k === 'once') {
        if (!onceAt.value) return fOnce.setError(t('schedule.required'));
        body.at = onceAt.value.replace('T', ' ').slice(0, 16);
      } else if (k === 'hourly') {
        body.minute = Number(minute.value);
        if (!Number.isInteger(body.minute) || body.minute < 0 || body.minute > 59) return fMinute.setError(t('schedule.bad_minute'));
      } else if (k === 'daily' || k === 'weekly') {
        if (!at.value) return fAt.setError(t('schedule.required'));
        body.at = at.value;
        if (k === 'weekly') {
          body.days = dayBoxes.map((l) => l.querySelector('input')).filter((c) => c.checked).map((c) => c.value);
          if (!body.days.length) {
            msg.textContent = t('schedule.no_days');
            return;
          }
        }
      } else if (k === 'regular') {
        const minutes = Number(every.value);
        if (!Number.isInteger(minutes) || minutes < 1) return fEvery.setError(t('schedule.bad_every'));
        body.every = `${minutes}m`;
        body.from = from.value || '00:00';
        body.to = to.value || '23:59';
      }
      if (k !== 'manual') {
        const parsed = parseJsonObject(data.value);
        if (parsed.error) return fData.setError(parsed.error);
        body.data = parsed.value;
      }
      try {
        await api.put(api.routes.workerSchedule(worker.identifier), body);
        notify(t('notify.schedule_saved', { id: worker.identifier }), 'success');
        await renderSchedule(box, worker);
      } catch (e) {
        const map = { at: k === 'once' ? fOnce : fAt, minute: fMinute, every: fEvery, from: fFrom, to: fTo, data: fData };
        if (e.field && map[e.field]) map[e.field].setError(e.message);
        else msg.textContent = errorText(e);
      }
    });
    children.push(form);
  }
  replace(box, ...children);
}

/** Parses text as a JSON object: {value} or {error} (a translated message). */
export function parseJsonObject(text) {
  const src = text.trim() === '' ? '{}' : text;
  let v;
  try {
    v = JSON.parse(src);
  } catch (e) {
    return { error: t('json.invalid', { detail: e.message }) };
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return { error: t('json.not_object') };
  return { value: v };
}
