// The console's operations views: the dashboard's live throughput and queue charts (and
// charts readable at every width), the "Running now" page, notifications when a watched
// task ends, and a worker card's schedule. A service of its own.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { makeHome, serve, browser, login, stask, createTask, task, waitFor, apiGet, screenshot, WAIT } from '../lib/harness.mjs';
import { WIDTHS } from '../lib/axe.mjs';

let home;
let server;
let br;
let page;
let base;

const nav = (p) => page.evaluate((p) => window.dispatchEvent(new CustomEvent('stask:navigate', { detail: p })), p);

describe('operations views', () => {
  before(async () => {
    home = makeHome();
    // Three tasks that wait (their worker inactive): a queue on the dashboard.
    for (let i = 0; i < 3; i++) createTask(home, 'product', 'import', { file: 'imports/products.csv' });
    stask(home, ['workers', 'deactivate', 'product']);
    server = await serve(home);
    base = server.url;
    br = await browser({ viewport: WIDTHS.desktop });
    // A browser notification stand-in that records what is shown and grants permission
    // when asked (headless Chromium denies real ones).
    await br.context.addInitScript(() => {
      window.__notifications = [];
      window.__asked = 0;
      window.Notification = class {
        constructor(title, opts) {
          window.__notifications.push({ title, ...opts });
        }
        static requestPermission() {
          window.__asked += 1;
          window.Notification.permission = 'granted';
          return Promise.resolve('granted');
        }
      };
      window.Notification.permission = 'default';
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

  test('dashboard: live throughput per minute and queue depth per worker', { timeout: 90_000 }, async () => {
    await nav('/');
    await page.waitForSelector('#throughput-chart svg');
    const legend = async (k) => Number((await page.textContent(`#throughput-chart [data-series=${k}] strong`)).replace(/\D/g, ''));
    const done0 = await legend('completed');
    const failed0 = await legend('failed');
    const ok = createTask(home, 'demo', 'run', { steps: 1, step_ms: 0 });
    const bad = createTask(home, 'demo', 'run', { steps: 2, step_ms: 0, fail_at: 1 }, ['--max-attempts', '1']);
    await waitFor('both to end', () => task(home, ok).status === 'completed' && task(home, bad).status === 'failed');
    // Live: the chart follows without a reload.
    await waitFor('the chart to count them', async () => (await legend('completed')) === done0 + 1 && (await legend('failed')) === failed0 + 1, WAIT, 250);
    // The minute may turn between the two finishes (or before the chart is drawn): the last
    // two columns hold them, one bar each, and the columns before hold none.
    const columns = page.locator('#throughput-chart .chart-column');
    const n = await columns.count();
    const bars = async (kind, from) => {
      let total = 0;
      for (let i = from; i < n; i++) total += await columns.nth(i).locator(`rect.fill-${kind}`).count();
      return total;
    };
    assert.equal(await bars('completed', n - 2), 1);
    assert.equal(await bars('failed', n - 2), 1);
    assert.equal(await bars('completed', 0) + (await bars('failed', 0)), 2, 'no other minute has a bar');
    const series = (await apiGet(page, base, '/stats/throughput')).series;
    assert.equal(series.length, 60, 'one entry a minute for the last hour');
    // The minute may turn between the finishes and this read: the last two minutes hold them.
    const recent = series.slice(-2);
    assert.ok(recent.some((b) => b.completed >= 1) && recent.some((b) => b.failed >= 1), JSON.stringify(recent));

    // Queue depth: the worker with waiting tasks shows them, pending and running apart.
    const dash = await apiGet(page, base, '/dashboard');
    assert.deepEqual(dash.queues, [{ worker: 'product', pending: 3, running: 0 }]);
    const row = page.locator('#queue-chart [data-worker=product]');
    await row.waitFor({ timeout: WAIT });
    assert.equal(await row.locator('rect[data-series=pending]').count(), 1);
    assert.deepEqual(await row.locator('text.chart-value').allTextContents(), ['0', '3']);
    await screenshot(page, 'operations-01-dashboard');
  });

  test('charts: a sensible axis maximum, failures visible at any ratio, no clipped or tiny text on phones', { timeout: 60_000 }, async () => {
    for (const [label, size] of Object.entries(WIDTHS)) {
      await page.setViewportSize(size);
      const m = await page.evaluate(async () => {
        const charts = await import('/js/charts.js');
        const buckets = Array.from({ length: 60 }, (_, i) => ({ at: i, label: `12:${String(i).padStart(2, '0')}`, completed: i === 30 ? 20_009 : 300, failed: i === 30 ? 1 : 0 }));
        const box = document.createElement('div');
        box.style.width = '100%';
        document.querySelector('main').append(box);
        box.append(charts.throughputChart(buckets, { title: 'x' }));
        await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
        const svg = box.querySelector('svg');
        const sb = svg.getBoundingClientRect();
        const texts = [...svg.querySelectorAll('text')];
        const clipped = texts.filter((t) => {
          const b = t.getBoundingClientRect();
          return b.left < sb.left - 0.5 || b.right > sb.right + 0.5 || b.top < sb.top - 0.5 || b.bottom > sb.bottom + 0.5;
        }).map((t) => t.textContent);
        const fonts = texts.map((t) => parseFloat(getComputedStyle(t).fontSize) * (sb.width / svg.viewBox.baseVal.width));
        const failRect = svg.querySelector('rect.fill-failed');
        const failHeight = failRect ? failRect.getBoundingClientRect().height : 0;
        const axis = texts.filter((t) => t.classList.contains('chart-axis')).map((t) => t.textContent);
        const scale = charts.niceScale(20_009);
        box.remove();
        return { clipped, minFont: Math.min(...fonts), failHeight, axis, scale, overflow: sb.right > document.documentElement.clientWidth };
      });
      assert.deepEqual(m.clipped, [], `${label}: labels cut off`);
      assert.ok(m.minFont >= 11, `${label}: smallest chart text ${m.minFont}px`);
      assert.ok(m.failHeight >= 3, `${label}: 1 failure beside 20,009 completions is ${m.failHeight}px tall`);
      assert.equal(m.scale.max, 25_000, 'the axis for 20,009 ends at 25,000');
      assert.ok(m.axis.includes('25,000') && !m.axis.includes('40,000'), `${label}: axis ${m.axis}`);
      assert.equal(m.overflow, false, `${label}: the chart fits the screen`);
    }
    await page.setViewportSize(WIDTHS.desktop);
  });

  test('running now: slots per host, what each runs and for how long', { timeout: 90_000 }, async () => {
    const id = createTask(home, 'demo', 'run', { steps: 600, step_ms: 50 });
    await waitFor('the task to run', () => task(home, id).status === 'running');
    await page.click('a[data-nav=running]');
    const row = page.locator(`.host-card tr[data-task-id="${id}"]`);
    await row.waitFor({ timeout: WAIT });
    assert.match(await page.textContent('.host-card .slot-count'), /1 of 2 slots busy/);
    assert.equal(await page.locator('.host-card .slot.busy').count(), 1);
    assert.equal(await page.locator('.host-card .slot').count(), 2);
    assert.match(await row.textContent(), /demo/);
    const forText = () => row.locator('td.col-for').textContent();
    const first = await forText();
    await waitFor('the duration to tick', async () => (await forText()) !== first, 5000, 200);
    assert.match(await forText(), /\d/);
    const api = await apiGet(page, base, '/running');
    assert.equal(api.hosts.length, 1);
    assert.equal(api.hosts[0].capacity, 2);
    assert.deepEqual(api.hosts[0].tasks.map((t) => t.id), [id]);
    await screenshot(page, 'operations-02-running');
    stask(home, ['tasks', 'cancel', String(id)]);
    await waitFor('the slot to be free', async () => (await page.locator('.host-card .slot.busy').count()) === 0, WAIT, 200);
  });

  test('a watched task that ends shows a toast, badges the tab title and sends a browser notification once allowed', { timeout: 90_000 }, async () => {
    const id = createTask(home, 'demo', 'run', { steps: 600, step_ms: 50 });
    await waitFor('the task to run', () => task(home, id).status === 'running');
    await nav(`/tasks/${id}`);
    await page.locator('#task-status [data-status=running]').waitFor();
    assert.equal(await page.evaluate(() => window.__asked), 0, 'permission is not asked by itself');
    await page.click('#notify-toggle');
    assert.equal(await page.evaluate(() => window.__asked), 1);
    await page.locator('#notify-toggle').waitFor({ state: 'detached' });
    const title = await page.title();
    stask(home, ['tasks', 'cancel', String(id)]);
    await page.locator('#task-status [data-status=cancelled]').waitFor({ timeout: WAIT });
    await page.locator('.toast', { hasText: `Task #${id} was cancelled` }).waitFor({ timeout: 5000 });
    assert.equal(await page.title(), `(–) ${title}`);
    const notes = await page.evaluate(() => window.__notifications);
    assert.deepEqual(notes.map((n) => n.title), [`Task #${id} was cancelled`]);
    // Back at the tab: a key press takes the badge away.
    await page.keyboard.press('Shift');
    assert.equal(await page.title(), title);
    // A task that had already ended when its page opened is not announced.
    await nav('/');
    await page.waitForSelector('#recent-tasks');
    await nav(`/tasks/${id}`);
    await page.locator('#task-status [data-status=cancelled]').waitFor();
    await page.waitForTimeout(500);
    assert.equal((await page.evaluate(() => window.__notifications)).length, 1);
  });

  test("a worker's card shows its schedule and next run", { timeout: 60_000 }, async () => {
    stask(home, ['workers', 'schedule', 'demo', 'daily', '--at', '08:30'], { quiet: true });
    await nav('/workers');
    const demo = page.locator('.worker-card[data-worker=demo] .worker-schedule');
    await demo.waitFor();
    assert.equal(await demo.getAttribute('data-schedule'), 'daily');
    assert.match(await demo.textContent(), /daily at 08:30/);
    assert.match(await demo.textContent(), /next run in \d+ (hour|minute)s?|next run tomorrow|next run in/);
    assert.match(await demo.locator('time.next-run').getAttribute('title'), /\d{4}-\d{2}-\d{2} 08:30/);
    assert.equal(await page.getAttribute('.worker-card[data-worker=product] .worker-schedule', 'data-schedule'), 'manual');
    await nav('/workers/demo');
    const line = page.locator('#worker-schedule-line');
    await line.waitFor();
    assert.match(await line.textContent(), /daily at 08:30.*next run/);
    await screenshot(page, 'operations-03-worker-schedule');
  });

  test('no script errors in the browser', () => {
    assert.deepEqual(br.errors, []);
  });
});
