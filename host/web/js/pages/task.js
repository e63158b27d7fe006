// Task details: live status, progress, ETA and message; the log as a chat; progress
// history; error, data, result, attempts, timings, result files; Execute / Cancel /
// Retry; Download log.
//
// The log view: each line's time (local, the full date on hover); a search and a level
// filter over the lines loaded (older lines load a page at a time while the top of the
// filtered list is in view, so a filter ends up covering the whole log); "jump to the
// first error" (loads the whole log first); follow mode: while the view is at the end
// new lines scroll into it, scrolling up pauses that ("Paused — N new lines"), and
// returning to the end or Resume follows again. The service's own messages are worded
// in the user's language (servicetext.js; the page is drawn again when it changes).

import * as api from '../api.js';
import { h, replace, rich, jsonText } from '../dom.js';
import { t, tn, num, dateTime, duration, timeOf, language } from '../i18n.js';
import { icon } from '../icons.js';
import { LogFollower, Poller } from '../live.js';
import { statusBadge, progressBar, setProgress, link, workerCell } from '../ui.js';
import { allowedOps, runOp, waitingText } from '../taskops.js';
import { progressChart } from '../charts.js';
import { VirtualList } from '../vlist.js';
import { serviceText, serviceMatch } from '../servicetext.js';

const FINAL = ['completed', 'failed', 'cancelled'];

/** Lines read when the page opens (the newest), and per page of older ones. */
const TAIL_LINES = 300;
const OLDER_LINES = 1000;
/** Lines per page of older ones while a filter is on, or the first error is looked for. */
const FILTER_LINES = 5000;
/** `before` for the end of the log. */
const END = '9223372036854775807';
/** Points of the progress chart at most. */
const CHART_POINTS = 400;

const LEVELS = [
  ['[warn] ', 'warn'],
  ['[error] ', 'error'],
  ['[debug] ', 'debug'],
];

/** Splits a log message into its level and text. */
export function levelOf(message) {
  for (const [prefix, level] of LEVELS) if (message.startsWith(prefix)) return [level, message.slice(prefix.length)];
  return ['info', message];
}

/** Levels by rank: the level filter shows the lines of its level and above. */
const RANK = { debug: 0, info: 1, warn: 2, error: 3 };

/**
 * Service messages of a line that goes back to pending which tell of a failure or a
 * lost attempt: the line's status alone would call them information.
 */
const PENDING_LEVELS = {
  'service.retrying': 'error',
  'service.recovered_requeued': 'warn',
  'service.interrupted': 'warn',
};

/**
 * A line's level: its message's level prefix (`[warn] `, a plugin's log level); else
 * `error` for a failed line, `warn` for a cancelled one, what a known service message
 * of a pending line says (a failed attempt that will be retried), else `info`.
 */
export function severityOf(line) {
  const [level] = levelOf(line.message);
  if (level !== 'info') return level;
  if (line.status === 'failed') return 'error';
  if (line.status === 'cancelled') return 'warn';
  if (line.status === 'pending') {
    const m = serviceMatch(line.message);
    if (m && PENDING_LEVELS[m.key]) return PENDING_LEVELS[m.key];
  }
  return 'info';
}

/** A log line from the API: an object, or the raw `status|progress|…|message` text. */
export function normalizeLine(l) {
  if (typeof l === 'string') {
    const parts = l.split('|');
    if (parts.length < 6) return null;
    const message = parts.slice(5).join('|').replace(/\\(\\|n|r)/g, (m, c) => (c === 'n' ? '\n' : c === 'r' ? '\r' : '\\'));
    return { status: parts[0], progress: Number(parts[1]) || 0, processed: Number(parts[2]) || 0, total: Number(parts[3]) || 0, eta: parts[4], message, at: null };
  }
  if (!l || typeof l !== 'object') return null;
  return {
    status: l.status || '',
    progress: Number(l.progress) || 0,
    processed: Number(l.processed) || 0,
    total: Number(l.total) || 0,
    eta: l.eta ?? '-',
    message: l.message ?? '',
    // When the line was stored (ms since the epoch); null for lines of older stasks.
    at: typeof l.at === 'number' ? l.at : null,
  };
}

