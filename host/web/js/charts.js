// Small SVG charts drawn with DOM calls (labels are text nodes). No library.

import { s, h } from './dom.js';
import { num } from './i18n.js';

/**
 * Horizontal bars: items [{label, value, cls}]. Every bar carries its value as text,
 * and the chart has a title for screen readers.
 */
export function barChart(items, { title = '', width = 480, barHeight = 26, gap = 10 } = {}) {
  const labelW = 110;
  const valueW = 60;
  const max = Math.max(1, ...items.map((i) => i.value || 0));
  const height = items.length * (barHeight + gap) + gap;
  const svg = s('svg', {
    viewBox: `0 0 ${width} ${height}`,
    class: 'chart bar-chart',
    role: 'img',
    'aria-label': title,
    preserveAspectRatio: 'xMinYMin meet',
  });
  if (title) svg.append(s('title', { text: title }));
  items.forEach((item, i) => {
    const y = gap + i * (barHeight + gap);
    const w = Math.max(item.value > 0 ? 2 : 0, ((width - labelW - valueW) * (item.value || 0)) / max);
    svg.append(
      s('text', { x: labelW - 8, y: y + barHeight / 2, 'text-anchor': 'end', 'dominant-baseline': 'middle', class: 'chart-label', text: item.label }),
      s('rect', { x: labelW, y, width: w, height: barHeight, rx: 3, class: `chart-bar ${item.cls || ''}` }),
      s('text', { x: labelW + w + 6, y: y + barHeight / 2, 'dominant-baseline': 'middle', class: 'chart-value', text: num(item.value || 0) }),
    );
  });
  return svg;
}

/**
 * Stacked columns over time: buckets [{label, values: {key: n}}], series
 * [{key, label, cls}]. A legend is returned with the chart.
 */
export function columnChart(buckets, series, { title = '', width = 900, height = 220 } = {}) {
  const padL = 40;
  const padB = 36;
  const padT = 10;
  const plotW = width - padL - 8;
  const plotH = height - padB - padT;
  const totals = buckets.map((b) => series.reduce((sum, se) => sum + (b.values[se.key] || 0), 0));
  const max = niceMax(Math.max(1, ...totals));
  const svg = s('svg', {
    viewBox: `0 0 ${width} ${height}`,
    class: 'chart column-chart',
    role: 'img',
    'aria-label': title,
    preserveAspectRatio: 'xMinYMin meet',
  });
  if (title) svg.append(s('title', { text: title }));
  // Grid and y labels.
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    const y = padT + plotH - (plotH * i) / 4;
    svg.append(
      s('line', { x1: padL, x2: width - 8, y1: y, y2: y, class: 'chart-grid' }),
      s('text', { x: padL - 6, y, 'text-anchor': 'end', 'dominant-baseline': 'middle', class: 'chart-axis', text: num(Math.round(v)) }),
    );
  }
  const n = Math.max(1, buckets.length);
  const slot = plotW / n;
  const colW = Math.max(2, Math.min(40, slot * 0.7));
  const labelEvery = Math.ceil(n / Math.max(1, Math.floor(plotW / 48)));
  buckets.forEach((b, i) => {
    const x = padL + i * slot + (slot - colW) / 2;
    let y = padT + plotH;
    const g = s('g', { class: 'chart-column' });
    const tip = [b.label, ...series.map((se) => `${se.label}: ${num(b.values[se.key] || 0)}`)].join('\n');
    g.append(s('title', { text: tip }));
    for (const se of series) {
      const v = b.values[se.key] || 0;
      if (!v) continue;
      const hgt = (plotH * v) / max;
      y -= hgt;
      g.append(s('rect', { x, y, width: colW, height: hgt, class: `chart-bar ${se.cls || ''}` }));
    }
    svg.append(g);
    if (i % labelEvery === 0) {
      svg.append(s('text', { x: x + colW / 2, y: height - padB + 16, 'text-anchor': 'middle', class: 'chart-axis', text: b.label }));
    }
  });
  const legend = h(
    'ul',
    { class: 'chart-legend' },
    series.map((se) => h('li', null, h('span', { class: `swatch ${se.cls || ''}`, 'aria-hidden': 'true' }), se.label)),
  );
  return h('figure', { class: 'chart-figure' }, svg, legend);
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

/** The smallest 4 × (1, 2 or 5 × 10^k) at least `v`: four whole grid steps. */
function niceMax(v) {
  const step = Math.max(1, v / 4);
  const p = 10 ** Math.floor(Math.log10(step));
  for (const m of [1, 2, 5, 10]) if (m * p >= step) return 4 * m * p;
  return 4 * step;
}
