// The application shell: sign-in state, navigation, client-side routing, keyboard
// shortcuts and the language selector.

import * as api from './api.js';
import { h, replace } from './dom.js';
import { initI18n, t, setLanguage, language, languages, onLanguageChange, timeOf } from './i18n.js';
import { icon } from './icons.js';
import { session, can, navigate, notify, errorText, loadSession } from './ui.js';
import * as loginPage from './pages/login.js';
import * as dashboardPage from './pages/dashboard.js';
import * as workersPage from './pages/workers.js';
import * as workerPage from './pages/worker.js';
import * as tasksPage from './pages/tasks.js';
import * as taskPage from './pages/task.js';
import * as newTaskPage from './pages/newtask.js';
import * as statsPage from './pages/stats.js';
import * as runningPage from './pages/running.js';
import * as workflowsPage from './pages/workflows.js';
import * as workflowPage from './pages/workflow.js';
import { startWatching, canAskForNotifications, askForNotifications } from './watch.js';

const ROUTES = [
  { re: /^\/login\/?$/, page: loginPage, name: 'login', public: true },
  { re: /^\/$/, page: dashboardPage, name: 'dashboard' },
  { re: /^\/workers\/?$/, page: workersPage, name: 'workers' },
  { re: /^\/workers\/([^/]+)\/?$/, page: workerPage, name: 'workers', keys: ['id'] },
  { re: /^\/tasks\/?$/, page: tasksPage, name: 'tasks' },
  { re: /^\/tasks\/new\/?$/, page: newTaskPage, name: 'new' },
  { re: /^\/tasks\/(\d+)\/?$/, page: taskPage, name: 'tasks', keys: ['id'] },
  { re: /^\/stats\/?$/, page: statsPage, name: 'stats' },
  { re: /^\/running\/?$/, page: runningPage, name: 'running' },
  { re: /^\/workflows\/?$/, page: workflowsPage, name: 'workflows' },
  { re: /^\/workflows\/(\d+)\/?$/, page: workflowPage, name: 'workflows', keys: ['id'] },
];

const SHORTCUTS = [
  { key: 'r', label: 'shortcut.refresh' },
  { key: 'd', label: 'shortcut.dashboard', path: '/' },
  { key: 't', label: 'shortcut.tasks', path: '/tasks' },
  { key: 'w', label: 'shortcut.workers', path: '/workers' },
  { key: 'n', label: 'shortcut.running', path: '/running' },
  { key: 's', label: 'shortcut.stats', path: '/stats' },
  { key: '?', label: 'shortcut.help' },
];

let view = null;
let currentRoute = null;
let renderSeq = 0;

function match(path) {
  for (const r of ROUTES) {
    const m = r.re.exec(path);
    if (m) {
      const params = {};
      (r.keys || []).forEach((k, i) => (params[k] = decodeURIComponent(m[i + 1])));
      return { route: r, params };
    }
  }
  return null;
}

// ---- shell ---------------------------------------------------------------------------

function navLink(path, name, label, iconName) {
  const a = h('a', { href: path, 'data-link': '', 'data-nav': name, class: 'nav-link' }, icon(iconName, { size: 18 }), h('span', null, label));
  if (currentRoute && currentRoute.name === name) a.setAttribute('aria-current', 'page');
  return a;
}

function languageSelect() {
  const sel = h(
    'select',
    { id: 'lang-select', 'aria-label': t('lang.choose'), class: 'lang-select' },
    languages().map((l) => h('option', { value: l.code, selected: l.code === language() }, l.name)),
  );
  sel.addEventListener('change', () => setLanguage(sel.value, true));
  return sel;
}

