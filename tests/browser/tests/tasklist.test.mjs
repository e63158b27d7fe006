// The task list as an operations console (issue 16): state tabs with live counts, a
// dense table (20+ rows at 1440×900), why a pending task waits in its row, skeletons
// while data loads and requests in parallel, API errors worded for a browser user (no
// CLI commands), and the service's messages in the user's language. A service of its own.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { makeHome, serve, browser, login, createTask, task, stask, apiGet, waitFor, screenshot, WAIT } from '../lib/harness.mjs';

let home;
let server;
let br;
let page;
let base;

const ids = {};

async function go(url) {
  await page.goto(`${base}${url}`);
  await page.waitForSelector('#page-title');
}

async function waitTaskStatus(id, statuses) {
  return waitFor(`task ${id} to be ${statuses}`, () => statuses.includes(task(home, id).status) && task(home, id), WAIT, 100);
}

/** Resolves after `ms`. */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Picks a language in the header and waits until the page uses it: the choice is saved
 * once its language file has loaded, so a navigation right after the click would start
 * in the previous language.
 */
async function chooseLanguage(lang) {
  await page.selectOption('#lang-select', lang);
  await page.waitForFunction((l) => document.documentElement.lang === l, lang);
}

describe('task list', () => {
  before(async () => {
    home = makeHome();
    // Tasks of every state: completed ones, a failed one, a cancelled one, and pending
    // ones of an inactive worker (created while no service runs, then the worker is
    // deactivated, so they stay pending with a reason).
    createTask(home, 'demo', 'noop', {}, ['--count', '30']);
    ids.failed = createTask(home, 'demo', 'run', { steps: 2, step_ms: 1, fail_at: 1 }, ['--max-attempts', '1']);
    ids.cancelled = createTask(home, 'product', 'import', { file: 'imports/products.csv' });
    stask(home, ['tasks', 'cancel', String(ids.cancelled)]);
    ids.waiting = createTask(home, 'product', 'import', { file: 'imports/products.csv' });
    stask(home, ['workers', 'deactivate', 'product']);
    server = await serve(home);
    base = server.url;
    await waitTaskStatus(ids.failed, ['failed']);
    br = await browser({ viewport: { width: 1440, height: 900 } });
    page = await br.page();
    await login(page, base, 'alice');
  });

  after(async () => {
    if (br) await br.close();
    if (server) await server.stop();
  });

  test('state tabs show live counts from the kept statistics and filter the list', async () => {
    await waitFor('no task running', async () => (await apiGet(page, base, '/stats/overview')).by_status.running === 0);
    await go('/tasks');
    const overview = await apiGet(page, base, '/stats/overview');
    const want = { all: overview.total, ...overview.by_status };
    for (const tab of ['all', 'pending', 'running', 'completed', 'failed', 'cancelled']) {
      await waitFor(`the ${tab} tab count`, async () => (await page.textContent(`[data-tab="${tab}"] .tab-count`)) === String(want[tab]));
    }
    assert.equal(want.failed, 1);
    assert.equal(want.cancelled, 1);
    assert.equal(await page.getAttribute('[data-tab="all"]', 'aria-current'), 'page');
    await screenshot(page, 'tasklist-tabs-1440');

    // The counts are live: a new task shows up in All and Pending without a reload.
    ids.extra = createTask(home, 'demo', 'noop', {});
    await waitFor('the new task to be counted', async () => (await page.textContent('[data-tab="all"] .tab-count')) === String(want.all + 1));

    // A tab is a filter: the list shows that state only, and the tab is the current one.
    await page.click('[data-tab="failed"]');
    await page.waitForURL(/status=failed/);
    await waitFor('only the failed task listed', async () => {
      const rows = await page.locator('#tasks-table tbody tr[data-task-id]').evaluateAll((r) => r.map((x) => [x.dataset.taskId, x.dataset.status]));
      return rows.length === 1 && rows[0][0] === String(ids.failed) && rows[0][1] === 'failed';
    });
    assert.equal(await page.getAttribute('[data-tab="failed"]', 'aria-current'), 'page');
    assert.equal(await page.getAttribute('[data-tab="all"]', 'aria-current'), null);
    // Other filters stay when the tab changes.
    await go('/tasks?worker=product&status=pending');
    assert.match(await page.getAttribute('[data-tab="cancelled"]', 'href'), /worker=product/);
    assert.match(await page.getAttribute('[data-tab="cancelled"]', 'href'), /status=cancelled/);
    // Filtered by worker, the counts are that worker's.
    await waitFor('product counts', async () => (await page.textContent('[data-tab="cancelled"] .tab-count')) === '1' && (await page.textContent('[data-tab="completed"] .tab-count')) === '0');
  });

  test('the dense table shows at least 20 tasks at 1440×900', async () => {
    await page.setViewportSize({ width: 1440, height: 900 });
    await go('/tasks');
    await page.waitForSelector('#tasks-table tbody tr[data-task-id]');
    await waitFor('a full page of rows', async () => (await page.locator('#tasks-table tbody tr[data-task-id]').count()) >= 25);
    const visible = await page.evaluate(() =>
      [...document.querySelectorAll('#tasks-table tbody tr[data-task-id]')].filter((r) => {
        const b = r.getBoundingClientRect();
        return b.height > 0 && b.top >= 0 && b.bottom <= window.innerHeight;
      }).length,
    );
    await screenshot(page, 'tasklist-dense-1440x900');
    assert.ok(visible >= 20, `${visible} rows visible at 1440×900`);
  });

  test('a pending task shows why it waits in its row', async () => {
    await go('/tasks?status=pending');
    const note = page.locator(`#tasks-table tr[data-task-id="${ids.waiting}"] .waiting-note`);
    await note.waitFor();
    assert.equal(await note.getAttribute('data-waiting'), 'worker_inactive');
    assert.equal(await note.textContent(), 'worker inactive');
    // The whole sentence on hover.
    assert.match(await note.getAttribute('title'), /inactive/);
    // Finished tasks have none.
    await go('/tasks?status=failed');
    await page.waitForSelector(`#tasks-table tr[data-task-id="${ids.failed}"]`);
    assert.equal(await page.locator('#tasks-table .waiting-note').count(), 0);
    // In Ukrainian.
    await chooseLanguage('uk');
    await go('/tasks?status=pending');
    await waitFor('the Ukrainian reason', async () => (await page.locator(`#tasks-table tr[data-task-id="${ids.waiting}"] .waiting-note`).textContent()) === 'обробник неактивний');
    await chooseLanguage('en');
  });

  test('the service messages in the list are in the user language', async () => {
    await go('/tasks?status=completed');
    const cell = page.locator('#tasks-table tbody tr[data-task-id] .col-message').first();
    await waitFor('an English service message', async () => /^Task completed successfully/.test(await cell.textContent()));
    await chooseLanguage('uk');
    await waitFor('the Ukrainian service message', async () => {
      const text = await page.locator('#tasks-table tbody tr[data-task-id] .col-message').first().textContent();
      return text && !/Task completed/.test(text) && /[а-яіїє]/i.test(text) && text;
    });
    // A failed task's message too.
    await go('/tasks?status=failed');
    await waitFor('the failed task message in Ukrainian', async () => {
      const text = await page.locator(`#tasks-table tr[data-task-id="${ids.failed}"] .col-message`).textContent();
      return text && !/^Task failed/.test(text) && /[а-яіїє]/i.test(text);
    });
    await chooseLanguage('en');
  });

  test('pages paint skeletons while their data loads, and ask for it in parallel', async () => {
    // Every API answer of the task list held back: the page is there at once, with
    // placeholder rows, and all three requests leave before any answer comes.
    const seen = [];
    const hold = async (route) => {
      seen.push({ url: route.request().url(), at: Date.now() });
      await sleep(1500);
      await route.continue();
    };
    await go('/');
    await page.route(/\/api\/v1\/(tasks\?|workers$|stats\/overview)/, hold);
    await page.click('a.nav-link[data-nav="tasks"]');
    await page.waitForSelector('#tasks-table tbody tr.skeleton-row', { timeout: 1000 });
    assert.equal(await page.getAttribute('#tasks-table', 'aria-busy'), 'true');
    assert.ok(await page.isVisible('#state-tabs'), 'the tabs are painted before the data');
    assert.ok(await page.isVisible('form.filters'), 'the filters are painted before the data');
    await screenshot(page, 'tasklist-skeleton');
    await page.waitForSelector('#tasks-table tbody tr[data-task-id]');
    assert.equal(await page.locator('#tasks-table tbody tr.skeleton-row').count(), 0);
    assert.equal(await page.getAttribute('#tasks-table', 'aria-busy'), null);
    const kinds = ['/tasks?', '/workers', '/stats/overview'].map((k) => seen.find((s) => s.url.includes(k)));
    assert.ok(kinds.every(Boolean), `requests seen: ${seen.map((s) => s.url).join(', ')}`);
    const spread = Math.max(...kinds.map((k) => k.at)) - Math.min(...kinds.map((k) => k.at));
    assert.ok(spread < 1000, `the list, workers and counts left ${spread} ms apart (one after another would be 1.5 s)`);
    await page.unroute(/\/api\/v1\/(tasks\?|workers$|stats\/overview)/, hold);

    // The dashboard: counters and recent rows are placeholders until /dashboard answers.
    await page.route(/\/api\/v1\/dashboard$/, hold);
    await page.click('a.nav-link[data-nav="dashboard"]');
    await page.waitForSelector('#recent-tasks tbody tr.skeleton-row', { timeout: 1000 });
    assert.equal(await page.textContent('[data-metric="total"]'), '');
    await page.waitForSelector('#recent-tasks tbody tr[data-task-id]');
    assert.notEqual(await page.textContent('[data-metric="total"]'), '');
    await page.unroute(/\/api\/v1\/dashboard$/, hold);

    // A fresh start: the language files and the session leave together, and the shell
    // (a placeholder page) is painted before any of them has answered.
    const started = [];
    const holdStart = async (route) => {
      started.push({ url: route.request().url(), at: Date.now() });
      await sleep(700);
      await route.continue();
    };
    await page.route(/\/(lang\/(index|en)\.json|api\/v1\/auth\/me)$/, holdStart);
    await page.goto(`${base}/tasks`);
    await page.waitForSelector('.page-skeleton', { timeout: 1000 });
    await page.waitForSelector('#tasks-table tbody tr[data-task-id]');
    await page.unroute(/\/(lang\/(index|en)\.json|api\/v1\/auth\/me)$/, holdStart);
    assert.equal(started.length, 3, started.map((s) => s.url).join(', '));
    const startSpread = Math.max(...started.map((s) => s.at)) - Math.min(...started.map((s) => s.at));
    assert.ok(startSpread < 500, `start requests ${startSpread} ms apart`);
  });

  test('API errors are worded for the browser, translated, and never name CLI commands', async () => {
    // A real one: a task that does not exist.
    await page.goto(`${base}/tasks/999999`);
    await page.waitForSelector('.error-box');
    assert.equal(await page.textContent('.error-box'), 'Task #999999 does not exist; it may have been deleted.');

    // The answer of a cancel that the service refused, with a CLI hint in its message
    // (as older services wrote them): the page words it by its code.
    const pending = ids.waiting;
    const refuse = (code, message) => async (route) => {
      if (route.request().method() !== 'POST') return route.continue();
      await route.fulfill({ status: 409, contentType: 'application/json', body: JSON.stringify({ error: { code, message } }) });
    };
    await go('/tasks?status=pending');
    const cancelBtn = page.locator(`#tasks-table tr[data-task-id="${pending}"] button[data-op="cancel"]`);
    await cancelBtn.waitFor();
    await page.route(`**/api/v1/tasks/${pending}/cancel`, refuse('worker_inactive', "worker 'product' is inactive, so its tasks do not run; activate it with `stask workers activate product`"));
    await cancelBtn.click();
    const toast = page.locator('.toast-error .toast-body').last();
    await toast.waitFor();
    assert.equal(await toast.textContent(), 'Worker “product” is inactive, so its tasks do not run. An admin can activate it on the Workers page.');
    await page.unroute(`**/api/v1/tasks/${pending}/cancel`);

    // A code the page does not know: its message, without the command-line part.
    await page.route(`**/api/v1/tasks/${pending}/cancel`, refuse('something_new', 'the task could not be cancelled now (see `stask tasks show 5`); run `stask tasks cancel 5` again later'));
    await cancelBtn.click();
    await waitFor('the second error toast', async () => (await page.locator('.toast-error').count()) >= 2);
    const text = await page.locator('.toast-error .toast-body').last().textContent();
    assert.equal(text, 'the task could not be cancelled now.');
    await page.unroute(`**/api/v1/tasks/${pending}/cancel`);

    // Translated: the same refusal in Ukrainian and Russian.
    for (const [lang, want] of [['uk', 'Обробник «product» неактивний'], ['ru', 'Обработчик «product» неактивен']]) {
      await chooseLanguage(lang);
      await go('/tasks?status=pending');
      await page.route(`**/api/v1/tasks/${pending}/cancel`, refuse('worker_inactive', "worker 'product' is inactive; activate it with `stask workers activate product`"));
      const before = await page.locator('.toast-error').count();
      await page.locator(`#tasks-table tr[data-task-id="${pending}"] button[data-op="cancel"]`).click();
      await waitFor(`a ${lang} error toast`, async () => (await page.locator('.toast-error').count()) > before);
      const got = await page.locator('.toast-error .toast-body').last().textContent();
      assert.ok(got.startsWith(want), got);
      assert.doesNotMatch(got, /stask/);
      await page.unroute(`**/api/v1/tasks/${pending}/cancel`);
    }
    await page.goto(`${base}/tasks/999999`);
    await page.waitForSelector('.error-box');
    assert.equal(await page.textContent('.error-box'), 'Задачи #999999 не существует; возможно, она удалена.');
    await chooseLanguage('en');
    assert.deepEqual(br.errors.filter((e) => !/409|404/.test(e)), []);
  });
});
