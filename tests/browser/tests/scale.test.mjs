// The dashboard at scale: a million tasks in the database, 100,000 of them finished in
// the last hour. It opens to its first useful paint (the five counts and the newest
// tasks on screen) in under a second, and the calls it makes stay cheap: the counts come
// from the kept statistics, the throughput chart from the per-minute counts (reading the
// tasks finished in the hour cost 0.1 s at this size).

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { makeHome, serve, browser, login, screenshot } from '../lib/harness.mjs';
import { addTasks } from '../lib/bighome.mjs';

const TASKS = 1_000_000;
const PENDING = 2_000;
const LAST_HOUR = 100_000;

let home;
let server;
let br;
let page;
let base;

/** Milliseconds of `fn()` (an awaited call), the median of `runs`. */
async function median(runs, fn) {
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { median: times[Math.floor(runs / 2)], all: times };
}

describe('the dashboard with a million tasks', () => {
  before(async () => {
    home = makeHome();
    const t0 = Date.now();
    addTasks(home, { n: TASKS, pending: PENDING, lastHour: LAST_HOUR });
    console.log(`${TASKS.toLocaleString('en')} tasks written in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    server = await serve(home);
    base = server.url;
    br = await browser({ viewport: { width: 1440, height: 900 } });
    // Marks, in every document the page loads, the first frame at which the counts and
    // the newest tasks are on screen: performance.now() counts from the navigation.
    await br.context.addInitScript(() => {
      const useful = () => {
        const values = [...document.querySelectorAll('.metrics [data-metric]')];
        return values.length === 5 && values.every((v) => /\d/.test(v.textContent)) && document.querySelectorAll('#recent-tasks tbody tr[data-task-id]').length > 0;
      };
      const frame = () => {
        if (useful()) window.__usefulAt = performance.now();
        else requestAnimationFrame(frame);
      };
      requestAnimationFrame(frame);
    });
    page = await br.page();
    await login(page, base, 'alice');
  });

  after(async () => {
    if (br) await br.close();
    if (server) await server.stop();
    if (br && br.errors.length) console.log('browser errors:\n' + br.errors.join('\n'));
    if (home) fs.rmSync(home, { recursive: true, force: true });
  });

  test('opens to first useful paint in under 1 s, with the right counts', { timeout: 120_000 }, async () => {
    const paints = [];
    for (let i = 0; i < 3; i++) {
      // A whole page load each time: modules, language, session, then the dashboard.
      await page.goto(`${base}/`);
      await page.waitForFunction(() => window.__usefulAt !== undefined, null, { timeout: 30_000 });
      paints.push(await page.evaluate(() => window.__usefulAt));
    }
    const sorted = [...paints].sort((a, b) => a - b);
    console.log(`first useful paint at ${TASKS.toLocaleString('en')} tasks: ${paints.map((p) => p.toFixed(0)).join(', ')} ms`);
    assert.ok(sorted[1] < 1000, `first useful paint after ${sorted[1].toFixed(0)} ms (median of ${paints.map((p) => p.toFixed(0)).join(', ')})`);

    const count = async (k) => Number((await page.textContent(`.metrics [data-metric=${k}]`)).replace(/\D/g, ''));
    assert.equal(await count('total'), TASKS);
    assert.equal(await count('pending'), PENDING);
    // Every 97th finished task was cancelled, every other 50th failed.
    const finished = TASKS - PENDING;
    const cancelled = Math.floor(finished / 97);
    const failed = Math.floor(finished / 50) - Math.floor(finished / (50 * 97));
    assert.equal(await count('failed'), failed);
    assert.equal(await count('completed'), finished - cancelled - failed);
    // The newest tasks first: the pending ones at the end of the id range.
    const firstId = await page.locator('#recent-tasks tbody tr').first().getAttribute('data-task-id');
    assert.equal(Number(firstId), TASKS);
    await page.waitForSelector('#throughput-chart svg', { timeout: 30_000 });
    await screenshot(page, 'scale-01-dashboard-1m');
  });

  test('the calls the dashboard makes stay fast with 100,000 tasks finished in the hour', { timeout: 120_000 }, async () => {
    const get = async (p) => {
      const res = await page.request.get(`${base}/api/v1${p}`);
      assert.equal(res.status(), 200, p);
      return res.json();
    };
    // The chart counts what finished in the hour (less what slid out of its window
    // since the tasks were written).
    const tp = await get('/stats/throughput');
    const sum = tp.series.reduce((n, m) => n + m.completed + m.failed, 0);
    assert.ok(sum > LAST_HOUR * 0.9 && sum <= LAST_HOUR, `${sum} finished in the chart's hour`);
    const dash = await median(5, () => get('/dashboard'));
    const throughput = await median(5, () => get('/stats/throughput'));
    const day = await median(3, () => get('/stats/throughput?minutes=1440'));
    const list = await median(3, () => get('/tasks?limit=20'));
    const fmt = (m) => `${m.median.toFixed(1)} ms (${m.all.map((t) => t.toFixed(0)).join(', ')})`;
    console.log(`GET /dashboard ${fmt(dash)}; GET /stats/throughput ${fmt(throughput)}; ?minutes=1440 ${fmt(day)}; GET /tasks?limit=20 ${fmt(list)}`);
    // Counting the hour's tasks themselves took 37-200 ms here (never less); the kept
    // counts take a few. The best of five, as the machine is shared.
    assert.ok(throughput.all[0] < 20, `GET /stats/throughput took ${fmt(throughput)}`);
    assert.ok(dash.median < 100, `GET /dashboard took ${fmt(dash)}`);
  });
});
