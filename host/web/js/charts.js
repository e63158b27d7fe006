// Small SVG charts drawn with DOM calls (labels are text nodes). No library.
//
// Every chart is drawn at the pixel width of its box (and drawn again when the box
// changes size), so text keeps its CSS size on a phone instead of shrinking with a
// scaled viewBox; the y-axis gutter is as wide as its widest label; axis maxima are a
// few "nice" steps above the largest value (25,000 for 20,009, not 40,000); and every
// value that is not zero is at least a few pixels tall, with its number in the tooltip,
// the legend or beside the bar, so a small count stays visible beside a large one.

import { s, h } from './dom.js';
import { num } from './i18n.js';

/** Height in px a value that is not zero is drawn with, however small its share. */
const MIN_VISIBLE = 3;

let measureCtx = null;

/** Width in px of `text` in the charts' 12 px font (a canvas measures it). */
export function textWidth(text, px = 12) {
  if (!measureCtx) measureCtx = document.createElement('canvas').getContext('2d');
  if (!measureCtx) return String(text).length * px * 0.62;
  measureCtx.font = `${px}px system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif`;
  return Math.ceil(measureCtx.measureText(String(text)).width);
}

/**
 * The axis for values up to `v`: a step of 1, 2, 2.5 or 5 × 10^k (whole numbers only)
 * and the smallest maximum of at most `maxTicks` steps at least `v`.
 */
export function niceScale(v, maxTicks = 5) {
  const value = Math.max(1, v);
  for (let p = 1; ; p *= 10) {
    for (const m of p === 1 ? [1, 2, 5] : [1, 2, 2.5, 5]) {
      const step = m * p;
      const ticks = Math.ceil(value / step);
      if (ticks <= maxTicks) return { max: ticks * step, step, ticks };
    }
  }
}

/** The height in px of `v` on an axis of `max` over `plot` px; small values stay visible. */
function barLength(v, max, plot) {
  if (!v) return 0;
  return Math.max(MIN_VISIBLE, (plot * v) / max);
}

/**
 * A box drawing `draw(width)` (an SVG) at its own width, again whenever that changes.
 * Drawn at `initial` px first, so the chart is there before the layout is known.
 */
function sized(cls, draw, initial = 640) {
  const box = h('div', { class: `chart-box ${cls}` });
  let drawn = 0;
  const paint = (w) => {
    const width = Math.max(200, Math.floor(w));
    if (width === drawn) return;
    drawn = width;
    box.replaceChildren(draw(width));
  };
  paint(initial);
  if (typeof ResizeObserver === 'function') {
    new ResizeObserver((entries) => {
      const w = entries[entries.length - 1].contentRect.width;
      if (w > 0) paint(w);
    }).observe(box);
  }
  return box;
}

function svgRoot(cls, width, height, title) {
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, width, height, class: `chart ${cls}`, role: 'img', 'aria-label': title });
  if (title) svg.append(s('title', { text: title }));
  return svg;
}

/** Grid lines and labels of a y axis from `y0` (value 0) up `plotH` px. */
function yAxis(svg, scale, { x, right, y0, plotH, up = true }) {
  for (let i = 0; i <= scale.ticks; i++) {
    const v = scale.step * i;
    const y = up ? y0 - (plotH * i) / scale.ticks : y0 + (plotH * i) / scale.ticks;
    if (i > 0 || up) svg.append(s('line', { x1: x, x2: right, y1: y, y2: y, class: 'chart-grid' }));
    if (i > 0 || up) svg.append(s('text', { x: x - 6, y, 'text-anchor': 'end', 'dominant-baseline': 'middle', class: 'chart-axis', text: num(v) }));
  }
}

/** Width of the y-axis gutter for `scale`'s labels. */
function gutter(...scales) {
  return 12 + Math.max(...scales.map((sc) => textWidth(num(sc.max), 11)));
}

/**
 * Horizontal bars: items [{label, value, cls}]. Every bar carries its value as text,
 * and the chart has a title for screen readers.
 */
export function barChart(items, { title = '', barHeight = 24, gap = 10 } = {}) {
  const draw = (width) => {
    const labelW = Math.min(width * 0.4, 8 + Math.max(40, ...items.map((i) => textWidth(i.label))));
    const valueW = 8 + Math.max(...items.map((i) => textWidth(num(i.value || 0))));
    const max = Math.max(1, ...items.map((i) => i.value || 0));
    const height = items.length * (barHeight + gap) + gap;
    const svg = svgRoot('bar-chart', width, height, title);
    const plot = Math.max(20, width - labelW - valueW);
    items.forEach((item, i) => {
      const y = gap + i * (barHeight + gap);
      const w = barLength(item.value || 0, max, plot);
      svg.append(
        s('text', { x: labelW - 8, y: y + barHeight / 2, 'text-anchor': 'end', 'dominant-baseline': 'middle', class: 'chart-label', text: item.label }),
        s('rect', { x: labelW, y, width: w, height: barHeight, rx: 3, class: `chart-bar ${item.cls || ''}` }),
        s('text', { x: labelW + w + 6, y: y + barHeight / 2, 'dominant-baseline': 'middle', class: 'chart-value', text: num(item.value || 0) }),
      );
    });
    return svg;
  };
  return sized('bar-box', draw, 480);
}

