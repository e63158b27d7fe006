// The web console under load and when things go wrong: long logs, a service that goes
// away, periodic refreshes under the keyboard. A service of its own (some tests stop it).

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { makeHome, serve, browser, login, screenshot, stask, staskJson, createTask, task, waitFor, WAIT } from '../lib/harness.mjs';

let home;
let server;
let br;
let page;
let base;
/** A finished demo task with more than 100,000 log lines, and a short one. */
let longId;
let shortId;

/** Runs a demo task in the foreground (before the service starts); returns its id. */
function runDemo(data) {
  const id = Number(stask(home, ['tasks', 'create', 'demo', 'run', '--data', JSON.stringify(data)]).trim().split('\n')[0]);
  stask(home, ['tasks', 'execute', String(id)], { quiet: true });
  return id;
}

/**
 * Navigates inside the application (as a click on a link does) and resolves, in the
 * page, with the ms until `ready()` first holds at a frame.
 */
async function timedNavigation(p, path, ready) {
  return p.evaluate(
    ([path, readySrc]) =>
      new Promise((resolve, reject) => {
        const check = new Function(`return (${readySrc})()`);
        const t0 = performance.now();
        window.dispatchEvent(new CustomEvent('stask:navigate', { detail: path }));
        const give = setTimeout(() => reject(new Error('not ready within 30 s')), 30_000);
        const frame = () => {
          if (check()) {
            clearTimeout(give);
            resolve(performance.now() - t0);
          } else requestAnimationFrame(frame);
        };
        requestAnimationFrame(frame);
      }),
    [path, ready.toString()],
  );
}