/** A line's level, worked out once per line. */
function levelOfLine(l) {
  if (l.level === undefined) l.level = severityOf(l);
  return l.level;
}

/** A line's message as shown: the service's own messages in the user's language. */
function shownText(l) {
  if (l.shown === undefined) l.shown = serviceText(l.message);
  return l.shown;
}

/** What the search looks in: the message as shown and as stored, without `**` marks. */
function searchText(l) {
  if (l.search === undefined) l.search = `${shownText(l)}\n${l.message}`.replaceAll('**', '').toLocaleLowerCase(language());
  return l.search;
}

export async function mount(root, params) {
  const id = params.id;
  let task = await fetchTask(id);

  // Live summary.
  const badgeBox = h('span', { id: 'task-status' }, statusBadge(task.status));
  const bar = progressBar(task.progress, { status: task.status, label: t('task.progress') });
  bar.id = 'task-progress';
  const processedEl = h('dd', { id: 'task-processed' });
  const etaEl = h('dd', { id: 'task-eta' });
  const messageEl = h('p', { class: 'task-message', id: 'task-message', 'aria-live': 'polite' });
  // Why a pending task is not running, as the API words it by code (`task.waiting`).
  const waitingEl = h('p', { class: 'task-waiting', id: 'task-waiting', 'aria-live': 'polite', hidden: true });
  const buttons = h('div', { class: 'task-buttons', role: 'group', 'aria-label': t('task.actions') });
  const liveMode = h('span', { class: 'live-mode muted', id: 'live-mode' });

  // Log chat: a virtualized list (only the lines in view are elements), the newest lines
  // first read, older ones a page at a time as the reader scrolls up.
  const chat = h('ol', { class: 'chat', id: 'task-log', 'aria-label': t('task.log') });
  const chatWrap = h('div', { class: 'chat-wrap', tabindex: '0', role: 'region', 'aria-label': t('task.log') }, chat);
  const logInfo = h('span', { class: 'muted log-info', id: 'log-info', 'aria-live': 'polite' });
  const olderBtn = h('button', { type: 'button', class: 'btn btn-small', id: 'log-older', hidden: true, onclick: () => loadOlder() }, t('task.log_older'));
  // Search, level filter, jump to the first error.
  const searchInput = h('input', { type: 'search', id: 'log-search', class: 'log-search', placeholder: t('task.log_search'), 'aria-label': t('task.log_search'), autocomplete: 'off' });
  const levelSelect = h(
    'select',
    { id: 'log-level', class: 'log-level', 'aria-label': t('task.log_level') },
    ['all', 'info', 'warn', 'error'].map((v) => h('option', { value: v }, t(`task.log_level_${v}`))),
  );
  const firstErrorBtn = h('button', { type: 'button', class: 'btn btn-small', id: 'log-first-error', onclick: () => jumpToFirstError() }, t('task.log_first_error'));
  const findInfo = h('span', { class: 'muted log-find', id: 'log-find', role: 'status' });
  const logTools = h('div', { class: 'log-tools', role: 'search' }, searchInput, levelSelect, firstErrorBtn, findInfo);
  // Follow mode: shown while the view is away from the end.
  const followText = h('span', { id: 'log-paused' });
  const resumeBtn = h('button', { type: 'button', class: 'btn btn-small btn-primary', id: 'log-resume', onclick: () => vlist.scrollToEnd() }, t('task.log_resume'));
  const followBar = h('div', { class: 'log-follow', id: 'log-follow', role: 'status', hidden: true }, followText, resumeBtn);
  // Progress history.
  const historyBox = h('div', { class: 'history', id: 'task-history' });
  // Details.
  const errorBox = h('div', { id: 'task-error' });
  const details = h('div', { class: 'task-details' });
  const filesBox = h('div', { id: 'task-files' });

  const lines = [];
  let lastState = null;
  // Keys of lines: appended ones count up, older ones count down (stable while shown).
  let keyFirst = 0;
  let keyNext = 0;
  // The log as read: `olderBefore` is the `before` of the page of older lines, null
  // once the first line is here.
  let olderBefore = null;
  let loadingOlder = null;
  // The filter: the lowercased search text and the lowest level shown; `shown` holds
  // the lines that pass it (null: no filter, every line).
  let query = '';
  let minLevel = 'all';
  let shown = null;
  const rows = () => shown || lines;
  // Lines added at the end while the view was away from it.
  let newCount = 0;
  // The line "jump to the first error" went to (its key).
  let jumpKey = null;

  const renderSummary = (st) => {
    replace(badgeBox, statusBadge(st.status));
    setProgress(bar, st.progress, st.status);
    processedEl.textContent = st.total ? `${num(st.processed)} / ${num(st.total)}` : st.processed ? num(st.processed) : '—';
    etaEl.textContent = st.status === 'running' && st.eta && st.eta !== '-' ? st.eta : '—';
    replace(messageEl, rich(serviceText(st.message || '')));
  };

  const renderWaiting = () => {
    const why = task.status === 'pending' ? waitingText(task.waiting) : '';
    waitingEl.hidden = !why;
    waitingEl.dataset.code = why ? task.waiting.code : '';
    replace(waitingEl, why ? [h('strong', null, `${t('task.waiting')}: `), why] : null);
  };

  const renderButtons = () => {
    renderWaiting();
    const ops = allowedOps(task);
    const mk = (op, iconName, cls) =>
      h('button', {
        type: 'button',
        class: `btn ${cls}`,
        id: `task-${op}`,
        onclick: async (ev) => {
          ev.currentTarget.disabled = true;
          await runOp(task, op);
          await reload();
          // Resume even when the task is final again: a quick retry can run and fail
          // again before this reload, and its new lines must still appear.
          if (follower && !following()) follow(follower.offset);
          watcher.now();
        },
      }, icon(iconName, { size: 16 }), h('span', null, t(`action.${op}`)));
    replace(
      buttons,
      ops.execute ? mk('execute', 'ui-play', 'btn-primary') : null,
      ops.cancel ? mk('cancel', 'ui-stop', 'btn-warn') : null,
      ops.retry ? mk('retry', 'ui-retry', 'btn-primary') : null,
      task.cancel_requested && task.status === 'running' ? h('span', { class: 'tag tag-warn' }, t('task.cancel_requested')) : null,
      h('a', { class: 'btn', href: api.routes.taskLogDownload(id), download: `task-${id}.log`, id: 'download-log' }, icon('download', { size: 16 }), h('span', null, t('task.download_log'))),
    );
  };

  const renderDetails = () => {
    replace(errorBox, task.error ? h('section', { class: 'card error-card' }, h('h2', null, t('task.error')), h('pre', { class: 'error-text', id: 'task-error-text' }, serviceText(task.error))) : null);
    const rows = [
      ['task.worker', workerCell(task)],
      ['task.action', task.action],
      ['task.priority', t(`priority.${task.priority}`)],
      ['task.attempts', t('task.attempts_count', { n: num(task.attempts ?? 0), max: task.max_attempts ?? '?' })],
      ['task.started_by', task.started_by || '—'],
      ['task.created', dateTime(task.created_at)],
      // A task waiting for its dependencies has no start time yet (the store keeps it far in the future).
      ['task.run_after', task.run_after && task.run_after > (task.created_at || 0) && task.waiting?.code !== 'dependencies' && task.waiting?.code !== 'limit' && !task.dependencies?.waiting_on?.length ? dateTime(task.run_after) : null],
      ['task.after', task.dependencies?.after?.length ? task.dependencies.after.map((id) => `#${id}`).join(', ') : null],
      // The limit per key it shares with other tasks of its worker (plugin data: text only).
      ['task.limit', task.limit && typeof task.limit.key === 'string' ? h('span', { id: 'task-limit' }, task.limit.key) : null],
      ['task.workflow', task.workflow ? h('span', { id: 'task-workflow' }, link(`/workflows/${task.workflow.id}`, t('task.workflow_step', { id: task.workflow.id, step: task.workflow.step }))) : null],
      // Tasks a running task enqueued name it; it lists them, each a link.
      ['task.parent', task.parent ? h('span', { id: 'task-parent' }, link(`/tasks/${task.parent}`, `#${task.parent}`)) : null],
      ['task.children', task.children?.length ? h('span', { id: 'task-children' }, task.children.map((c, i) => [i ? ', ' : null, link(`/tasks/${c}`, `#${c}`)])) : null],
      ['task.started', dateTime(task.started_at)],
      ['task.finished', dateTime(task.finished_at)],
      ['task.duration', task.duration_ms != null ? duration(task.duration_ms) : task.started_at && task.finished_at ? duration(task.finished_at - task.started_at) : '—'],
    ].filter(([, v]) => v !== null);
    replace(
      details,
      h('section', { class: 'card' }, h('h2', null, t('task.metadata')), h('dl', { class: 'kv' }, rows.map(([k, v]) => [h('dt', null, t(k)), h('dd', null, v)]))),
      h('section', { class: 'card' }, h('h2', null, t('task.data')), h('pre', { class: 'json', id: 'task-data' }, jsonText(task.data ?? {}))),
      task.result !== undefined && task.result !== null ? h('section', { class: 'card' }, h('h2', null, t('task.result')), h('pre', { class: 'json', id: 'task-result' }, jsonText(task.result))) : null,
    );
    const files = task.result_files || task.files || [];
    replace(
      filesBox,
      h(
        'section',
        { class: 'card' },
        h('h2', null, t('task.files')),
        files.length
          ? h('ul', { class: 'file-list' }, files.map((f) => {
              const name = typeof f === 'string' ? f : f.name;
              return h('li', null, h('a', { href: f.url || api.routes.taskFile(id, name), download: name.split('/').pop() }, icon('file', { size: 16 }), h('span', null, name)), typeof f.size === 'number' ? h('span', { class: 'muted' }, ` ${num(f.size)} B`) : null);
            }))
          : h('p', { class: 'muted' }, t('task.no_files')),
      ),
    );
  };

  const renderHistory = () => {
    const step = Math.max(1, Math.ceil(lines.length / CHART_POINTS));
    const points = [];
    for (let i = 0; i < lines.length; i += step) points.push({ x: i, y: lines[i].progress });
    if (lines.length && (lines.length - 1) % step) points.push({ x: lines.length - 1, y: lines[lines.length - 1].progress });
    const changes = [];
    let prev = null;
    for (const l of lines) {
      if (l.status !== prev) changes.push(l);
      prev = l.status;
    }
    replace(
      historyBox,
      progressChart(points, { title: t('task.history') }),
      h('ol', { class: 'status-changes' }, changes.map((l) => h('li', null, statusBadge(l.status), ` ${l.progress} % · `, rich(shownText(l))))),
    );
  };

  let historyTimer = null;
  const scheduleHistory = () => {
    if (historyTimer) return;
    historyTimer = setTimeout(() => {
      historyTimer = null;
      renderHistory();
    }, 300);
  };

  // The time of day of a line: one formatter for the page (the page is drawn anew
  // when the language changes).
  const clock = new Intl.DateTimeFormat(language(), { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  const timeEl = (at) =>
    at === null
      ? h('span', { class: 'log-time', 'aria-hidden': 'true' })
      : h('time', { class: 'log-time', datetime: new Date(at).toISOString(), title: dateTime(at) }, clock.format(at));

  const lineEl = (i) => {
    const list = rows();
    const l = list[i];
    const [level, text] = levelOf(shownText(l));
    const fresh = l.fresh;
    l.fresh = false;
    const prev = i > 0 ? list[i - 1].status : olderBefore === null ? null : l.status;
    const statusChange = l.status !== prev;
    return h(
      'li',
      {
        class: `chat-line level-${level} ${statusChange ? 'status-change' : ''} ${fresh ? 'fresh' : ''} ${l.key === jumpKey ? 'jump-target' : ''} st-${l.status}`,
        'data-status': l.status,
        'data-level': levelOfLine(l),
        'data-key': l.key,
        tabindex: l.key === jumpKey ? '-1' : null,
      },
      timeEl(l.at),
      h(
        'div',
        { class: 'line-body' },
        h('div', { class: 'bubble' }, level !== 'info' ? h('span', { class: `level level-tag-${level}` }, t(`level.${level}`)) : null, h('span', { class: 'text' }, rich(text))),
        h('div', { class: 'meta' }, t(`status.${l.status}`) !== `status.${l.status}` ? t(`status.${l.status}`) : l.status, ` · ${l.progress} %`, l.total ? ` · ${num(l.processed)}/${num(l.total)}` : '', l.status === 'running' && l.eta && l.eta !== '-' ? ` · ${t('task.eta')} ${l.eta}` : ''),
      ),
    );
  };
  const vlist = new VirtualList({
    scroller: chatWrap,
    list: chat,
    render: lineEl,
    key: (i) => rows()[i].key,
    onRange: (first) => {
      if (first < 20 && olderBefore !== null) loadOlder(shown ? FILTER_LINES : OLDER_LINES);
    },
    onStick: (atEnd) => {
      if (atEnd) newCount = 0;
      renderFollow();
    },
  });

  const renderLogInfo = () => {
    if (shown) {
      logInfo.textContent = t(olderBefore !== null ? 'task.log_matches_loading' : 'task.log_matches', { n: num(shown.length), total: num(lines.length) });
    } else {
      logInfo.textContent = olderBefore !== null ? tn('task.log_newest', { n: lines.length }) : t('task.log_count', { n: num(lines.length) });
    }
    olderBtn.hidden = olderBefore === null;
  };

  // Following: paused while the view is away from the end and the log can still grow
  // (or lines came meanwhile).
  const renderFollow = () => {
    const paused = !vlist.atEnd && (newCount > 0 || following());
    followBar.hidden = !paused;
    followText.textContent = newCount ? tn('task.log_paused_new', { n: newCount }) : t('task.log_paused');
  };

  const passes = (l) => (minLevel === 'all' || RANK[levelOfLine(l)] >= RANK[minLevel]) && (!query || searchText(l).includes(query));

  // A filter changed: the list is drawn again from the lines loaded, at its end.
  const applyFilter = () => {
    query = searchInput.value.trim().toLocaleLowerCase(language());
    minLevel = levelSelect.value;
    shown = query || minLevel !== 'all' ? lines.filter(passes) : null;
    newCount = 0;
    vlist.clear();
    vlist.append(rows().length);
    renderLogInfo();
    renderFollow();
    if (shown) loadMoreForFilter();
  };
  let searchTimer = null;
  searchInput.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(applyFilter, 150);
  });
  levelSelect.addEventListener('change', applyFilter);

  // While a filter is on and the top of its list is in view, older lines keep loading
  // (a page at a time), so what it finds is not limited to the newest lines.
  const loadMoreForFilter = () => {
    if (shown && olderBefore !== null && vlist.range && vlist.range[0] < 20) loadOlder(FILTER_LINES);
  };

  const jumpToFirstError = async () => {
    firstErrorBtn.disabled = true;
    findInfo.textContent = t('task.log_finding');
    const gen = generation;
    try {
      // The first error may be in lines not loaded yet: load them all first.
      while (olderBefore !== null && gen === generation) {
        const was = olderBefore;
        await loadOlder(FILTER_LINES);
        if (olderBefore === was && !loadingOlder) break; // the read failed
      }
      if (gen !== generation) return;
      const target = lines.find((l) => levelOfLine(l) === 'error');
      if (!target) {
        findInfo.textContent = t('task.log_no_error');
        return;
      }
      findInfo.textContent = '';
      if (shown && !shown.includes(target)) {
        searchInput.value = '';
        levelSelect.value = 'all';
        applyFilter();
      }
      // Both rows are drawn anew: the mark moves from one to the other.
      if (jumpKey !== null) vlist.forget(jumpKey);
      jumpKey = target.key;
      vlist.forget(jumpKey);
      vlist.scrollToIndex(rows().indexOf(target));
      const el = chat.querySelector(`[data-key="${target.key}"]`);
      if (el) el.focus({ preventScroll: true });
    } finally {
      firstErrorBtn.disabled = false;
    }
  };

  const normalized = (batch) => {
    const out = [];
    for (const raw of batch) {
      const l = normalizeLine(raw);
      if (l) out.push(l);
    }
    return out;
  };

  const addLines = (batch, fresh = true) => {
    const added = normalized(batch);
    if (!added.length) return;
    let appended = 0;
    for (const l of added) {
      l.key = keyNext++;
      l.fresh = fresh;
      lines.push(l);
      if (!shown || passes(l)) {
        if (shown) shown.push(l);
        appended += 1;
      }
    }
    vlist.refreshStick();
    const away = !vlist.atEnd;
    vlist.append(appended);
    if (fresh && away && appended) {
      newCount += appended;
      renderFollow();
    }
    renderLogInfo();
    const st = { ...lines[lines.length - 1] };
    renderSummary(st);
    if (!lastState || lastState.status !== st.status) {
      // A status change: the task's row (error, result, files, attempts) changed too.
      lastState = st;
      reload();
    }
    lastState = st;
    scheduleHistory();
  };

  // Older lines, a page at a time (scrolling near the top, or the button).
  const loadOlder = (limit = OLDER_LINES) => {
    if (loadingOlder || olderBefore === null) return loadingOlder;
    const gen = generation;
    let loaded = false;
    loadingOlder = (async () => {
      try {
        const page = await api.get(api.routes.taskLog(id, { before: olderBefore, limit }));
        if (gen !== generation) return;
        const older = normalized(page.lines || []);
        for (let i = older.length - 1; i >= 0; i--) older[i].key = --keyFirst;
        lines.unshift(...older);
        olderBefore = page.has_older ? page.first_offset : null;
        if (shown) {
          const passing = older.filter(passes);
          shown.unshift(...passing);
          vlist.prepend(passing.length);
        } else {
          vlist.prepend(older.length);
        }
        renderLogInfo();
        scheduleHistory();
        loaded = true;
      } catch {
        /* the button stays for another try */
      } finally {
        loadingOlder = null;
      }
      if (loaded) setTimeout(loadMoreForFilter, 0);
    })();
    return loadingOlder;
  };

  let reloading = null;
  const reload = async () => {
    if (reloading) return reloading;
    reloading = (async () => {
      try {
        task = await fetchTask(id);
        renderButtons();
        renderDetails();
        if (!lines.length) renderSummary(task);
        else if (task.status !== lines[lines.length - 1].status && ['completed', 'failed', 'cancelled', 'pending'].includes(task.status)) {
          // The row is ahead of the log (e.g. a cancelled pending task): show the row.
          replace(badgeBox, statusBadge(task.status));
        }
      } catch {
        /* keep what is shown */
      } finally {
        reloading = null;
      }
    })();
    return reloading;
  };

  // What the live area says: the transport, unless the service does not answer (then
  // nothing here is live, whatever the stream's state).
  let mode = null;
  const showMode = () => {
    const conn = api.connection;
    liveMode.dataset.state = conn.state === 'live' ? mode || '' : conn.state;
    if (conn.state === 'reconnecting') liveMode.textContent = t('conn.reconnecting');
    else if (conn.state === 'offline') liveMode.textContent = t('conn.offline_since', { time: timeOf(conn.since) });
    else liveMode.textContent = mode === 'sse' ? t('task.live_sse') : mode === 'poll' ? t('task.live_poll') : mode === 'ended' ? t('task.live_ended') : '';
  };
  const unsubscribeConn = api.connection.subscribe((state, was) => {
    showMode();
    if (state === 'live' && was !== 'live') reload();
  });

  // Follows the log after line `offset`; `open()` reads the newest lines first.
  let follower = null;
  let generation = 0;
  const follow = (offset) => {
    if (follower) follower.close();
    follower = new LogFollower({
      sseUrl: (offset) => api.routes.taskEvents(id, { offset }),
      pollFn: (offset) => api.get(api.routes.taskLog(id, { offset })),
      onLines: addLines,
      onState: (st) => {
        if (st && st.status && st.status !== task.status) {
          reload();
          return true;
        }
        return false;
      },
      onEnd: () => {
        mode = 'ended';
        showMode();
        renderFollow();
        reload();
      },
      onMode: (m) => {
        mode = m;
        showMode();
      },
    }).start(offset);
  };
  const open = async () => {
    if (follower) follower.close();
    follower = null;
    const gen = ++generation;
    lines.length = 0;
    if (shown) shown = [];
    newCount = 0;
    lastState = null;
    olderBefore = null;
    vlist.clear();
    let page;
    try {
      page = await api.get(api.routes.taskLog(id, { before: END, limit: TAIL_LINES }));
    } catch {
      page = null;
    }
    if (gen !== generation) return;
    if (!page) {
      follow(0);
      return;
    }
    olderBefore = page.has_older ? page.first_offset : null;
    addLines(page.lines || [], false);
    renderLogInfo();
    follow(page.next_offset || 0);
  };
  const following = () => !!(follower && !follower.closed);

  // A finished task's stream has ended; a retry or execute (here, in another tab or from
  // the CLI) makes it live again. A cheap status check with backoff notices that.
  const watcher = new Poller(
    async () => {
      const p = await api.get(api.routes.taskProgress(id));
      if (p.status === task.status) return false;
      await reload();
      if (!FINAL.includes(p.status) && follower && !following()) follow(follower.offset);
      return true;
    },
    { min: 1000, max: 25000 },
  );

  replace(
    root,
    h('p', { class: 'breadcrumb' }, link('/tasks', t('title.tasks')), ' / ', `#${id}`),
    h('div', { class: 'page-header' }, h('h1', { id: 'page-title', tabindex: '-1' }, t('task.title', { id })), buttons),
    h(
      'section',
      { class: 'card task-summary', 'aria-label': t('task.summary') },
      h('div', { class: 'summary-top' }, badgeBox, h('span', { class: 'muted' }, `${task.worker} / ${task.action}`), liveMode),
      bar,
      h('dl', { class: 'kv inline' }, h('dt', null, t('task.processed')), processedEl, h('dt', null, t('task.eta')), etaEl),
      messageEl,
      waitingEl,
    ),
    errorBox,
    h('div', { class: 'task-grid' }, h('section', { class: 'card log-card' }, h('div', { class: 'card-header' }, h('h2', null, t('task.log')), logInfo, olderBtn), logTools, chatWrap, followBar), h('section', { class: 'card' }, h('h2', null, t('task.history')), historyBox)),
    details,
    filesBox,
  );
  renderSummary(task);
  renderButtons();
  renderDetails();
  renderHistory();
  open();
  watcher.start();

  return {
    refresh: () => {
      reload();
      open();
      watcher.now();
    },
    destroy: () => {
      generation += 1;
      if (follower) follower.close();
      watcher.stop();
      vlist.destroy();
      unsubscribeConn();
      clearTimeout(historyTimer);
      clearTimeout(searchTimer);
    },
  };
}

async function fetchTask(id) {
  const res = await api.get(api.routes.task(id));
  return res.task || res;
}
