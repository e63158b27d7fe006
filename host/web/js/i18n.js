// Localization: English is the base every other language falls back to, key by key.
// A language file is a flat JSON object of "key": "text" with {name} placeholders.
// Files dropped into {home}/lang/ are served by the service at the same URL as the
// bundled ones (merged over them), so operators can add or override languages.

export const BUNDLED = ['en', 'uk', 'ru'];
const STORAGE_KEY = 'stask.lang';
const CODE_RE = /^[a-z]{2}(-[A-Z]{2})?$/;

let base = {};
let dict = {};
let current = 'en';
let available = [...BUNDLED];
const names = {};
const listeners = new Set();

async function fetchLang(code) {
  if (!CODE_RE.test(code)) return null;
  try {
    const res = await fetch(`/lang/${code}.json`, { credentials: 'same-origin' });
    if (!res.ok) return null;
    const data = await res.json();
    return data && typeof data === 'object' && !Array.isArray(data) ? data : null;
  } catch {
    return null;
  }
}

/** Languages offered in the selector: bundled ones plus those the service lists. */
async function loadAvailable() {
  try {
    const res = await fetch('/lang/index.json', { credentials: 'same-origin' });
    if (res.ok) {
      const list = await res.json();
      const codes = (Array.isArray(list) ? list : list.languages || [])
        .map((x) => (typeof x === 'string' ? x : x && x.code))
        .filter((c) => typeof c === 'string' && CODE_RE.test(c));
      for (const x of Array.isArray(list) ? list : list.languages || []) {
        if (x && typeof x === 'object' && typeof x.name === 'string') names[x.code] = x.name;
      }
      available = [...new Set([...BUNDLED, ...codes])];
    }
  } catch {
    /* the bundled languages are always there */
  }
}

/** The user's choice, then the browser's languages, then English. */
export function preferredLanguage() {
  const saved = localStorage.getItem(STORAGE_KEY);
  if (saved && available.includes(saved)) return saved;
  const wanted = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || 'en'];
  for (const w of wanted) {
    if (!w) continue;
    const [lang, region] = w.split('-');
    const full = region ? `${lang.toLowerCase()}-${region.toUpperCase()}` : lang.toLowerCase();
    if (available.includes(full)) return full;
    if (available.includes(lang.toLowerCase())) return lang.toLowerCase();
  }
  return 'en';
}

export async function initI18n() {
  // The list of languages, English and the likely choice are fetched at once.
  const saved = localStorage.getItem(STORAGE_KEY);
  const guess = saved && CODE_RE.test(saved) ? saved : preferredLanguage();
  const [, en, guessed] = await Promise.all([loadAvailable(), fetchLang('en'), guess === 'en' ? null : fetchLang(guess)]);
  base = en || {};
  const want = preferredLanguage();
  await setLanguage(want, false, want === guess ? guessed : null);
}

/**
 * Switches language; `save` remembers the choice in localStorage; `loaded` is the
 * language's file when it has been fetched already.
 */
export async function setLanguage(code, save = true, loaded = null) {
  if (!CODE_RE.test(code)) code = 'en';
  const d = code === 'en' ? base : loaded || (await fetchLang(code));
  dict = d ? { ...base, ...d } : base;
  current = d ? code : 'en';
  if (save) localStorage.setItem(STORAGE_KEY, current);
  if (typeof d?.['lang.name'] === 'string') names[current] = d['lang.name'];
  document.documentElement.lang = current;
  for (const fn of listeners) fn(current);
}

export function onLanguageChange(fn) {
  listeners.add(fn);
}

export function language() {
  return current;
}

export function languages() {
  return available.map((code) => ({ code, name: names[code] || nativeName(code) }));
}

function nativeName(code) {
  const fixed = { en: 'English', uk: 'Українська', ru: 'Русский' };
  if (fixed[code]) return fixed[code];
  try {
    return new Intl.DisplayNames([code], { type: 'language' }).of(code) || code;
  } catch {
    return code;
  }
}

