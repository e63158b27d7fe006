// Text the service writes in English, worded in the user's language.
//
// * Schedule descriptions: the API sends each as a code and parameters
//   (`description_code`: {code: "daily", params: {at: "03:00"}}) beside the English
//   text; scheduleText() words it.
// * The service's own log lines and messages ("Started attempt 1 of 3", "Task completed
//   successfully (1.5s)", "Recovered: …"): the store keeps them as text, so serviceText()
//   recognises each known form (pattern -> key + parameters, the patterns written from
//   the Rust code that makes them: host/src/engine/outcome.rs, engine/running.rs,
//   recovery.rs, ops/tasks/, schedule/tick.rs, storage/src/queue.rs) and words it.
//   Anything else — what plugins write — is returned unchanged.
//
// Parts that are free text inside a known message (an error a plugin returned, a user
// name, a unique key) stay as they are; a part that is itself a known message (a
// timeout inside "Task failed after …: …") is worded too.

import { t, tn, num, language, duration } from './i18n.js';

const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];

/**
 * A local wall-clock time as the schedule stores it ("08:30"): shown as it is, on the
 * 24-hour clock the schedule form takes, in every language.
 */
function clockTime(hhmm) {
  return String(hhmm ?? '');
}

/** "2026-12-01 08:00" (a local date and time): the date in the current language's style. */
function localDateTime(text) {
  const m = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}:\d{2})$/.exec(String(text));
  if (!m) return String(text ?? '');
  try {
    const d = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
    return `${new Intl.DateTimeFormat(language(), { dateStyle: 'medium', timeZone: 'UTC' }).format(d)} ${m[4]}`;
  } catch {
    return String(text);
  }
}

/** ["mon", "fri"] as "Mon and Fri" / "пн і пт" in the current language. */
function dayList(days) {
  const names = (Array.isArray(days) ? days : []).map((d) => {
    const i = DAYS.indexOf(String(d).toLowerCase());
    if (i < 0) return String(d);
    try {
      // 2024-01-01 was a Monday.
      return new Intl.DateTimeFormat(language(), { weekday: 'short', timeZone: 'UTC' }).format(new Date(Date.UTC(2024, 0, 1 + i)));
    } catch {
      return DAYS[i];
    }
  });
  try {
    return new Intl.ListFormat(language(), { style: 'long', type: 'conjunction' }).format(names);
  } catch {
    return names.join(', ');
  }
}

/**
 * A schedule's `description_code` ({code, params}) in the current language; null when
 * there is none or its code is unknown (the caller shows the English `description`).
 */
export function scheduleText(dc) {
  if (!dc || typeof dc !== 'object' || typeof dc.code !== 'string') return null;
  const p = dc.params || {};
  switch (dc.code) {
    case 'manual':
      return t('schedule.desc.manual');
    case 'once':
      return t('schedule.desc.once', { at: localDateTime(p.at) });
    case 'hourly':
      return t('schedule.desc.hourly', { minute: Number(p.minute) });
    case 'daily':
      return t('schedule.desc.daily', { at: clockTime(p.at) });
    case 'weekly':
      return t('schedule.desc.weekly', { days: dayList(p.days), at: clockTime(p.at) });
    case 'regular': {
      const every = Number(p.every_minutes);
      const window = { from: clockTime(p.from), to: clockTime(p.to) };
      if (every === 1) return t('schedule.desc.regular_minute', window);
      return tn('schedule.desc.regular', { n: every, ...window });
    }
    case 'invalid':
      return t('schedule.desc.invalid', { error: p.error || '' });
    default:
      return null;
  }
}

/** A schedule view's description in the current language (the English one as a fallback). */
export function scheduleDescription(sched) {
  return (sched && scheduleText(sched.description_code)) || (sched && sched.description) || '';
}

/** The English description (spec.rs `describe`) back to its code, for log lines. */
function describedCode(text) {
  let m;
  if ((m = /^once at (\d{4}-\d{2}-\d{2} \d{2}:\d{2})$/.exec(text))) return { code: 'once', params: { at: m[1] } };
  if ((m = /^hourly at minute (\d+)$/.exec(text))) return { code: 'hourly', params: { minute: Number(m[1]) } };
  if ((m = /^daily at (\d{2}:\d{2})$/.exec(text))) return { code: 'daily', params: { at: m[1] } };
  if ((m = /^weekly on ([a-z,]+) at (\d{2}:\d{2})$/.exec(text))) return { code: 'weekly', params: { days: m[1].split(','), at: m[2] } };
  if ((m = /^every (\d+) min between (\d{2}:\d{2}) and (\d{2}:\d{2})$/.exec(text))) return { code: 'regular', params: { every_minutes: Number(m[1]), from: m[2], to: m[3] } };
  return null;
}