/** The centre of an x-axis label near `x`, moved inside [left, right] so it is never cut. */
function labelX(text, x, left, right) {
  const half = textWidth(text, 11) / 2 + 2;
  return Math.min(Math.max(x, left + half), right - half);
}

/** X-axis labels every so many columns that they never overlap. */
function labelEvery(buckets, slot) {
  const widest = Math.max(24, ...buckets.map((b) => textWidth(b.label, 11)));
  return Math.max(1, Math.ceil((widest + 12) / slot));
}

/**
 * Stacked columns over time: buckets [{label, values: {key: n}}], series
 * [{key, label, cls}]. A legend with each series' total is returned with the chart.
 */
export function columnChart(buckets, series, { title = '', height = 220 } = {}) {
  const totals = buckets.map((b) => series.reduce((sum, se) => sum + (b.values[se.key] || 0), 0));
  const scale = niceScale(Math.max(0, ...totals));
  const draw = (width) => {
    const padL = gutter(scale);
    const padB = 28;
    const padT = 10;
    const plotW = width - padL - 8;
    const plotH = height - padB - padT;
    const svg = svgRoot('column-chart', width, height, title);
    yAxis(svg, scale, { x: padL, right: width - 8, y0: padT + plotH, plotH });
    const n = Math.max(1, buckets.length);
    const slot = plotW / n;
    const colW = Math.max(2, Math.min(40, slot * 0.7));
    const every = labelEvery(buckets, slot);
    buckets.forEach((b, i) => {
      const x = padL + i * slot + (slot - colW) / 2;
      let y = padT + plotH;
      const g = s('g', { class: 'chart-column' });
      g.append(s('title', { text: [b.label, ...series.map((se) => `${se.label}: ${num(b.values[se.key] || 0)}`)].join('\n') }));
      for (const se of series) {
        const hgt = barLength(b.values[se.key] || 0, scale.max, plotH);
        if (!hgt) continue;
        y -= hgt;
        g.append(s('rect', { x, y, width: colW, height: hgt, class: `chart-bar ${se.cls || ''}` }));
      }
      svg.append(g);
      if (i % every === 0) svg.append(s('text', { x: labelX(b.label, x + colW / 2, padL, width), y: height - padB + 16, 'text-anchor': 'middle', class: 'chart-axis', text: b.label }));
    });
    return svg;
  };
  return h('figure', { class: 'chart-figure' }, sized('column-box', draw, 900), legend(series.map((se) => ({ ...se, total: buckets.reduce((sum, b) => sum + (b.values[se.key] || 0), 0) }))));
}

function legend(series) {
  return h(
    'ul',
    { class: 'chart-legend' },
    series.map((se) => h('li', { 'data-series': se.key }, h('span', { class: `swatch ${se.cls || ''}`, 'aria-hidden': 'true' }), `${se.label}: `, h('strong', null, num(se.total || 0)))),
  );
}

/**
 * Completed and failed tasks per minute, mirrored around one baseline: completions
 * above it on their own scale, failures below it on theirs, so 67 failures beside
 * 19,905 completions are as visible as the completions. Buckets
 * [{label, completed, failed}]; the legend gives each series' total.
 */
export function throughputChart(buckets, { title = '', labels = {}, height = 220 } = {}) {
  const up = niceScale(Math.max(0, ...buckets.map((b) => b.completed || 0)));
  const down = niceScale(Math.max(0, ...buckets.map((b) => b.failed || 0)), 2);
  const total = (k) => buckets.reduce((sum, b) => sum + (b[k] || 0), 0);
  const draw = (width) => {
    const padL = gutter(up, down);
    const padT = 10;
    const padB = 24;
    const plotW = width - padL - 8;
    const plotH = height - padT - padB - 8;
    const upH = Math.round(plotH * 0.64);
    const downH = plotH - upH;
    const y0 = padT + upH;
    const svg = svgRoot('throughput-chart', width, height, title);
    yAxis(svg, up, { x: padL, right: width - 8, y0, plotH: upH });
    yAxis(svg, down, { x: padL, right: width - 8, y0, plotH: downH, up: false });
    svg.append(s('line', { x1: padL, x2: width - 8, y1: y0, y2: y0, class: 'chart-baseline' }));
    const n = Math.max(1, buckets.length);
    const slot = plotW / n;
    const colW = Math.max(2, Math.min(24, slot * 0.72));
    const every = labelEvery(buckets, slot);
    buckets.forEach((b, i) => {
      const x = padL + i * slot + (slot - colW) / 2;
      const g = s('g', { class: 'chart-column', 'data-at': b.at });
      g.append(s('title', { text: `${b.label}\n${labels.completed || 'completed'}: ${num(b.completed || 0)}\n${labels.failed || 'failed'}: ${num(b.failed || 0)}` }));
      const c = barLength(b.completed || 0, up.max, upH);
      if (c) g.append(s('rect', { x, y: y0 - c, width: colW, height: c, class: 'chart-bar fill-completed', 'data-value': b.completed }));
      const f = barLength(b.failed || 0, down.max, downH);
      if (f) g.append(s('rect', { x, y: y0 + 1, width: colW, height: f, class: 'chart-bar fill-failed', 'data-value': b.failed }));
      // The whole column's height catches the pointer, so a tooltip is easy to reach.
      g.append(s('rect', { x: padL + i * slot, y: padT, width: slot, height: plotH, class: 'chart-hit' }));
      svg.append(g);
      if ((n - 1 - i) % every === 0) svg.append(s('text', { x: labelX(b.label, x + colW / 2, padL, width), y: height - 6, 'text-anchor': 'middle', class: 'chart-axis', text: b.label }));
    });
    return svg;
  };
  return h(
    'figure',
    { class: 'chart-figure' },
    sized('throughput-box', draw, 720),
    legend([
      { key: 'completed', label: labels.completed || 'completed', cls: 'fill-completed', total: total('completed') },
      { key: 'failed', label: labels.failed || 'failed', cls: 'fill-failed', total: total('failed') },
    ]),
  );
}