/** The text of `key` with {placeholders} filled in; the key itself when missing. */
export function t(key, params) {
  let text = Object.prototype.hasOwnProperty.call(dict, key) ? dict[key] : key;
  if (typeof text !== 'string') text = key;
  if (params) {
    text = text.replace(/\{(\w+)\}/g, (m, name) =>
      Object.prototype.hasOwnProperty.call(params, name) ? String(params[name]) : m,
    );
  }
  return text;
}

/** Number in the current language. */
export function num(n) {
  try {
    return new Intl.NumberFormat(current).format(n);
  } catch {
    return String(n);
  }
}

/** Date and time (ms since epoch) in the current language. */
export function dateTime(ms) {
  if (ms === null || ms === undefined || ms === '') return '—';
  const d = typeof ms === 'number' ? new Date(ms) : new Date(String(ms));
  if (Number.isNaN(d.getTime())) return String(ms);
  try {
    return new Intl.DateTimeFormat(current, { dateStyle: 'medium', timeStyle: 'medium' }).format(d);
  } catch {
    return d.toLocaleString();
  }
}

/** A time (ms since epoch, or a date string) as a Date; null when there is none. */
function toDate(ms) {
  if (ms === null || ms === undefined || ms === '') return null;
  const d = typeof ms === 'number' ? new Date(ms) : new Date(String(ms));
  return Number.isNaN(d.getTime()) ? null : d;
}

const REL_UNITS = [
  ['year', 365 * 86400],
  ['month', 30 * 86400],
  ['week', 7 * 86400],
  ['day', 86400],
  ['hour', 3600],
  ['minute', 60],
  ['second', 1],
];

/** A time relative to now in the current language: "3 minutes ago", "in 2 hours". */
export function relativeTime(ms, now = Date.now()) {
  const d = toDate(ms);
  if (!d) return ms === null || ms === undefined || ms === '' ? '—' : String(ms);
  const secs = Math.round((d.getTime() - now) / 1000);
  // Under a minute (either way: the service's clock may be a little ahead).
  if (Math.abs(secs) < 60) return t('time.just_now');
  const [unit, size] = REL_UNITS.find(([, n]) => Math.abs(secs) >= n);
  const value = Math.trunc(secs / size);
  try {
    return new Intl.RelativeTimeFormat(current, { numeric: 'auto', style: 'long' }).format(value, unit);
  } catch {
    return dateTime(ms);
  }
}

/** The plural category ("one", "few", "many", "other") of `n` in the current language. */
export function pluralCategory(n) {
  try {
    return new Intl.PluralRules(current).select(Number(n));
  } catch {
    return Number(n) === 1 ? 'one' : 'other';
  }
}

/**
 * `t()` of the plural form of `key` for params.n: `key.one`, `key.few`, `key.many` or
 * `key.other` (the language's categories, Intl.PluralRules), then `key.other`, then `key`.
 */
export function tn(key, params) {
  const n = params && params.n !== undefined ? params.n : 0;
  const shown = { ...params, n: num(n) };
  for (const k of [`${key}.${pluralCategory(n)}`, `${key}.other`]) {
    if (Object.prototype.hasOwnProperty.call(dict, k)) return t(k, shown);
  }
  return t(key, shown);
}

/** The time of day (ms since epoch) in the current language. */
export function timeOf(ms) {
  if (ms === null || ms === undefined) return '—';
  try {
    return new Intl.DateTimeFormat(current, { timeStyle: 'medium' }).format(new Date(ms));
  } catch {
    return new Date(ms).toLocaleTimeString();
  }
}

/** A duration in ms as "1h 2m", "3m 4s", "5.2s". */
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  if (ms < 1000) return t('unit.ms', { n: Math.round(ms) });
  const s = ms / 1000;
  if (s < 60) return t('unit.s', { n: s < 10 ? s.toFixed(1) : Math.round(s) });
  const m = Math.floor(s / 60);
  if (m < 60) return t('unit.m_s', { m, s: Math.round(s % 60) });
  const hh = Math.floor(m / 60);
  if (hh < 48) return t('unit.h_m', { h: hh, m: m % 60 });
  return t('unit.d_h', { d: Math.floor(hh / 24), h: hh % 24 });
}