/** A duration as host/src/task_log.rs `format_duration` writes it, in ms; null if not one. */
function durationMs(text) {
  const s = String(text).trim();
  let m;
  if ((m = /^(\d+)ms$/.exec(s))) return Number(m[1]);
  if ((m = /^(\d+(?:\.\d+)?)s$/.exec(s))) return Math.round(Number(m[1]) * 1000);
  if ((m = /^(\d+)([dhm]) (\d+)([hms])$/.exec(s))) {
    const unit = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000 };
    return Number(m[1]) * unit[m[2]] + Number(m[3]) * unit[m[4]];
  }
  return null;
}

/** A duration from the service's text in the current language (unchanged if unknown). */
function took(text) {
  const ms = durationMs(text);
  return ms === null ? String(text) : duration(ms);
}

/** A status name inside a sentence ("failed", "виконується"). */
function statusWord(s) {
  const word = t(`status.${s}`);
  return word === `status.${s}` ? s : word.toLocaleLowerCase(language());
}

/** Who ran a task, as recovery.rs `describe_owner` writes it. */
function owner(text) {
  const m = /^process (\d+) on (.+)$/.exec(text);
  if (m) return t('service.owner_process', { pid: m[1], host: m[2] });
  return text;
}

/** Why a task was recovered (recovery.rs). */
function recoveryReason(text) {
  let m;
  if ((m = /^the (.+) that ran it is gone$/.exec(text))) return t('service.reason_gone', { owner: owner(m[1]) });
  if ((m = /^the (.+) that ran it has not renewed its lease for (\d+) s$/.exec(text))) return tn('service.reason_stale', { owner: owner(m[1]), n: Number(m[2]) });
  return text;
}

/**
 * Known service messages: [pattern, (match) => {key, params} or a string]. A `key`
 * ending in `#` is a plural key (tn, with params.n). Ordered most specific first.
 */