/**
 * Queue depth per worker: rows [{worker, pending, running}] as two bars each (running,
 * pending) on one scale, each with its number beside it.
 */
export function queueChart(rows, { title = '', labels = {} } = {}) {
  const scale = Math.max(1, ...rows.map((r) => Math.max(r.pending || 0, r.running || 0)));
  const barH = 12;
  const rowH = 2 * barH + 16;
  const draw = (width) => {
    const labelW = Math.min(width * 0.38, 10 + Math.max(40, ...rows.map((r) => textWidth(r.worker))));
    const valueW = 10 + Math.max(...rows.map((r) => Math.max(textWidth(num(r.pending || 0)), textWidth(num(r.running || 0)))));
    const plot = Math.max(20, width - labelW - valueW);
    const height = rows.length * rowH + 6;
    const svg = svgRoot('queue-chart', width, height, title);
    rows.forEach((r, i) => {
      const y = 6 + i * rowH;
      const g = s('g', { class: 'queue-row', 'data-worker': r.worker });
      g.append(s('title', { text: `${r.worker}\n${labels.running || 'running'}: ${num(r.running || 0)}\n${labels.pending || 'pending'}: ${num(r.pending || 0)}` }));
      g.append(s('text', { x: labelW - 8, y: y + barH + 1, 'text-anchor': 'end', 'dominant-baseline': 'middle', class: 'chart-label', text: r.worker }));
      [['running', 'fill-running'], ['pending', 'fill-pending']].forEach(([k, cls], j) => {
        const by = y + j * (barH + 2);
        const w = barLength(r[k] || 0, scale, plot);
        g.append(
          s('rect', { x: labelW, y: by, width: w, height: barH, rx: 2, class: `chart-bar ${cls}`, 'data-series': k }),
          s('text', { x: labelW + w + 5, y: by + barH / 2 + 1, 'dominant-baseline': 'middle', class: 'chart-value', text: num(r[k] || 0) }),
        );
      });
      svg.append(g);
    });
    return svg;
  };
  return h(
    'figure',
    { class: 'chart-figure' },
    sized('queue-box', draw, 480),
    legend([
      { key: 'running', label: labels.running || 'running', cls: 'fill-running', total: rows.reduce((n, r) => n + (r.running || 0), 0) },
      { key: 'pending', label: labels.pending || 'pending', cls: 'fill-pending', total: rows.reduce((n, r) => n + (r.pending || 0), 0) },
    ]),
  );
}

/** Progress (0-100) over the log's lines as a line chart. */
export function progressChart(points, { title = '', width = 640, height = 120 } = {}) {
  const pad = 6;
  const svg = s('svg', {
    viewBox: `0 0 ${width} ${height}`,
    class: 'chart progress-chart',
    role: 'img',
    'aria-label': title,
    preserveAspectRatio: 'none',
  });
  if (title) svg.append(s('title', { text: title }));
  svg.append(s('line', { x1: pad, x2: width - pad, y1: height - pad, y2: height - pad, class: 'chart-grid' }));
  svg.append(s('line', { x1: pad, x2: width - pad, y1: pad, y2: pad, class: 'chart-grid' }));
  if (points.length) {
    const t0 = points[0].x;
    const t1 = points[points.length - 1].x;
    const span = Math.max(1, t1 - t0);
    const d = points
      .map((p, i) => {
        const x = pad + ((width - 2 * pad) * (p.x - t0)) / span;
        const y = height - pad - ((height - 2 * pad) * Math.min(100, Math.max(0, p.y))) / 100;
        return `${i ? 'L' : 'M'}${x.toFixed(1)} ${y.toFixed(1)}`;
      })
      .join(' ');
    svg.append(s('path', { d, class: 'chart-line' }));
  }
  return svg;
}
