// Task details: live status, progress, ETA and message; the log as a chat; progress
// history; error, data, result, attempts, timings, result files; Execute / Cancel /
// Retry; Download log.

import * as api from '../api.js';
import { h, replace, rich, jsonText } from '../dom.js';
import { t, num, dateTime, duration } from '../i18n.js';
import { icon } from '../icons.js';
import { LogFollower, Poller } from '../live.js';
import { statusBadge, progressBar, setProgress, link, workerCell } from '../ui.js';
import { allowedOps, runOp } from '../taskops.js';
import { progressChart } from '../charts.js';

const FINAL = ['completed', 'failed', 'cancelled'];

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

/** A log line from the API: an object, or the raw `status|progress|…|message` text. */
export function normalizeLine(l) {
  if (typeof l === 'string') {
    const parts = l.split('|');
    if (parts.length < 6) return null;
    const message = parts.slice(5).join('|').replace(/\\(\\|n|r)/g, (m, c) => (c === 'n' ? '\n' : c === 'r' ? '\r' : '\\'));
    return { status: parts[0], progress: Number(parts[1]) || 0, processed: Number(parts[2]) || 0, total: Number(parts[3]) || 0, eta: parts[4], message };
  }
  if (!l || typeof l !== 'object') return null;
  return {
    status: l.status || '',
    progress: Number(l.progress) || 0,
    processed: Number(l.processed) || 0,
    total: Number(l.total) || 0,
    eta: l.eta ?? '-',
    message: l.message ?? '',
  };
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
  const buttons = h('div', { class: 'task-buttons', role: 'group', 'aria-label': t('task.actions') });
  const liveMode = h('span', { class: 'live-mode muted', id: 'live-mode' });

  // Log chat.
  const chat = h('ol', { class: 'chat', id: 'task-log', 'aria-label': t('task.log'), 'aria-live': 'polite', tabindex: '0' });
  const chatWrap = h('div', { class: 'chat-wrap' }, chat);
  // Progress history.
  const historyBox = h('div', { class: 'history', id: 'task-history' });
  // Details.
  const errorBox = h('div', { id: 'task-error' });
  const details = h('div', { class: 'task-details' });
  const filesBox = h('div', { id: 'task-files' });

  const lines = [];
  let lastState = null;

  const renderSummary = (st) => {
    replace(badgeBox, statusBadge(st.status));
    setProgress(bar, st.progress, st.status);
    processedEl.textContent = st.total ? `${num(st.processed)} / ${num(st.total)}` : st.processed ? num(st.processed) : '—';
    etaEl.textContent = st.status === 'running' && st.eta && st.eta !== '-' ? st.eta : '—';
    replace(messageEl, rich(st.message || ''));
  };

  const renderButtons = () => {
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
          if (!following()) follow(follower ? follower.offset : 0);
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
    replace(errorBox, task.error ? h('section', { class: 'card error-card' }, h('h2', null, t('task.error')), h('pre', { class: 'error-text' }, task.error)) : null);
    const rows = [
      ['task.worker', workerCell(task)],
      ['task.action', task.action],
      ['task.priority', t(`priority.${task.priority}`)],
      ['task.attempts', t('task.attempts_of', { n: task.attempts ?? 0, max: task.max_attempts ?? '?' })],
      ['task.started_by', task.started_by || '—'],
      ['task.created', dateTime(task.created_at)],
      ['task.run_after', task.run_after && task.run_after > (task.created_at || 0) ? dateTime(task.run_after) : null],
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
    const points = lines.map((l, i) => ({ x: i, y: l.progress }));
    const changes = [];
    let prev = null;
    for (const l of lines) {
      if (l.status !== prev) changes.push(l);
      prev = l.status;
    }
    replace(
      historyBox,
      progressChart(points, { title: t('task.history') }),
      h('ol', { class: 'status-changes' }, changes.map((l) => h('li', null, statusBadge(l.status), ` ${l.progress} % · `, rich(l.message)))),
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

  const addLines = (batch) => {
    const nearBottom = chatWrap.scrollHeight - chatWrap.scrollTop - chatWrap.clientHeight < 60;
    const frag = document.createDocumentFragment();
    let prevStatus = lines.length ? lines[lines.length - 1].status : null;
    for (const raw of batch) {
      const l = normalizeLine(raw);
      if (!l) continue;
      lines.push(l);
      const [level, text] = levelOf(l.message);
      const statusChange = l.status !== prevStatus;
      prevStatus = l.status;
      frag.append(
        h(
          'li',
          { class: `chat-line level-${level} ${statusChange ? 'status-change' : ''} st-${l.status}`, 'data-status': l.status },
          h('div', { class: 'bubble' }, level !== 'info' ? h('span', { class: `level level-tag-${level}` }, t(`level.${level}`)) : null, h('span', { class: 'text' }, rich(text))),
          h('div', { class: 'meta' }, t(`status.${l.status}`) !== `status.${l.status}` ? t(`status.${l.status}`) : l.status, ` · ${l.progress} %`, l.total ? ` · ${num(l.processed)}/${num(l.total)}` : '', l.status === 'running' && l.eta && l.eta !== '-' ? ` · ${t('task.eta')} ${l.eta}` : ''),
        ),
      );
    }
    chat.append(frag);
    if (nearBottom) chatWrap.scrollTop = chatWrap.scrollHeight;
    const lastLine = lines[lines.length - 1];
    if (lastLine) {
      const st = { ...lastLine };
      renderSummary(st);
      if (!lastState || lastState.status !== st.status) {
        // A status change: the task's row (error, result, files, attempts) changed too.
        lastState = st;
        reload();
      }
      lastState = st;
    }
    scheduleHistory();
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

  // Follows the log from `offset` (0: from the start, clearing what is shown).
  let follower = null;
  const follow = (offset = 0) => {
    if (follower) follower.close();
    if (offset === 0) {
      lines.length = 0;
      chat.replaceChildren();
      lastState = null;
    }
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
        liveMode.textContent = t('task.live_ended');
        reload();
      },
      onMode: (m) => {
        liveMode.textContent = m === 'sse' ? t('task.live_sse') : t('task.live_poll');
      },
    }).start(offset);
  };
  const following = () => follower && !follower.closed;

  // A finished task's stream has ended; a retry or execute (here, in another tab or from
  // the CLI) makes it live again. A cheap status check with backoff notices that.
  const watcher = new Poller(
    async () => {
      const p = await api.get(api.routes.taskProgress(id));
      if (p.status === task.status) return false;
      await reload();
      if (!FINAL.includes(p.status) && !following()) follow(follower ? follower.offset : 0);
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
    ),
    errorBox,
    h('div', { class: 'task-grid' }, h('section', { class: 'card log-card' }, h('h2', null, t('task.log')), chatWrap), h('section', { class: 'card' }, h('h2', null, t('task.history')), historyBox)),
    details,
    filesBox,
  );
  renderSummary(task);
  renderButtons();
  renderDetails();
  renderHistory();
  follow(0);
  watcher.start();

  return {
    refresh: () => {
      reload();
      follow(0);
      watcher.now();
    },
    destroy: () => {
      if (follower) follower.close();
      watcher.stop();
      clearTimeout(historyTimer);
    },
  };
}

async function fetchTask(id) {
  const res = await api.get(api.routes.task(id));
  return res.task || res;
}
