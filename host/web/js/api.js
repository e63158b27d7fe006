// The /api/v1 client: JSON in and out, the session cookie sent by the browser, the
// CSRF double-submit token in X-CSRF-Token on every state-changing request, and the
// API's error format {"error": {"code", "message", "field"}} turned into ApiError.

export const API = '/api/v1';

let csrfToken = null;
let onUnauthorized = null;

export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || '';
    this.field = field || null;
  }
}

/**
 * Whether the service answers: `live`, `reconnecting` (a request just failed; probing
 * every 2 s) or `offline` (still failing after three probes). `since` is when the
 * service last answered (what is shown dates from then). Every request reports to it;
 * while not live it probes by itself, and listeners hear when the service is back.
 */
export const connection = {
  state: 'live',
  since: null,
  failures: 0,
  listeners: new Set(),
  timer: null,
  lastOk: Date.now(),
  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  },
  set(state) {
    if (state === this.state) return;
    const was = this.state;
    this.state = state;
    this.since = state === 'live' ? null : this.lastOk;
    for (const fn of this.listeners) fn(state, was);
  },
  ok() {
    this.lastOk = Date.now();
    this.failures = 0;
    clearTimeout(this.timer);
    this.timer = null;
    this.set('live');
  },
  fail() {
    this.failures += 1;
    this.set(this.failures > 3 ? 'offline' : 'reconnecting');
    if (!this.timer) this.timer = setTimeout(() => this.probe(), 2000);
  },
  async probe() {
    this.timer = null;
    if (this.state === 'live') return;
    if (document.hidden) {
      this.timer = setTimeout(() => this.probe(), 2000);
      return;
    }
    try {
      const res = await fetch(API + '/auth/me', { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
      if (res.status >= 502 && res.status <= 504) this.fail();
      else this.ok();
    } catch {
      this.fail();
    }
  },
};

export function setCsrf(token) {
  if (typeof token === 'string' && token) csrfToken = token;
}

/** Called on a 401 from anything but the auth endpoints (session expired). */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

function csrfFromCookie() {
  for (const part of document.cookie.split(';')) {
    const [k, ...rest] = part.trim().split('=');
    if (/csrf/i.test(k)) return decodeURIComponent(rest.join('='));
  }
  return null;
}

function csrf() {
  return csrfFromCookie() || csrfToken;
}

/** A query string from an object, skipping empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

export async function request(method, path, body, opts = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && method !== 'HEAD') {
    const token = csrf();
    if (token) headers['X-CSRF-Token'] = token;
  }
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(API + path, {
      method,
      headers,
      body: payload,
      credentials: 'same-origin',
      signal: opts.signal,
    });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    connection.fail();
    throw new ApiError(0, 'network', null);
  }
  // A proxy's "bad gateway" or the store being unavailable: the data cannot be current.
  if (res.status >= 502 && res.status <= 504) connection.fail();
  else connection.ok();
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const err = data && data.error ? data.error : {};
    const e = new ApiError(res.status, err.code, typeof err === 'string' ? err : err.message, err.field);
    if (res.status === 401 && !path.startsWith('/auth/') && onUnauthorized) onUnauthorized(e);
    throw e;
  }
  return data;
}

export const get = (path, opts) => request('GET', path, undefined, opts);
export const post = (path, body, opts) => request('POST', path, body === undefined ? {} : body, opts);
export const put = (path, body, opts) => request('PUT', path, body, opts);
export const patch = (path, body, opts) => request('PATCH', path, body, opts);
export const del = (path, opts) => request('DELETE', path, undefined, opts);

const enc = encodeURIComponent;

/** Every route the UI uses, in one place. */
export const routes = {
  login: () => '/auth/login',
  logout: () => '/auth/logout',
  me: () => '/auth/me',
  dashboard: () => '/dashboard',
  stats: (q) => `/stats${query(q)}`,
  statsOverview: () => '/stats/overview',
  statsWorkers: (q) => `/stats/workers${query(q)}`,
  activity: (q) => `/stats/time${query(q)}`,
  throughput: () => '/stats/throughput',
  running: () => '/running',
  tasks: (q) => `/tasks${query(q)}`,
  task: (id) => `/tasks/${enc(id)}`,
  taskAction: (id, action) => `/tasks/${enc(id)}/${action}`,
  taskProgress: (id) => `/tasks/${enc(id)}/progress`,
  taskLog: (id, q) => `/tasks/${enc(id)}/logs${query(q)}`,
  taskEvents: (id, q) => `${API}/tasks/${enc(id)}/events${query(q)}`,
  taskLogDownload: (id) => `${API}/tasks/${enc(id)}/log`,
  taskFile: (id, name) => `${API}/tasks/${enc(id)}/files/${name.split('/').map(enc).join('/')}`,
  tasksBulk: () => '/tasks/bulk',
  process: () => '/tasks/process',
  clean: () => '/tasks/clean',
  workers: () => '/workers',
  worker: (id) => `/workers/${enc(id)}`,
  workerAction: (id, action) => `/workers/${enc(id)}/${action}`,
  workerSettings: (id) => `/workers/${enc(id)}/settings`,
  workerSchedule: (id) => `/workers/${enc(id)}/schedule`,
  discover: () => '/workers/discover',
  rescan: () => '/workers/rescan',
  cleanOrphaned: () => '/workers/clean-orphaned',
  workflows: (q) => `/workflows${query(q)}`,
  workflow: (id) => `/workflows/${enc(id)}`,
  workflowAction: (id, action) => `/workflows/${enc(id)}/${action}`,
};