describe('web console: long logs, lost connections, refreshes', () => {
  before(async () => {
    home = makeHome();
    stask(home, ['workers', 'settings', 'demo', 'max_steps=100000']);
    // 10,000 steps' messages (the per-attempt cap) and a progress line per step.
    longId = runDemo({ steps: 90_000, step_ms: 0 });
    shortId = runDemo({ steps: 1200, step_ms: 0 });
    server = await serve(home);
    base = server.url;
    br = await browser();
    page = await br.page();
    await login(page, base, 'alice');
  });

  after(async () => {
    if (br) await br.close();
    if (server) await server.stop();
    if (br && br.errors.length) console.log('browser errors:\n' + br.errors.join('\n'));
    if (home) fs.rmSync(home, { recursive: true, force: true });
  });

  test('a task with a 100,000-line log opens in under 1 s and draws only the lines in view', { timeout: 60_000 }, async () => {
    const shown = staskJson(home, ['tasks', 'show', String(longId)]);
    assert.equal(shown.status, 'completed');
    assert.ok(shown.log_lines >= 100_000, `${shown.log_lines} lines`);
    await page.evaluate(() => {
      window.__longTasks = [];
      new PerformanceObserver((l) => window.__longTasks.push(...l.getEntries().map((e) => e.duration))).observe({ type: 'longtask', buffered: false });
    });
    // First useful paint: the status, and the log's last line on screen.
    const ms = await timedNavigation(page, `/tasks/${longId}`, () => {
      const log = document.getElementById('task-log');
      return !!(log && document.querySelector('#task-status [data-status=completed]') && /Task completed successfully/.test(log.textContent));
    });
    console.log(`100,000-line log: first useful paint after ${ms.toFixed(0)} ms`);
    assert.ok(ms < 1000, `first useful paint after ${ms.toFixed(0)} ms`);
    await screenshot(page, 'console-01-long-log');
    const drawn = await page.locator('#task-log li').count();
    assert.ok(drawn > 5 && drawn < 100, `${drawn} line elements drawn`);
    assert.match(await page.textContent('#log-info'), /newest 300 lines/);

    // Scrolling up reads older lines a page at a time; the lines in view stay in view.
    const wrap = page.locator('.chat-wrap');
    const firstText = () => page.evaluate(() => {
      const w = document.querySelector('.chat-wrap');
      const top = w.getBoundingClientRect().top;
      const li = [...document.querySelectorAll('#task-log li')].find((el) => el.getBoundingClientRect().bottom > top + 1);
      return li.textContent;
    });
    await wrap.evaluate((w) => (w.scrollTop = 0));
    await waitFor('older lines', async () => /newest 1,300 lines/.test(await page.textContent('#log-info')));
    const before = await firstText();
    await page.waitForTimeout(100);
    assert.equal(await firstText(), before, 'what was at the top stays in view');
    assert.ok((await wrap.evaluate((w) => w.scrollTop)) > 1000, 'the older lines are above the view');
    for (let i = 0; i < 5; i++) {
      await wrap.evaluate((w) => (w.scrollTop = 0));
      await waitFor(`page ${i + 2} of older lines`, async () => new RegExp(`newest ${i + 2},300 lines`).test(await page.textContent('#log-info')));
    }
    assert.ok((await page.locator('#task-log li').count()) < 100, 'still only the lines in view');
    const longTasks = await page.evaluate(() => window.__longTasks);
    console.log(`long tasks while opening and scrolling: ${longTasks.length}, longest ${Math.max(0, ...longTasks).toFixed(0)} ms`);
  });

  test('paging back through a log shows every line once, in order', { timeout: 60_000 }, async () => {
    const shown = staskJson(home, ['tasks', 'show', String(shortId)]);
    await page.evaluate((p) => window.dispatchEvent(new CustomEvent('stask:navigate', { detail: p })), `/tasks/${shortId}`);
    await page.locator('#task-log li', { hasText: 'Task completed successfully' }).waitFor();
    while (await page.locator('#log-older').isVisible()) {
      await page.click('#log-older');
      await page.waitForTimeout(50);
    }
    await waitFor('every line', async () => (await page.textContent('#log-info')) === `Lines: ${shown.log_lines.toLocaleString('en-US')}`);
    // Read the whole list by scrolling from the top to the bottom.
    const seen = await page.evaluate(async () => {
      const w = document.querySelector('.chat-wrap');
      const texts = new Map();
      w.scrollTop = 0;
      for (;;) {
        await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
        for (const li of document.querySelectorAll('#task-log li')) texts.set(Number(li.dataset.key), li.querySelector('.text').textContent);
        if (w.scrollTop + w.clientHeight >= w.scrollHeight - 1) break;
        w.scrollTop += w.clientHeight;
      }
      return [...texts.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]);
    });
    assert.equal(seen.length, shown.log_lines, 'every line seen');
    assert.match(seen[0], /^Task created/);
    assert.match(seen[seen.length - 1], /^Task completed successfully/);
    const steps = seen.filter((x) => /^Step \d+ of 1200$/.test(x)).map((x) => Number(x.split(' ')[1]));
    assert.deepEqual(steps, Array.from({ length: 1200 }, (_, i) => i + 1));
  });

  test('periodic refreshes keep the keyboard focus where it was', { timeout: 120_000 }, async () => {
    const id = createTask(home, 'demo', 'run', { steps: 600, step_ms: 50 });
    await waitFor('the task to run', () => task(home, id).status === 'running');
    const nav = (p) => page.evaluate((p) => window.dispatchEvent(new CustomEvent('stask:navigate', { detail: p })), p);
    const progressOf = (sel) => page.getAttribute(`${sel} [role=progressbar]`, 'aria-valuenow');
    const focusSurvives = async (rowSel, target) => {
      await page.locator(`${rowSel} ${target}`).focus();
      await page.evaluate(() => (window.__focused = document.activeElement));
      // Two refreshes that changed the row (its progress moved) under the focus.
      for (let i = 0; i < 2; i++) {
        const was = await progressOf(rowSel);
        await waitFor('the row to refresh', async () => (await progressOf(rowSel)) !== was, WAIT, 100);
      }
      const where = await page.evaluate(([rowSel, target]) => {
        const a = document.activeElement;
        return { same: a === window.__focused, inRow: !!a.closest(rowSel), matches: a.matches(target), tag: a.tagName };
      }, [rowSel, target]);
      assert.ok(where.inRow && where.matches, `focus after refreshes: ${JSON.stringify(where)}`);
    };
    await nav('/');
    await page.waitForSelector(`#recent-tasks tr[data-task-id="${id}"]`);
    await focusSurvives(`#recent-tasks tr[data-task-id="${id}"]`, '[data-op=cancel]');
    // Tab goes on from there, not from the top of the page.
    await page.keyboard.press('Shift+Tab');
    assert.equal(await page.evaluate((id) => !!document.activeElement.closest(`tr[data-task-id="${id}"]`), id), true);
    await nav('/tasks');
    await page.waitForSelector(`#tasks-table tr[data-task-id="${id}"]`);
    await focusSurvives(`#tasks-table tr[data-task-id="${id}"]`, `input[data-select="${id}"]`);
    stask(home, ['tasks', 'cancel', String(id)]);
  });

  test('a service that goes away shows as offline everywhere, marks the data stale, and recovers by itself', { timeout: 120_000 }, async () => {
    const id = createTask(home, 'demo', 'run', { steps: 600, step_ms: 50 });
    await waitFor('the task to run', () => task(home, id).status === 'running');
    const nav = (p) => page.evaluate((p) => window.dispatchEvent(new CustomEvent('stask:navigate', { detail: p })), p);
    await nav(`/tasks/${id}`);
    await page.locator('#task-status [data-status=running]').waitFor();
    await waitFor('the live stream', async () => (await page.textContent('#live-mode')) === 'Live');
    assert.equal(await page.getAttribute('#conn-state', 'data-state'), 'live');
    assert.equal(await page.locator('#conn-banner').isVisible(), false);
    await page.evaluate(() => (window.__notReloaded = true));

    await server.down();
    await page.locator('#conn-state[data-state=offline]').waitFor({ timeout: WAIT });
    assert.match(await page.textContent('#live-mode'), /^Offline since \d/, 'the task page no longer says Live');
    assert.match(await page.textContent('#conn-banner'), /^Offline since \d.*out of date/);
    assert.equal(await page.evaluate(() => document.body.classList.contains('stale')), true, 'the data is marked stale');
    await screenshot(page, 'console-02-offline-task');
    await nav('/');
    await page.waitForSelector('#recent-tasks');
    assert.equal(await page.locator('#conn-banner').isVisible(), true, 'the dashboard says so too');
    assert.equal(await page.textContent('#conn-state'), 'Offline');
    await screenshot(page, 'console-03-offline-dashboard');

    let polls = 0;
    const count = (req) => {
      if (new URL(req.url()).pathname === '/api/v1/dashboard') polls += 1;
    };
    page.on('request', count);
    try {
      await server.up();
      // Probes every 2 s notice the service; then every view polls at once.
      await page.locator('#conn-state[data-state=live]').waitFor({ timeout: 10_000 });
      await waitFor('a dashboard poll', () => polls >= 1, 3000);
    } finally {
      page.off('request', count);
    }
    assert.equal(await page.locator('#conn-banner').isVisible(), false);
    assert.equal(await page.evaluate(() => document.body.classList.contains('stale')), false);
    await page.locator(`#recent-tasks tr[data-task-id="${id}"]`).waitFor();
    assert.equal(await page.evaluate(() => window.__notReloaded), true, 'recovered without a reload');
    await nav(`/tasks/${id}`);
    await waitFor('live again', async () => ['Live', 'Log complete'].includes(await page.textContent('#live-mode')));
    stask(home, ['tasks', 'cancel', String(id)]);
  });

  test('no script errors in the browser', () => {
    assert.deepEqual(br.errors, []);
  });
});
