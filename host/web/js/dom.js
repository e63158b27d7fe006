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