function renderShell() {
  const header = document.getElementById('app-header');
  const user = session.user;
  const nav = user
    ? h(
        'nav',
        { class: 'main-nav', 'aria-label': t('nav.label') },
        navLink('/', 'dashboard', t('nav.dashboard'), 'chart'),
        navLink('/tasks', 'tasks', t('nav.tasks'), 'file'),
        navLink('/running', 'running', t('nav.running'), 'sync'),
        navLink('/workflows', 'workflows', t('nav.workflows'), 'ui-flow'),
        navLink('/workers', 'workers', t('nav.workers'), 'box'),
        navLink('/stats', 'stats', t('nav.stats'), 'chart'),
        can('task.create') ? navLink('/tasks/new', 'new', t('nav.new_task'), 'ui-plus') : null,
      )
    : null;
  const userBox = user
    ? h(
        'div',
        { class: 'user-box' },
        h('span', { class: 'conn-state', id: 'conn-state', role: 'status' }),
        // On a task page, which watches its task: permission for browser notifications is
        // asked only when the user presses this.
        currentRoute && currentRoute.name === 'tasks' && /^\/tasks\/\d+/.test(location.pathname) && canAskForNotifications()
          ? h('button', {
              type: 'button',
              class: 'btn btn-small',
              id: 'notify-toggle',
              title: t('watch.enable_title'),
              onclick: async () => {
                await askForNotifications();
                renderShell();
              },
            }, icon('bell', { size: 16 }), h('span', null, t('watch.enable')))
          : null,
        h('span', { class: 'user-name', id: 'user-name' }, user.name),
        h('span', { class: `role role-${user.role}`, id: 'user-role' }, t(`role.${user.role}`)),
        // The shortcuts are there for whoever looks: a visible "?" opens their list.
        h('button', {
          type: 'button',
          class: 'btn btn-small help-button',
          id: 'help-open',
          'aria-label': t('shortcut.title'),
          title: `${t('shortcut.title')} (?)`,
          'aria-keyshortcuts': '?',
          onclick: () => document.getElementById('help-dialog').showModal(),
        }, '?'),
        h('button', { type: 'button', class: 'btn btn-small', id: 'logout', onclick: logout }, t('action.logout')),
      )
    : null;
  const menuBtn = user
    ? h('button', {
        type: 'button',
        class: 'btn btn-icon menu-toggle',
        'aria-label': t('nav.menu'),
        'aria-expanded': 'false',
        'aria-controls': 'header-menu',
        onclick: (ev) => {
          const open = header.classList.toggle('menu-open');
          ev.currentTarget.setAttribute('aria-expanded', String(open));
        },
      }, icon('ui-menu'))
    : null;
  replace(
    header,
    h('a', { href: '/', 'data-link': '', class: 'brand' }, icon('bolt', { size: 22 }), h('span', null, 'stask')),
    menuBtn,
    h('div', { class: 'header-menu', id: 'header-menu' }, nav, h('div', { class: 'header-tools' }, languageSelect(), userBox)),
  );
  const help = document.getElementById('help-dialog');
  replace(
    help.querySelector('.dialog-body'),
    h('h2', { id: 'help-title' }, t('shortcut.title')),
    h('dl', { class: 'shortcuts' }, SHORTCUTS.map((s) => [h('dt', null, h('kbd', null, s.key === '?' ? '?' : s.key.toUpperCase())), h('dd', null, t(s.label))])),
    h('p', { class: 'muted' }, t('shortcut.note')),
  );
  help.querySelector('[data-close]').textContent = t('action.close');
  document.getElementById('skip-link').textContent = t('nav.skip');
  showConnection();
}

// ---- connection state -------------------------------------------------------------------

/**
 * Whether what is shown is current: the header says Live / Reconnecting / Offline, and
 * while the service does not answer a banner says since when the data is as shown and
 * the page is marked stale. Everything refreshes by itself once the service is back.
 */
function showConnection() {
  const conn = api.connection;
  const live = conn.state === 'live';
  document.body.classList.toggle('stale', !live);
  const state = document.getElementById('conn-state');
  if (state) {
    state.dataset.state = conn.state;
    state.textContent = live ? t('conn.live') : conn.state === 'offline' ? t('conn.offline') : t('conn.reconnecting');
  }
  let banner = document.getElementById('conn-banner');
  if (!banner) {
    banner = h('div', { id: 'conn-banner', class: 'conn-banner', role: 'alert', hidden: true });
    document.getElementById('main').before(banner);
  }
  banner.hidden = live || !session.user;
  banner.dataset.state = conn.state;
  banner.textContent = live ? '' : conn.state === 'offline' ? t('conn.banner_offline', { time: timeOf(conn.since) }) : t('conn.banner_reconnecting', { time: timeOf(conn.since) });
}

async function logout() {
  try {
    await api.post(api.routes.logout());
  } catch {
    /* the session is dropped locally anyway */
  }
  session.user = null;
  go('/login', true);
}

// ---- routing -------------------------------------------------------------------------

