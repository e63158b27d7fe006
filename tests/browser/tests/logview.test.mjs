// The task page's log view (issue 16, "what the best consoles have"): the time of each
// line, search and a level filter, "jump to the first error", follow mode that pauses
// when the reader scrolls up, and the service's own lines in the user's language.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { makeHome, serve, browser, login, stask, staskJson, apiGet, screenshot, waitFor, WAIT } from '../lib/harness.mjs';

let home;
let server;
let br;
let page;
let base;
// A short completed task, and a task whose first attempt failed in the middle of a log
// of thousands of lines (its second attempt failed too).
let shortId;
let failedId;
let created;
let executed;
/** `Lines: N` for the failed task's whole log. */
let allLines;

function create(data, extra = []) {
  return Number(stask(home, ['tasks', 'create', 'demo', 'run', '--data', JSON.stringify(data), ...extra]).trim().split('\n')[0]);
}

function execute(id) {
  try {
    stask(home, ['tasks', 'execute', String(id)], { quiet: true });
  } catch {
    /* a failed task makes the command fail */
  }
}

/** Opens a task's page inside the application. */
async function openTask(id) {
  await page.evaluate((p) => window.dispatchEvent(new CustomEvent('stask:navigate', { detail: p })), `/tasks/${id}`);
  await page.locator('#task-log li').first().waitFor({ timeout: WAIT });
}

/** The texts of the log lines drawn. */
function drawnTexts() {
  return page.$$eval('#task-log li .text', (els) => els.map((e) => e.textContent));
}

/** Whether the log's view is at its end. */
function atEnd() {
  return page.$eval('.chat-wrap', (w) => w.scrollTop + w.clientHeight >= w.scrollHeight - 8);
}

