// DOM helpers. Everything that comes from a worker, a task or a user is inserted as
// text (textContent / text nodes); no function here ever assigns innerHTML.

const SVG_NS = 'http://www.w3.org/2000/svg';

/**
 * Creates an element. `attrs` keys: `class`, `text` (textContent), `on<event>`
 * (listeners), `dataset`, boolean attributes (true/false), anything else as an
 * attribute. Children: nodes, strings (as text nodes), arrays, null/false (skipped).
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  applyAttrs(el, attrs);
  append(el, children);
  return el;
}

/** Same as h() for SVG elements. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  applyAttrs(el, attrs);
  append(el, children);
  return el;
}

function applyAttrs(el, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') el.textContent = String(v);
    else if (k === 'class') el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value' && 'value' in el) el.value = v;
    else if (k === 'checked' && 'checked' in el) el.checked = !!v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false || c === '') continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Removes all children of `el`, then appends `children`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/**
 * Renders the `**bold**` markup of log and task messages: the text is split at `**`
 * and every odd part becomes a <strong> holding a text node. An unpaired trailing `**`
 * stays literal. Returns a DocumentFragment; no HTML is ever parsed.
 */
export function rich(text) {
  const frag = document.createDocumentFragment();
  const str = text == null ? '' : String(text);
  const parts = str.split('**');
  // An even number of parts means one `**` without its partner: keep it as text.
  const paired = parts.length % 2 === 1 ? parts.length : parts.length - 1;
  for (let i = 0; i < parts.length; i++) {
    if (i >= paired) {
      frag.append(document.createTextNode('**' + parts[i]));
    } else if (i % 2 === 1 && parts[i] !== '') {
      const b = document.createElement('strong');
      b.textContent = parts[i];
      frag.append(b);
    } else if (i % 2 === 1) {
      frag.append(document.createTextNode('****'));
    } else if (parts[i] !== '') {
      frag.append(document.createTextNode(parts[i]));
    }
  }
  return frag;
}

/** Pretty JSON as text. */
export function jsonText(v) {
  try {
    return JSON.stringify(v, null, 2);
  } catch {
    return String(v);
  }
}

let uid = 0;
/** A document-unique id for label/aria wiring. */
export function nextId(prefix = 'f') {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A selector that finds `el`'s counterpart in a freshly built copy of its container. */
function focusSelector(el) {
  if (el.id) return `#${CSS.escape(el.id)}`;
  for (const a of ['data-op', 'data-toggle', 'data-select', 'data-bulk', 'data-page']) {
    if (el.hasAttribute(a)) return `[${a}="${CSS.escape(el.getAttribute(a))}"]`;
  }
  if (el.matches('a[href]')) return `a[href="${CSS.escape(el.getAttribute('href'))}"]`;
  return null;
}

/** Replaces `old` with `next`; keyboard focus inside `old` moves to its counterpart. */
export function swap(old, next) {
  const active = document.activeElement;
  const sel = active && old.contains(active) ? focusSelector(active) : null;
  old.replaceWith(next);
  if (sel) {
    const target = next.matches(sel) ? next : next.querySelector(sel);
    if (target) target.focus({ preventScroll: true });
  }
  return next;
}

/**
 * Updates `container`'s children in place to one element per item, keyed by
 * `keyOf(item)`: an element whose item is unchanged (`sigOf`, default its JSON) stays as
 * it is, a changed one is rebuilt (keyboard focus moving to its counterpart), new ones
 * are inserted and the others removed; elements that stay are never moved out of the
 * document, so focus, selection and hover survive a refresh.
 */
export function keyed(container, items, keyOf, render, sigOf = (item) => JSON.stringify(item)) {
  const old = new Map();
  for (const el of [...container.children]) {
    if (el.dataset.key !== undefined) old.set(el.dataset.key, el);
    else el.remove();
  }
  const want = items.map((item) => {
    const k = String(keyOf(item));
    const sig = sigOf(item);
    let el = old.get(k);
    if (el) {
      old.delete(k);
      if (el.__sig !== sig) {
        const next = render(item);
        next.dataset.key = k;
        next.__sig = sig;
        el = swap(el, next);
      }
    } else {
      el = render(item);
      el.dataset.key = k;
      el.__sig = sig;
    }
    return el;
  });
  for (const el of old.values()) el.remove();
  want.forEach((el, i) => {
    if (container.children[i] !== el) container.insertBefore(el, container.children[i] || null);
  });
}
