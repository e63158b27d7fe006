// Notifications when the task a page watches ends: a toast, a badge in the tab's title,
// and a browser notification when the user allowed them (asked only when they press
// "Notify me", never by itself).
//
// The task page shows its task's status live in `#task-status [data-status]`; this
// module observes that element rather than polling the task again, so watching costs
// no request. Only a change seen here counts: a task that had already ended when its
// page opened is not announced.

import { t } from './i18n.js';
import { notify } from './ui.js';

const FINAL = ['completed', 'failed', 'cancelled'];
const BADGE = { completed: '✓', failed: '✗', cancelled: '–' };
const KIND = { completed: 'success', failed: 'error', cancelled: 'info' };

let seen = { id: null, status: null };
let badged = false;

/** Whether this browser can show notifications and has not been asked yet. */
export function canAskForNotifications() {
  return typeof window.Notification === 'function' && window.Notification.permission === 'default';
}

/** Asks for permission to notify (call from a click only); tells the user the answer. */
export async function askForNotifications() {
  if (typeof window.Notification !== 'function') return false;
  let answer = window.Notification.permission;
  try {
    answer = await window.Notification.requestPermission();
  } catch {
    /* an old browser without the promise form: the permission stays as it was */
  }
  notify(answer === 'granted' ? t('watch.enabled') : t('watch.blocked'), answer === 'granted' ? 'success' : 'info');
  return answer === 'granted';
}

function clearBadge() {
  if (!badged) return;
  badged = false;
  document.title = document.title.replace(/^\([^)]*\) /, '');
}

function announce(id, status) {
  const text = t(`watch.${status}`, { id });
  notify(text, KIND[status]);
  clearBadge();
  document.title = `(${BADGE[status]}) ${document.title}`;
  badged = true;
  if (typeof window.Notification === 'function' && window.Notification.permission === 'granted') {
    try {
      const n = new window.Notification(text, { tag: `stask-task-${id}`, body: document.title });
      n.onclick = () => window.focus();
    } catch {
      /* some browsers allow notifications from a service worker only */
    }
  }
}

function check() {
  const m = /^\/tasks\/(\d+)\/?$/.exec(location.pathname);
  const el = document.querySelector('#task-status [data-status]');
  if (!m || !el) {
    if (!m) seen = { id: null, status: null };
    return;
  }
  const id = Number(m[1]);
  const status = el.dataset.status;
  const before = seen.id === id ? seen.status : null;
  seen = { id, status };
  if (before && !FINAL.includes(before) && FINAL.includes(status)) announce(id, status);
}

/** Starts watching the page (once, from the shell). */
export function startWatching(main) {
  let queued = false;
  new MutationObserver(() => {
    if (queued) return;
    queued = true;
    queueMicrotask(() => {
      queued = false;
      check();
    });
  }).observe(main, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-status'] });
  // The badge goes once the user is back: the tab shown again, or a key or click in it.
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) setTimeout(clearBadge, 1500);
  });
  document.addEventListener('pointerdown', clearBadge, true);
  document.addEventListener('keydown', clearBadge, true);
}
