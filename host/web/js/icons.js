// The fixed icon set (plugin-api/src/manifest.rs ICONS), drawn as inline SVG built
// from the shapes below. A plugin only names an icon; unknown names get the gear.

import { s } from './dom.js';

const P = (d) => ['path', { d }];
const C = (cx, cy, r) => ['circle', { cx, cy, r }];
const R = (x, y, width, height, rx = 0) => ['rect', { x, y, width, height, rx }];
const L = (x1, y1, x2, y2) => ['line', { x1, y1, x2, y2 }];

const SHAPES = {
  box: [P('M21 8 12 3 3 8v8l9 5 9-5z'), P('M3 8l9 5 9-5'), L(12, 13, 12, 21)],
  cart: [C(9, 20, 1.5), C(18, 20, 1.5), P('M2 3h3l2.6 12.4a1.5 1.5 0 0 0 1.5 1.1h8.8a1.5 1.5 0 0 0 1.5-1.2L21 8H6')],
  clock: [C(12, 12, 9), P('M12 7v5l3 2')],
  cloud: [P('M7 18h10a4 4 0 0 0 .6-8A6 6 0 0 0 6.2 9.2 4.5 4.5 0 0 0 7 18z')],
  database: [['ellipse', { cx: 12, cy: 5, rx: 8, ry: 3 }], P('M4 5v14c0 1.7 3.6 3 8 3s8-1.3 8-3V5'), P('M4 12c0 1.7 3.6 3 8 3s8-1.3 8-3')],
  download: [P('M12 3v12'), P('M7 10l5 5 5-5'), P('M4 19h16')],
  file: [P('M14 3H6v18h12V7z'), P('M14 3v4h4'), L(9, 13, 15, 13), L(9, 17, 15, 17)],
  gear: [C(12, 12, 3), P('M12 2v3M12 19v3M4.9 4.9l2.1 2.1M17 17l2.1 2.1M2 12h3M19 12h3M4.9 19.1 7 17M17 7l2.1-2.1')],
  globe: [C(12, 12, 9), P('M3 12h18'), P('M12 3c2.5 2.7 3.8 5.7 3.8 9s-1.3 6.3-3.8 9c-2.5-2.7-3.8-5.7-3.8-9S9.5 5.7 12 3z')],
  image: [R(3, 4, 18, 16, 2), C(8.5, 9.5, 1.5), P('M21 16l-5-5-9 9')],
  mail: [R(3, 5, 18, 14, 2), P('M3 7l9 6 9-6')],
  chart: [P('M4 20V4'), P('M4 20h16'), R(7, 12, 3, 6), R(12, 8, 3, 10), R(17, 14, 3, 4)],
  bell: [P('M6 16V11a6 6 0 0 1 12 0v5l2 2H4z'), P('M10 21h4')],
  search: [C(11, 11, 6), L(15.5, 15.5, 20, 20)],
  sync: [P('M20 11a8 8 0 0 0-14.3-4.9L4 8'), P('M4 3v5h5'), P('M4 13a8 8 0 0 0 14.3 4.9L20 16'), P('M20 21v-5h-5')],
  tag: [P('M3 12V4h8l10 10-8 8z'), C(7.5, 8.5, 1.5)],
  trash: [P('M4 7h16'), P('M10 7V4h4v3'), P('M6 7l1 13h10l1-13'), L(10, 11, 10, 17), L(14, 11, 14, 17)],
  truck: [P('M2 6h12v10H2z'), P('M14 10h4l3 3v3h-7'), C(6, 18, 2), C(17, 18, 2)],
  upload: [P('M12 21V9'), P('M7 14l5-5 5 5'), P('M4 5h16')],
  users: [C(9, 8, 3.5), P('M2.5 20a6.5 6.5 0 0 1 13 0'), P('M16 4.5a3.5 3.5 0 0 1 0 7'), P('M18 14a6.5 6.5 0 0 1 3.5 6')],
  bolt: [P('M13 2 4 14h7l-1 8 9-12h-7z')],
  bug: [R(8, 7, 8, 13, 4), P('M9 7a3 3 0 0 1 6 0'), P('M3 13h5M16 13h5M4 8l4 2M20 8l-4 2M4 19l4-2M20 19l-4-2'), L(12, 11, 12, 20)],
  // UI glyphs (not offered to plugins).
  'ui-menu': [P('M4 6h16M4 12h16M4 18h16')],
  'ui-play': [P('M7 4v16l13-8z')],
  'ui-stop': [R(6, 6, 12, 12, 1)],
  'ui-retry': [P('M4 12a8 8 0 1 0 2.3-5.7L4 8'), P('M4 3v5h5')],
  'ui-x': [P('M6 6l12 12M18 6 6 18')],
  'ui-eye': [P('M2 12s3.6-7 10-7 10 7 10 7-3.6 7-10 7-10-7-10-7z'), C(12, 12, 3)],
  'ui-plus': [P('M12 5v14M5 12h14')],
  'ui-flow': [C(5, 12, 2.5), C(19, 5, 2.5), C(19, 19, 2.5), P('M7.5 12h4l5-5.5'), P('M11.5 12l5 5.5')],
};

/** Names plugins may choose (manifest ICONS). */
export const ICON_NAMES = Object.keys(SHAPES).filter((n) => !n.startsWith('ui-'));

/** An inline SVG icon; decorative unless `label` is given. */
export function icon(name, { size = 20, label = null, cls = '' } = {}) {
  const shapes = Object.prototype.hasOwnProperty.call(SHAPES, name) ? SHAPES[name] : SHAPES.gear;
  const attrs = {
    viewBox: '0 0 24 24',
    width: size,
    height: size,
    fill: 'none',
    stroke: 'currentColor',
    'stroke-width': 1.8,
    'stroke-linecap': 'round',
    'stroke-linejoin': 'round',
    class: `icon ${cls}`.trim(),
    focusable: 'false',
  };
  if (label) {
    attrs.role = 'img';
    attrs['aria-label'] = label;
  } else {
    attrs['aria-hidden'] = 'true';
  }
  const svg = s('svg', attrs);
  if (label) svg.append(s('title', { text: label }));
  for (const [tag, a] of shapes) svg.append(s(tag, a));
  return svg;
}