describe('the task log view', () => {
  before(async () => {
    home = makeHome();
    stask(home, ['workers', 'settings', 'demo', 'max_steps=100000']);
    created = Date.now();
    shortId = create({ steps: 3, step_ms: 0 });
    execute(shortId);
    failedId = create({ steps: 1500, step_ms: 0, fail_at: 1500 }, ['--max-attempts', '2']);
    execute(failedId);
    execute(failedId);
    executed = Date.now();
    const failed = staskJson(home, ['tasks', 'show', String(failedId)]);
    assert.equal(failed.status, 'failed');
    allLines = `Lines: ${failed.log_lines.toLocaleString('en-US')}`;
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

  test('every line carries the time it was stored: in the API, and as a column in local time with the full date on hover', async () => {
    const res = await apiGet(page, base, `/tasks/${shortId}/logs?limit=100`);
    assert.ok(res.lines.length >= 5);
    for (const l of res.lines) assert.ok(l.at >= created - 1 && l.at <= executed + 1, `${l.at} not in ${created}..${executed}`);
    const details = await apiGet(page, base, `/tasks/${shortId}`);
    const history = (details.task || details).history;
    assert.deepEqual(history.map((l) => l.at), res.lines.map((l) => l.at));

    await openTask(shortId);
    const times = await page.$$eval('#task-log li', (els) =>
      els.map((li) => {
        const time = li.querySelector('time.log-time');
        return time && { text: time.textContent, datetime: time.getAttribute('datetime'), title: time.getAttribute('title') };
      }),
    );
    assert.equal(times.length, res.lines.length);
    times.forEach((tm, i) => {
      assert.ok(tm, `line ${i} has a time`);
      const at = res.lines[i].at;
      assert.equal(Date.parse(tm.datetime), at);
      // The local time of day, as the page's language writes it.
      const local = new Date(at);
      const hh = String(local.getHours() % 12 || 12);
      assert.ok(tm.text.includes(String(local.getMinutes()).padStart(2, '0')) && tm.text.includes(hh), `${tm.text} for ${local}`);
      assert.ok(tm.title.includes(String(local.getFullYear())), `the full date on hover: ${tm.title}`);
    });
    await screenshot(page, 'logview-01-times');
  });

  test('jump to the first error loads the older lines and brings the first failed attempt into view', { timeout: 60_000 }, async () => {
    await openTask(failedId);
    assert.match(await page.textContent('#log-info'), /newest 300 lines/);
    assert.ok(!(await drawnTexts()).some((x) => /Attempt 1 of 2 failed/.test(x)), 'the first failure is not among the newest lines');
    await page.click('#log-first-error');
    const target = page.locator('#task-log li.jump-target');
    await target.waitFor({ timeout: WAIT });
    assert.match(await target.textContent(), /Attempt 1 of 2 failed: failed at step 1500 as requested; retrying in/);
    assert.equal(await target.getAttribute('data-level'), 'error');
    // In view, and everything before it loaded.
    const visible = await target.evaluate((li) => {
      const w = li.closest('.chat-wrap').getBoundingClientRect();
      const r = li.getBoundingClientRect();
      return r.bottom > w.top && r.top < w.bottom;
    });
    assert.ok(visible, 'the first error is in view');
    assert.equal(await page.textContent('#log-info'), allLines);
    assert.equal(await page.evaluate(() => document.activeElement && document.activeElement.classList.contains('jump-target')), true, 'focus moves to it');
    await screenshot(page, 'logview-02-first-error');

    // A log without errors says so.
    await openTask(shortId);
    await page.click('#log-first-error');
    await waitFor('no error', async () => (await page.textContent('#log-find')) === 'No errors in this log');
  });

  test('search and the level filter narrow the lines, older ones searched as they load', { timeout: 60_000 }, async () => {
    await openTask(failedId);
    await page.fill('#log-search', 'step 17 of');
    // Both attempts' "Step **17** of 1500", the older one found once older pages load.
    await waitFor('every match', async () => (await page.textContent('#log-info')) === `Matches: 2 of ${allLines.slice(7)} lines`);
    assert.deepEqual(await drawnTexts(), ['Step 17 of 1500', 'Step 17 of 1500']);
    await screenshot(page, 'logview-03-search');

    // Errors only: the failed attempt (a pending line) and the final failure.
    await page.fill('#log-search', '');
    await page.selectOption('#log-level', 'error');
    await waitFor('the errors', async () => (await drawnTexts()).length === 2);
    const texts = await drawnTexts();
    assert.match(texts[0], /^Attempt 1 of 2 failed/);
    assert.match(texts[1], /^Task failed after .*: failed at step 1500 as requested$/);
    assert.deepEqual(await page.$$eval('#task-log li', (els) => els.map((e) => e.dataset.level)), ['error', 'error']);
    // Search and level together.
    await page.fill('#log-search', 'retrying');
    await waitFor('one line', async () => (await drawnTexts()).length === 1);
    assert.match((await drawnTexts())[0], /^Attempt 1 of 2 failed/);
    // Everything again.
    await page.fill('#log-search', '');
    await page.selectOption('#log-level', 'all');
    await waitFor('every line', async () => (await page.textContent('#log-info')) === allLines);
    assert.ok((await drawnTexts()).length > 5);
  });

  test('follow mode: new lines scroll into view at the end; scrolling up pauses it with a count, Resume or the end follows again', { timeout: 120_000 }, async () => {
    const id = create({ steps: 6000, step_ms: 15 });
    try {
      await openTask(id);
      await waitFor('a scrolling log', () => page.$eval('.chat-wrap', (w) => w.scrollHeight > w.clientHeight * 3), WAIT, 100);
      // At the end, new lines come into view.
      const lastShown = () => page.$eval('#task-log', (ol) => ol.lastElementChild.textContent);
      const first = await lastShown();
      await waitFor('newer lines at the end', async () => (await lastShown()) !== first && (await atEnd()));
      assert.equal(await page.isVisible('#log-follow'), false);

      // Scrolling up pauses following: the view stays, and the count of new lines grows.
      await page.$eval('.chat-wrap', (w) => (w.scrollTop = w.scrollHeight / 3));
      await page.locator('#log-follow').waitFor({ state: 'visible', timeout: WAIT });
      const paused = async () => Number(((await page.textContent('#log-paused')).match(/Paused — ([\d,]+) new line/) || [0, '0'])[1].replace(/,/g, ''));
      await waitFor('new lines counted', async () => (await paused()) > 10);
      const top = await page.$eval('.chat-wrap', (w) => w.scrollTop);
      const n = await paused();
      await waitFor('more new lines', async () => (await paused()) > n);
      assert.equal(await atEnd(), false, 'the view did not move to the end');
      assert.ok(Math.abs((await page.$eval('.chat-wrap', (w) => w.scrollTop)) - top) < 5, 'the view stays where it was');
      await screenshot(page, 'logview-04-paused');

      // Resume: back to the end, following again.
      await page.click('#log-resume');
      await waitFor('the end', () => atEnd());
      assert.equal(await page.isVisible('#log-follow'), false);
      const resumed = await lastShown();
      await waitFor('following again', async () => (await lastShown()) !== resumed && (await atEnd()));

      // Scrolling back to the end by hand resumes too.
      await page.$eval('.chat-wrap', (w) => (w.scrollTop = 0));
      await page.locator('#log-follow').waitFor({ state: 'visible', timeout: WAIT });
      await page.$eval('.chat-wrap', (w) => (w.scrollTop = w.scrollHeight));
      await page.locator('#log-follow').waitFor({ state: 'hidden', timeout: WAIT });
      assert.equal(await atEnd(), true);

      // A scroll is reported a frame after it happens: lines that come in between do not
      // take the view back to the end it just left (a jump at the start of a frame, so
      // that lines may come before its report; again and again).
      for (let round = 0; round < 12; round++) {
        await page.evaluate(() => new Promise((done) => requestAnimationFrame(() => {
          document.querySelector('.chat-wrap').scrollTop = 0;
          done();
        })));
        await page.locator('#log-follow').waitFor({ state: 'visible', timeout: WAIT });
        assert.equal(await atEnd(), false, `round ${round}: the view stays away from the end`);
        await page.$eval('.chat-wrap', (w) => (w.scrollTop = w.scrollHeight));
        await page.locator('#log-follow').waitFor({ state: 'hidden', timeout: WAIT });
      }
    } finally {
      stask(home, ['tasks', 'cancel', String(id)]);
    }
  });

  test("the service's lines, the task's message and error in the user's language; plugin lines unchanged", { timeout: 60_000 }, async () => {
    await page.evaluate(() => localStorage.setItem('stask.lang', 'uk'));
    await page.goto(`${base}/tasks/${shortId}`);
    await page.locator('#task-log li', { hasText: 'Завдання створено' }).waitFor({ timeout: WAIT });
    const texts = await drawnTexts();
    assert.equal(texts[0], 'Завдання створено (пріоритет: звичайний)');
    assert.equal(texts[1], 'Розпочато спробу 1 з 3');
    assert.ok(texts.includes('Hello! Running 3 steps of 0 ms'), 'plugin lines stay as written');
    assert.match(await page.textContent('#task-message'), /^Завдання успішно виконано \(/);
    // A failed task's error: the service's sentence around the plugin's text.
    await openTask(failedId);
    await page.locator('#task-log li', { hasText: 'Завдання завершилося помилкою' }).waitFor({ timeout: WAIT });
    assert.match(await page.textContent('#task-message'), /^Завдання завершилося помилкою через .*: failed at step 1500 as requested$/);
    await screenshot(page, 'logview-05-uk');
    // Back to English: the page is drawn again in it.
    await page.selectOption('.lang-select', 'en');
    await page.locator('#task-log li', { hasText: 'Task failed after' }).waitFor({ timeout: WAIT });
    assert.match(await page.textContent('#task-message'), /^Task failed after /);
  });
});