const PATTERNS = [
  [/^Task created \(priority (high|normal|low)(?:, by (.+?))?(?:, unique key '(.*)')?\)$/s, (m) => {
    // A task another task enqueued is created "by task #N".
    const by = m[2] === undefined ? '' : /^task #\d+$/.test(m[2]) ? t('service.created_by_task', { task: m[2].slice(5) }) : t('service.created_by', { user: m[2] });
    const extra = by + (m[3] !== undefined ? t('service.created_key', { key: m[3] }) : '');
    return { key: 'service.created', params: { priority: t(`priority.${m[1]}`).toLocaleLowerCase(language()), extra } };
  }],
  [/^Task created by schedule \((.+)\)$/s, (m) => {
    const code = describedCode(m[1]);
    return { key: 'service.created_by_schedule', params: { what: (code && scheduleText(code)) || m[1] } };
  }],
  [/^Task created by schedule$/, () => ({ key: 'service.created_by_schedule_plain', params: {} })],
  [/^Cancelled before it started$/, () => ({ key: 'service.cancelled_pending', params: {} })],
  // The engine's lines about follow-up tasks a running task enqueued (engine/slot.rs).
  [/^Enqueued task (#\d+) \(([^()]+)\)$/, (m) => ({ key: 'service.enqueued', params: { id: m[1], target: m[2] } })],
  [/^Enqueued (\S+): task (#\d+) with the same unique key is already waiting$/, (m) => ({ key: 'service.enqueued_existing', params: { id: m[2], target: m[1] } })],
  [/^Enqueue refused: (.*)$/s, (m) => ({ key: 'service.enqueue_refused', params: { why: m[1] } })],
  [/^Queued for retry \(was (\w+); (\d+) attempts? so far\)$/, (m) => ({ key: 'service.queued_for_retry#', params: { was: statusWord(m[1]), n: Number(m[2]) } })],
  [/^Started attempt (\d+) of (\d+)$/, (m) => ({ key: 'service.started', params: { attempt: num(Number(m[1])), max: num(Number(m[2])) } })],
  [/^Started attempt (\d+) \(retried by hand after its (\d+) automatic attempts\)$/, (m) => ({ key: 'service.started_by_hand#', params: { attempt: num(Number(m[1])), n: Number(m[2]) } })],
  [/^Task completed successfully \((.+)\)$/, (m) => ({ key: 'service.completed', params: { took: took(m[1]) } })],
  [/^Interrupted after (.+?) because the service stopped; queued again \(this attempt does not count\)$/, (m) => ({ key: 'service.interrupted', params: { took: took(m[1]) } })],
  [/^Task cancelled after (.+?): the worker did not stop within (.+) and was killed$/, (m) => ({ key: 'service.cancelled_killed', params: { took: took(m[1]), grace: took(m[2]) } })],
  [/^Task cancelled after ([^:]+)$/, (m) => ({ key: 'service.cancelled', params: { took: took(m[1]) } })],
  [/^Task cancelled as requested \(the attempt failed: (.*)\)$/s, (m) => ({ key: 'service.cancelled_requested_failed', params: { error: errorText(m[1]) } })],
  [/^Task cancelled as requested \(the attempt was interrupted\)$/, () => ({ key: 'service.cancelled_requested_interrupted', params: {} })],
  [/^Attempt (\d+) of (\d+) failed: (.*); retrying in ([^;]+)$/s, (m) => ({ key: 'service.retrying', params: { attempt: num(Number(m[1])), max: num(Number(m[2])), error: errorText(m[3]), delay: took(m[4]) } })],
  [/^Task failed after ([^:]+): (.*)$/s, (m) => ({ key: 'service.failed', params: { took: took(m[1]), error: errorText(m[2]) } })],
  [/^Recovered: (.+); requeued \(attempt (\d+) of (\d+) was lost\)$/s, (m) => ({ key: 'service.recovered_requeued', params: { reason: recoveryReason(m[1]), attempt: num(Number(m[2])), max: num(Number(m[3])) } })],
  [/^Recovered: (.+); no attempts left$/s, (m) => ({ key: 'service.recovered_failed', params: { reason: recoveryReason(m[1]) } })],
  [/^Imported from an older stask; the task is (\w+)$/, (m) => ({ key: 'service.imported', params: { status: statusWord(m[1]) } })],
  [/^\[warn\] log limit of (\d+) messages reached; further messages of this attempt are dropped$/, (m) => ({ key: 'service.log_limit#', params: { n: Number(m[1]) } })],
  [/^\[warn\] Result file skipped: (.*)$/s, (m) => ({ key: 'service.file_skipped', params: { why: m[1] } })],
];

/** Known errors the service writes (a task's `error`, inside failure lines). */
const ERRORS = [
  [/^timed out after (.+?): the run exceeded the worker's time limit and was killed \(change it with the `(\w+)` setting\)$/, (m) => ({ key: 'service.error_timeout', params: { limit: took(m[1]), setting: m[2] } })],
  [/^killed after (.+)$/, (m) => ({ key: 'service.error_killed', params: { grace: took(m[1]) } })],
  [/^interrupted: (.+)$/s, (m) => ({ key: 'service.error_interrupted', params: { reason: recoveryReason(m[1]) } })],
];

/** Schedule skip reasons (storage: fire_schedule; schedule/tick.rs). */
const SKIPS = [
  [/^worker not registered$/, () => ({ key: 'service.skip_unregistered', params: {} })],
  [/^worker inactive$/, () => ({ key: 'service.skip_inactive', params: {} })],
  [/^previous task (\d+) is still (pending|running)$/, (m) => ({ key: 'service.skip_busy', params: { id: m[1], status: statusWord(m[2]) } })],
  [/^the worker declares no action to schedule$/, () => ({ key: 'service.skip_no_action', params: {} })],
];

function match(list, text) {
  if (typeof text !== 'string' || !text) return null;
  for (const [re, make] of list) {
    const m = re.exec(text);
    if (m) return make(m);
  }
  return null;
}

function word(found) {
  if (!found) return null;
  if (found.key.endsWith('#')) return tn(found.key.slice(0, -1), found.params);
  const text = t(found.key, found.params);
  // A key missing from every language file comes back as itself: not a translation.
  return text === found.key ? null : text;
}

/**
 * Which known service message `text` is: {key, params} (a key ending in `#` is a plural
 * key for tn()), or null for any other text.
 */
export function serviceMatch(text) {
  return match(PATTERNS, text) || match(ERRORS, text) || match(SKIPS, text);
}

/**
 * `text` in the current language when it is a known service message (a log line's
 * message, a task's message or error, a schedule's skip reason), else `text` itself.
 * Plugin messages are never changed; a level prefix the page shows (`[warn] `) is
 * kept as it is.
 */
export function serviceText(text) {
  return word(serviceMatch(text)) ?? text;
}

/** A known error inside a service message in the current language, else unchanged. */
export function errorText(text) {
  return word(match(ERRORS, text)) ?? text;
}
