// End-to-end tests of the web interface: a real `stask serve` with the example plugins,
// real headless Chromium. Run by scripts/test.sh (node --test).

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  makeHome, serve, browser, login, logout, apiGet, screenshot, createTask, task, stask, installLib, waitFor, WAIT,
} from '../lib/harness.mjs';

let home;
let server;
let br;
let page;
let base;

/** Text of every visible toast. */
async function toasts(p = page) {
  return p.locator('.toast').allInnerTexts();
}

async function waitToast(text, p = page) {
  await p.locator('.toast', { hasText: text }).first().waitFor({ timeout: WAIT });
  return (await toasts(p)).find((x) => x.includes(text));
}

async function waitTaskStatus(id, statuses) {
  return waitFor(`task ${id} to be ${statuses}`, () => statuses.includes(task(home, id).status) && task(home, id), WAIT, 100);
}

async function go(p, url) {
  await p.goto(`${base}${url}`);
  await p.waitForSelector('#page-title');
}

describe('stask web interface', () => {
  before(async () => {
    home = makeHome();
    server = await serve(home);
    base = server.url;
    br = await browser();
    page = await br.page();
  });

  after(async () => {
    if (br) await br.close();
    if (server) await server.stop();
    if (br && br.errors.length) console.log('browser errors:\n' + br.errors.join('\n'));
    if (home) fs.rmSync(home, { recursive: true, force: true });
  });

  test('serves the application and refuses a wrong password', async () => {
    await page.goto(`${base}/`);
    await page.waitForSelector('form.login-form');
    assert.match(page.url(), /\/login/);
    await screenshot(page, '01-login');
    await page.fill('input[name=username]', 'alice');
    await page.fill('input[name=password]', 'not the password');
    await page.click('form.login-form button[type=submit]');
    await page.locator('#login-error').waitFor({ state: 'visible' });
    assert.match(await page.textContent('#login-error'), /wrong user name or password/i);
  });

  test('logs in and shows the user name and role', async () => {
    await login(page, base, 'alice');
    assert.equal(await page.textContent('#user-name'), 'alice');
    assert.equal(await page.textContent('#user-role'), 'Administrator');
    // Client routes survive a reload (the service answers them with the application).
    await go(page, '/workers');
    await page.reload();
    await page.waitForSelector('#worker-list .worker-card');
    assert.equal(await page.textContent('#page-title'), 'Workers');
  });

  test("dashboard counts match the API, with colour-coded statuses", async () => {
    const ok = createTask(home, 'demo', 'noop', {}, ['--count', '3']);
    assert.ok(ok > 0);
    const failed = createTask(home, 'demo', 'run', { steps: 2, step_ms: 1, fail_at: 1 }, ['--max-attempts', '1']);
    const pending = createTask(home, 'demo', 'run', { steps: 1 }, ['--priority', 'low']);
    await waitTaskStatus(failed, ['failed']);
    await waitTaskStatus(pending, ['completed']);
    await go(page, '/');
    const api = await apiGet(page, base, '/dashboard');
    for (const key of ['pending', 'running', 'completed', 'failed', 'total']) {
      await waitFor(`metric ${key}`, async () => (await page.textContent(`[data-metric=${key}]`)) === String(api.tasks[key]));
    }
    const rows = page.locator('#recent-tasks tbody tr');
    assert.equal(await rows.count(), Math.min(10, api.tasks.total));
    assert.equal(await rows.first().getAttribute('data-task-id'), String(api.recent_tasks[0].id));
    // Badges: green completed, red failed.
    const colour = (sel) => page.locator(sel).first().evaluate((el) => getComputedStyle(el).backgroundColor);
    assert.equal(await colour('#recent-tasks .badge.status-completed'), 'rgb(220, 252, 231)');
    assert.equal(await colour('#recent-tasks .badge.status-failed'), 'rgb(254, 226, 226)');
    // The failed task offers Retry as a quick action, completed ones do not.
    assert.equal(await page.locator(`#recent-tasks tr[data-task-id="${failed}"] [data-op=retry]`).count(), 1);
    await screenshot(page, '02-dashboard');
  });

  test('Process Tasks and Clean Old Tasks notify and refresh', async () => {
    await go(page, '/');
    await page.click('#process-tasks');
    const text = await waitToast('pending');
    assert.match(text, /No pending tasks|Processing/);
    await page.click('#clean-tasks');
    await page.locator('#confirm-dialog[open]').waitFor();
    await page.click('#confirm-dialog [data-confirm]');
    assert.match(await waitToast('Clean-up done'), /Clean-up done/);
  });

  test('an idle dashboard backs off its polling and pauses while hidden', async () => {
    await go(page, '/');
    await page.waitForSelector('#recent-tasks tbody tr[data-task-id]');
    let n = 0;
    const count = (req) => {
      if (new URL(req.url()).pathname === '/api/v1/dashboard') n += 1;
    };
    page.on('request', count);
    try {
      // Polls after 1 s, then 2 s, 4 s … while nothing changes: 3 in 7.5 s (not 7).
      await page.waitForTimeout(7500);
      assert.ok(n >= 1 && n <= 3, `${n} polls in 7.5 s`);
      await page.evaluate(() => {
        Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
        document.dispatchEvent(new Event('visibilitychange'));
      });
      n = 0;
      await page.waitForTimeout(4000);
      assert.equal(n, 0, 'no polling while the tab is hidden');
      await page.evaluate(() => {
        Object.defineProperty(document, 'hidden', { configurable: true, get: () => false });
        document.dispatchEvent(new Event('visibilitychange'));
      });
      await waitFor('a poll on return', () => n >= 1, 5000);
    } finally {
      page.off('request', count);
    }
  });

  test('new task form validates JSON in the browser', async () => {
    await page.click('[data-nav=new]');
    await page.waitForSelector('#new-worker');
    await page.selectOption('#new-worker', 'product');
    await page.fill('#new-data', '[1, 2]');
    await page.click('#create-task');
    await page.locator('.has-error #new-data').waitFor();
    assert.match(await page.locator('#new-data ~ .field-error, .field:has(#new-data) .field-error').first().textContent(), /must be a JSON object/);
    await page.fill('#new-data', '{"file": ');
    await page.click('#create-task');
    await waitFor('the JSON error', async () => /not valid JSON/.test(await page.locator('.field:has(#new-data) .field-error').textContent()));
    assert.match(page.url(), /\/tasks\/new$/, 'nothing was sent');
    await screenshot(page, '03-new-task');
  });

  test('a CSV import created from the form shows live progress and log lines', async () => {
    stask(home, ['workers', 'settings', 'product', 'row_delay_ms=120']);
    await go(page, '/tasks/new');
    await page.selectOption('#new-worker', 'product');
    await page.selectOption('#new-action', 'import');
    await page.fill('#new-data', '{"file": "products.csv"}');
    await page.evaluate(() => {
      window.__notReloaded = true;
    });
    await page.click('#create-task');
    await page.waitForURL(/\/tasks\/\d+$/);
    const id = Number(page.url().split('/').pop());
    // Sample the progress bar and the number of log lines until the end.
    const seen = new Set();
    const lineCounts = new Set();
    let shot = false;
    await waitFor('the import to reach 100 %', async () => {
      const v = Number(await page.getAttribute('#task-progress', 'aria-valuenow'));
      seen.add(v);
      lineCounts.add(await page.locator('#task-log li').count());
      if (!shot && v > 20 && v < 80) {
        shot = true;
        await screenshot(page, '04-task-running');
      }
      return v === 100 && (await page.locator('#task-status [data-status=completed]').count()) === 1;
    }, WAIT, 20);
    assert.ok([...seen].some((v) => v > 0 && v < 100), `intermediate progress seen: ${[...seen]}`);
    assert.ok(lineCounts.size >= 3, `log grew line by line: ${[...lineCounts]}`);
    assert.equal(await page.evaluate(() => window.__notReloaded), true, 'no page reload');
    assert.equal(await page.textContent('#live-mode'), 'Log complete');
    const log = await page.locator('#task-log').innerText();
    assert.match(log, /Task completed successfully/);
    assert.equal(await page.textContent('#task-processed'), '25 / 25');
    assert.equal(task(home, id).status, 'completed');
    await page.locator('#task-files a', { hasText: 'summary.json' }).waitFor();
    assert.equal(await page.getAttribute('#download-log', 'href'), `/api/v1/tasks/${id}/log`);
    await screenshot(page, '05-task-completed');
    stask(home, ['workers', 'settings', 'product', '--unset', 'row_delay_ms']);
  });

  test('cancels a running demo task', async () => {
    const id = createTask(home, 'demo', 'run', { steps: 400, step_ms: 50 });
    await go(page, `/tasks/${id}`);
    await page.locator('#task-status [data-status=running]').waitFor({ timeout: WAIT });
    await page.click('#task-cancel');
    await waitToast(`#${id}`);
    await page.locator('#task-status [data-status=cancelled]').waitFor({ timeout: WAIT });
    assert.equal(task(home, id).status, 'cancelled');
    assert.equal(await page.locator('#task-cancel').count(), 0);
    assert.equal(await page.locator('#task-retry').count(), 1, 'a cancelled task can be retried');
  });

  test('retries a failed task', async () => {
    const id = createTask(home, 'demo', 'run', { steps: 3, step_ms: 10, fail_at: 2 }, ['--max-attempts', '1']);
    await waitTaskStatus(id, ['failed']);
    await go(page, `/tasks/${id}`);
    await page.locator('#task-error').getByText('failed at step 2 as requested').waitFor();
    await page.locator('#task-log').getByText('Task failed', { exact: false }).first().waitFor();
    await screenshot(page, '06-task-failed');
    await page.click('#task-retry');
    await waitToast('queued again');
    await page.locator('#task-log').getByText('Queued for retry').waitFor({ timeout: WAIT });
    // It runs again (and fails again, as asked): the second attempt shows up live.
    await page.locator('#task-log').getByText('Started attempt 2').waitFor({ timeout: WAIT });
    await waitTaskStatus(id, ['failed']);
    await page.locator('#task-status [data-status=failed]').waitFor();
    assert.equal(task(home, id).attempts, 2);
  });

  test('Discover, Rescan and Clean Orphaned report what changed', async () => {
    await go(page, '/workers');
    await page.waitForSelector('[data-worker=demo]');
    await screenshot(page, '07-workers');
    const file = installLib(home, 'stask_fixture_replaceable_v1', 'libstask_fixture_replaceable.so');
    await page.click('#discover-workers');
    assert.match(await waitToast('Registered 1 new worker:'), /replaceable/);
    await page.locator('[data-worker=replaceable]').waitFor();
    assert.match(await page.locator('[data-worker=replaceable] .indicator').textContent(), /Inactive/);

    // The same file name with other contents.
    await new Promise((r) => setTimeout(r, 20));
    installLib(home, 'stask_fixture_replaceable_v2', 'libstask_fixture_replaceable.so');
    await page.click('#rescan-workers');
    assert.match(await waitToast('Updated 1 worker:'), /replaceable/);

    fs.unlinkSync(file);
    // A rescan that finds the file gone says so as a warning, not as a green success.
    await page.click('#rescan-workers');
    assert.match(await waitToast('Library missing for 1 worker'), /replaceable/);
    const missingToast = page.locator('.toast', { hasText: 'Library missing for 1 worker' }).first();
    assert.match(await missingToast.getAttribute('class'), /toast-warning/);
    assert.doesNotMatch(await missingToast.getAttribute('class'), /toast-success/);
    // The page notices the missing file; Clean Orphaned names it and asks first.
    await page.keyboard.press('r');
    await page.locator('[data-worker=replaceable] .tag-warn').waitFor();
    await page.click('#clean-orphaned');
    await page.locator('#confirm-dialog[open]').waitFor();
    assert.match(await page.textContent('#confirm-dialog .dialog-body'), /library file is gone \(replaceable\)/);
    await page.click('#confirm-dialog [data-cancel]');
    await page.locator('#confirm-dialog[open]').waitFor({ state: 'detached' });
    assert.ok((await apiGet(page, base, '/workers')).workers.some((w) => w.identifier === 'replaceable'), 'cancelled: nothing deleted');
    await page.click('#clean-orphaned');
    await page.click('#confirm-dialog [data-confirm]');
    assert.match(await waitToast('Removed 1 orphaned worker:'), /replaceable/);
    await page.locator('[data-worker=replaceable]').waitFor({ state: 'detached' });

    // Put back, it is registered again with what it had, and the toast says so.
    installLib(home, 'stask_fixture_replaceable_v2', 'libstask_fixture_replaceable.so');
    await page.click('#discover-workers');
    assert.match(await waitToast('Registered again with its earlier settings'), /replaceable/);
    await page.locator('[data-worker=replaceable]').waitFor();

    // Its file is there again: nothing is orphaned.
    await page.click('#clean-orphaned');
    await page.click('#confirm-dialog [data-confirm]');
    await waitToast('No orphaned workers');
  });

  test('activate / deactivate toggle', async () => {
    await go(page, '/workers');
    const sw = page.locator('[data-toggle=product]');
    await sw.waitFor();
    assert.equal(await sw.getAttribute('aria-checked'), 'true');
    await sw.click();
    await waitToast('Worker product deactivated');
    assert.equal((await apiGet(page, base, '/workers/product')).active, false);
    await page.locator('[data-toggle=product][aria-checked=false]').waitFor();
    await page.locator('[data-toggle=product]').click();
    await waitToast('Worker product activated');
    assert.equal((await apiGet(page, base, '/workers/product')).active, true);
  });

  test('worker page: settings form refuses a wrong value; secrets are write-only', async () => {
    await go(page, '/workers/demo');
    await page.waitForSelector('#settings-form');
    await screenshot(page, '08-worker');
    await page.fill('input[data-key=max_steps]', 'abc');
    await page.click('#save-settings');
    const err = page.locator('.field:has(input[data-key=max_steps]) .field-error');
    await err.waitFor({ state: 'visible' });
    assert.match(await err.textContent(), /whole number/);
    assert.equal(await page.getAttribute('input[data-key=max_steps]', 'aria-invalid'), 'true');
    assert.equal((await apiGet(page, base, '/workers/demo/settings')).settings.max_steps, 1000, 'nothing stored');

    // A value of the wrong type that only the service can judge is shown at its field too.
    await page.fill('input[data-key=max_steps]', '500');
    await page.fill('input[data-key=timeout_secs]', '0');
    await page.click('#save-settings');
    await page.locator('.field:has(input[data-key=timeout_secs]) .field-error').waitFor({ state: 'visible' });

    await page.fill('input[data-key=timeout_secs]', '');
    assert.equal(await page.inputValue('input[data-key=api_key]'), '', 'secrets are never pre-filled');
    assert.equal(await page.textContent('[data-secret-state=api_key]'), 'not set');
    await page.fill('input[data-key=api_key]', 'sk-very-secret');
    await page.click('#save-settings');
    await waitToast('Settings of demo saved');
    await page.locator('[data-secret-state=api_key]', { hasText: /^set$/ }).waitFor();
    assert.equal(await page.inputValue('input[data-key=api_key]'), '');
    const s = await apiGet(page, base, '/workers/demo/settings');
    assert.equal(s.settings.max_steps, 500);
    assert.deepEqual(s.settings.api_key, { secret: true, set: true });
    assert.ok(!(await page.content()).includes('sk-very-secret'), 'the secret is nowhere in the page');
  });

  test('worker page: the sandbox card shows what a worker may touch, and operators change it', async () => {
    await go(page, '/workers');
    await page.waitForSelector('[data-access-summary=product]');
    assert.match(await page.textContent('[data-access-summary=product]'), /Reads \$\{import_dir\}/, 'the Workers page shows it too');
    await go(page, '/workers/product');
    await page.waitForSelector('#sandbox');
    assert.equal((await page.textContent('[data-access=reads]')).trim(), '${import_dir}', 'the declaration');
    assert.match(await page.textContent('[data-access=connects]'), /nothing/);
    await page.waitForSelector('#settings-form');
    await page.fill('input[data-key=sandbox_connects]', 'api.example.com:443');
    await page.click('#save-settings');
    await waitToast('Settings of product saved');
    const w = await apiGet(page, base, '/workers/product');
    assert.deepEqual(w.access.connects, ['api.example.com:443']);
    assert.deepEqual(w.access.declared, { reads: ['${import_dir}'] });
    await go(page, '/workers/product');
    await page.waitForSelector('#sandbox');
    assert.match(await page.textContent('[data-access=connects]'), /api\.example\.com:443/);
    assert.match(await page.textContent('[data-access=connects]'), /The worker declares: nothing/);
    // Emptied, it goes back to what the worker declares.
    await page.fill('input[data-key=sandbox_connects]', '');
    await page.click('#save-settings');
    await waitToast('Settings of product saved');
    assert.deepEqual((await apiGet(page, base, '/workers/product')).access.connects, []);
  });

  test('worker page: schedule, pause and resume', async () => {
    await go(page, '/workers/demo');
    await page.waitForSelector('#schedule form');
    await page.selectOption('#schedule select[name=kind]', 'daily');
    await page.fill('#schedule input[name=at]', '08:30');
    await page.fill('#schedule textarea[name=data]', '{"steps": 2}');
    await page.click('#save-schedule');
    await waitToast('Schedule of demo saved');
    await waitFor('the next run', async () => /\d{4}-\d{2}-\d{2} 08:30/.test(await page.textContent('#schedule-next')));
    await page.click('#schedule-pause');
    await waitToast('paused');
    await waitFor('paused', async () => (await page.textContent('#schedule-next')) === 'Paused');
    assert.equal((await apiGet(page, base, '/workers/demo/schedule')).paused, true);
    await page.click('#schedule-pause');
    await waitToast('resumed');
    await page.selectOption('#schedule select[name=kind]', 'manual');
    await page.click('#save-schedule');
    await waitFor('manual', async () => (await apiGet(page, base, '/workers/demo/schedule')).kind === 'manual');
  });

  test('tasks page filters, searches and bulk-cancels', async () => {
    const ids = [1, 2, 3].map(() => createTask(home, 'demo', 'run', { steps: 400, step_ms: 50 }, ['--priority', 'low']));
    await go(page, '/tasks?worker=demo');
    await page.waitForSelector('#tasks-table tbody tr[data-task-id]');
    // The state tabs filter by status (and keep the worker filter).
    await page.click('[data-tab="failed"]');
    await page.waitForURL(/status=failed/);
    await waitFor('failed rows only', async () => {
      const st = await page.locator('#tasks-table tbody tr[data-task-id]').evaluateAll((rows) => rows.map((r) => r.dataset.status));
      return st.length > 0 && st.every((s) => s === 'failed');
    });
    await page.fill('input[name=q]', 'products.csv');
    await page.click('#apply-filters');
    await page.waitForURL(/q=products.csv/);
    await page.locator('#tasks-table tr.empty').waitFor();
    await go(page, '/tasks?worker=demo&action=run');
    for (const id of ids) await page.check(`input[data-select="${id}"]`);
    assert.match(await page.textContent('.bulk-info'), /Selected: 3/);
    await screenshot(page, '09-tasks');
    await page.click('[data-bulk=cancel]');
    await waitToast('Cancelled: 3');
    for (const id of ids) await waitTaskStatus(id, ['cancelled']);
  });

  test('statistics page draws its charts', async () => {
    await go(page, '/stats');
    await page.waitForSelector('#status-chart svg rect', { state: 'attached' });
    await page.waitForSelector('#activity-chart svg');
    const api = await apiGet(page, base, '/stats');
    assert.equal(await page.textContent('[data-figure="stats.total"]'), String(api.overview.total));
    assert.ok(await page.locator('#worker-stats tr[data-worker=demo]').count());
    for (const p of ['week', 'month']) {
      await page.click(`[data-period=${p}]`);
      await page.locator(`[data-period=${p}][aria-pressed=true]`).waitFor();
      await page.waitForSelector('#activity-chart svg');
    }
    await page.click('[data-period=custom]');
    await page.click('.custom-range button[type=submit]');
    await page.waitForSelector('#activity-chart svg');
    await screenshot(page, '10-statistics');
  });

  test('keyboard shortcuts (not while typing)', async () => {
    await go(page, '/');
    await page.keyboard.press('w');
    await page.waitForURL(`${base}/workers`);
    await page.keyboard.press('s');
    await page.waitForURL(`${base}/stats`);
    await page.keyboard.press('t');
    await page.waitForURL(`${base}/tasks`);
    await page.keyboard.press('d');
    await page.waitForURL(`${base}/`);
    await page.keyboard.press('r');
    await waitToast('Refreshed');
    await page.keyboard.press('Shift+?');
    await page.locator('#help-dialog[open]').waitFor();
    assert.match(await page.locator('#help-dialog').innerText(), /Refresh the current view/);
    await screenshot(page, '11-help');
    await page.keyboard.press('Escape');
    await page.locator('#help-dialog[open]').waitFor({ state: 'detached' });
    // Discoverable without knowing the key: a visible "?" in the header opens it too.
    assert.ok(await page.locator('#help-open').isVisible(), 'a help button is shown');
    assert.equal(await page.getAttribute('#help-open', 'aria-label'), 'Keyboard shortcuts');
    await page.click('#help-open');
    await page.locator('#help-dialog[open]').waitFor();
    await page.keyboard.press('Escape');
    await page.locator('#help-dialog[open]').waitFor({ state: 'detached' });
    // Typing in a field types.
    await go(page, '/tasks');
    await page.click('input[name=q]');
    await page.keyboard.type('wsd');
    assert.equal(await page.inputValue('input[name=q]'), 'wsd');
    assert.equal(new URL(page.url()).pathname, '/tasks');
  });

  test('the execution log shows task data as text, never as markup', async () => {
    const evil = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2"> and **bold**';
    const id = createTask(home, 'demo', 'echo', { message: evil });
    await waitTaskStatus(id, ['completed']);
    await go(page, `/tasks/${id}`);
    await page.locator('#task-log').getByText('<script>', { exact: false }).waitFor();
    assert.equal(await page.evaluate(() => window.__xss), undefined);
    assert.equal(await page.locator('#task-log script, #task-log img, #task-data img').count(), 0);
    assert.equal(await page.locator('#task-log strong', { hasText: 'bold' }).count(), 1, '**bold** is rendered as <strong>');
    assert.match(await page.locator('#task-log').innerText(), /<img src=x onerror="window.__xss = 2">/);
    assert.match(await page.textContent('#task-data'), /<script>/);
    await go(page, '/tasks');
    await page.waitForSelector('#tasks-table tbody tr[data-task-id]');
    assert.equal(await page.evaluate(() => window.__xss), undefined);
  });

  test('switches to Ukrainian and remembers it; a dropped language file adds a language', async () => {
    try {
      await go(page, '/');
      await page.selectOption('#lang-select', 'uk');
      await waitFor('Ukrainian', async () => (await page.textContent('#page-title')) === 'Панель');
      assert.equal(await page.textContent('[data-nav=workers]'), 'Обробники');
      assert.equal(await page.getAttribute('html', 'lang'), 'uk');
      await page.reload();
      await page.waitForSelector('#recent-tasks');
      assert.equal(await page.textContent('#page-title'), 'Панель');
      await screenshot(page, '12-dashboard-uk');

      fs.mkdirSync(path.join(home, 'lang'), { recursive: true });
      fs.writeFileSync(path.join(home, 'lang', 'uk.json'), JSON.stringify({ 'nav.tasks': 'Мої завдання' }));
      fs.writeFileSync(path.join(home, 'lang', 'de.json'), JSON.stringify({ 'lang.name': 'Deutsch', 'nav.dashboard': 'Übersicht', 'title.dashboard': 'Übersicht' }));
      await page.reload();
      await page.waitForSelector('#recent-tasks');
      assert.equal(await page.textContent('[data-nav=tasks]'), 'Мої завдання', 'an override wins');
      assert.equal(await page.textContent('[data-nav=workers]'), 'Обробники', 'other keys stay bundled');
      await page.selectOption('#lang-select', 'de');
      await waitFor('German', async () => (await page.textContent('#page-title')) === 'Übersicht');
      assert.equal(await page.textContent('[data-nav=workers]'), 'Workers', 'missing keys fall back to English');
      await page.selectOption('#lang-select', 'en');
      await waitFor('English', async () => (await page.textContent('#page-title')) === 'Dashboard');
    } finally {
      await page.evaluate(() => localStorage.setItem('stask.lang', 'en'));
    }
  });

  test("follows the browser's language when none was chosen", async () => {
    const other = await browser({ locale: 'ru-RU' });
    try {
      const p = await other.page();
      await p.goto(`${base}/login`);
      await p.waitForSelector('form.login-form');
      assert.equal(await p.textContent('#page-title'), 'Вход в stask');
    } finally {
      await other.close();
    }
  });

  test('a viewer is offered no state-changing action', async () => {
    const running = createTask(home, 'demo', 'run', { steps: 400, step_ms: 50 });
    const failed = createTask(home, 'demo', 'run', { steps: 2, step_ms: 1, fail_at: 1 }, ['--max-attempts', '1']);
    await waitTaskStatus(failed, ['failed']);
    await logout(page);
    await login(page, base, 'vera');
    assert.equal(await page.textContent('#user-role'), 'Viewer');
    const none = async (sel, where) => assert.equal(await page.locator(sel).count(), 0, `${sel} on ${where}`);
    await none('#process-tasks, #clean-tasks, [data-op], [data-nav=new]', 'dashboard');
    await screenshot(page, '13-dashboard-viewer');
    await go(page, '/workers');
    await page.waitForSelector('[data-worker=demo]');
    await none('#discover-workers, #rescan-workers, #clean-orphaned, .switch', 'workers');
    await go(page, '/workers/demo');
    await page.waitForSelector('#settings-form');
    await none('#save-settings, #save-schedule, #schedule-pause, #run-action', 'worker');
    assert.equal(await page.locator('#settings-form input:not([disabled])').count(), 0, 'settings are read-only');
    await go(page, '/tasks');
    await page.waitForSelector('#tasks-table tbody tr[data-task-id]');
    await none('[data-bulk], input[data-select], #select-all, [data-op]', 'tasks');
    for (const id of [running, failed]) {
      await go(page, `/tasks/${id}`);
      await page.waitForSelector('#task-status .badge');
      await none('#task-execute, #task-cancel, #task-retry', `task ${id}`);
      assert.equal(await page.locator('#download-log').count(), 1);
    }
    await go(page, '/tasks/new');
    await none('#create-task', 'new task');
    await page.keyboard.press('r');
    await logout(page);
    stask(home, ['tasks', 'cancel', String(running)]);
  });

  test('an operator may run tasks but not administer', async () => {
    await login(page, base, 'oscar');
    assert.equal(await page.locator('#process-tasks').count(), 1);
    assert.equal(await page.locator('#clean-tasks').count(), 0);
    await go(page, '/workers');
    await page.waitForSelector('[data-worker=demo]');
    assert.equal(await page.locator('#discover-workers, .switch').count(), 0);
    // Operators change only the tasks they started.
    const foreign = createTask(home, 'demo', 'run', { steps: 2, step_ms: 1, fail_at: 1 }, ['--max-attempts', '1', '--user', 'alice']);
    await waitTaskStatus(foreign, ['failed']);
    await go(page, `/tasks/${foreign}`);
    await page.waitForSelector('#task-status .badge');
    assert.equal(await page.locator('#task-retry').count(), 0);
    await logout(page);
  });

  test('narrow screens get a menu button and stacked tables', async () => {
    const narrow = await browser({ viewport: { width: 390, height: 844 } });
    try {
      const p = await narrow.page();
      await login(p, base, 'alice');
      await p.waitForSelector('.menu-toggle');
      assert.equal(await p.locator('.main-nav').isVisible(), false);
      await p.click('.menu-toggle');
      await p.locator('.main-nav').waitFor({ state: 'visible' });
      await screenshot(p, '14-narrow-menu');
      await p.click('[data-nav=tasks]');
      await p.waitForSelector('#tasks-table tbody tr[data-task-id]');
      await screenshot(p, '15-narrow-tasks');
      const width = await p.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(width <= 392, `no horizontal scrolling (${width}px)`);
    } finally {
      await narrow.close();
    }
  });

  test('no script errors in the browser', () => {
    assert.deepEqual(br.errors, []);
  });
});