async function render(focus = true) {
  const seq = ++renderSeq;
  const path = location.pathname;
  const m = match(path);
  if (view && view.destroy) view.destroy();
  view = null;
  const main = document.getElementById('main');
  if (!m) {
    currentRoute = null;
    renderShell();
    replace(main, h('div', { class: 'page' }, h('h1', { tabindex: '-1', id: 'page-title' }, t('error.not_found')), h('p', null, h('a', { href: '/', 'data-link': '' }, t('nav.dashboard')))));
    return;
  }
  if (!m.route.public && !session.user) {
    go(`/login?next=${encodeURIComponent(path + location.search)}`, true);
    return;
  }
  if (m.route.public && session.user) {
    go('/', true);
    return;
  }
  currentRoute = m.route;
  renderShell();
  // The page's frame at once: a placeholder until the page has built its own, which most
  // pages do before their data arrives (with skeleton rows of their own).
  const root = h('div', { class: `page page-${m.route.name}` }, pageSkeleton());
  replace(main, root);
  document.title = `${t(`title.${m.route.name}`)} · stask`;
  try {
    const v = await m.route.page.mount(root, m.params, new URLSearchParams(location.search));
    if (seq !== renderSeq) {
      if (v && v.destroy) v.destroy();
      return;
    }
    view = v;
  } catch (e) {
    if (seq !== renderSeq) return;
    replace(root, h('h1', { tabindex: '-1', id: 'page-title' }, t('error.title')), h('p', { class: 'error-box', role: 'alert' }, errorText(e)));
  }
  if (focus) {
    const title = document.getElementById('page-title');
    if (title && !document.activeElement?.closest?.('.page')) title.focus({ preventScroll: true });
  }
}

function go(path, replaceState = false) {
  if (path !== location.pathname + location.search) {
    if (replaceState) history.replaceState(null, '', path);
    else history.pushState(null, '', path);
  }
  document.getElementById('app-header').classList.remove('menu-open');
  render();
}

function onClick(ev) {
  if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const a = ev.target.closest && ev.target.closest('a[data-link]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin) return;
  ev.preventDefault();
  go(url.pathname + url.search);
}

// ---- keyboard shortcuts ---------------------------------------------------------------

function isTyping(target) {
  if (!target || !target.closest) return false;
  return !!target.closest('input, textarea, select, [contenteditable=""], [contenteditable="true"]');
}

function onKey(ev) {
  if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.isComposing) return;
  if (isTyping(ev.target)) return;
  const help = document.getElementById('help-dialog');
  const confirmDlg = document.getElementById('confirm-dialog');
  if (confirmDlg.open) return;
  if (ev.key === '?') {
    ev.preventDefault();
    if (help.open) help.close();
    else help.showModal();
    return;
  }
  if (!session.user) return;
  const key = ev.key.toLowerCase();
  const sc = SHORTCUTS.find((s) => s.key === key);
  if (!sc) return;
  ev.preventDefault();
  if (help.open) help.close();
  if (sc.path) go(sc.path);
  else if (key === 'r') refresh();
}

function refresh() {
  if (view && view.refresh) view.refresh();
  else render(false);
  notify(t('notify.refreshed'), 'info', { timeout: 1500 });
}

// ---- start ---------------------------------------------------------------------------

/** A page's placeholder: a title bar and a few grey blocks, hidden from screen readers. */
function pageSkeleton() {
  return h(
    'div',
    { class: 'page-skeleton', 'aria-hidden': 'true' },
    h('div', { class: 'skeleton skeleton-title' }),
    h('div', { class: 'skeleton skeleton-block' }),
    h('div', { class: 'skeleton skeleton-block skeleton-tall' }),
  );
}

async function start() {
  // The shell paints before anything is asked for: the brand and a page placeholder.
  const main = document.getElementById('main');
  main.setAttribute('aria-busy', 'true');
  replace(document.getElementById('app-header'), h('span', { class: 'brand' }, icon('bolt', { size: 22 }), h('span', null, 'stask')));
  replace(main, h('div', { class: 'page' }, pageSkeleton()));
  api.setUnauthorizedHandler(() => {
    if (!session.user) return;
    session.user = null;
    notify(t('error.session_expired'), 'error');
    go(`/login?next=${encodeURIComponent(location.pathname + location.search)}`, true);
  });
  // The language files and the session are independent: asked for at once.
  await Promise.all([initI18n(), loadSession()]);
  main.removeAttribute('aria-busy');
  api.connection.subscribe(showConnection);
  startWatching(document.getElementById('main'));
  document.addEventListener('click', onClick);
  document.addEventListener('keydown', onKey);
  window.addEventListener('popstate', () => render());
  window.addEventListener('stask:navigate', (ev) => go(ev.detail));
  onLanguageChange(() => render(false));
  document.getElementById('help-dialog').querySelector('[data-close]').addEventListener('click', () => document.getElementById('help-dialog').close());
  await render(false);
  document.body.classList.add('ready');
}

start();

export { go, navigate };
