// What the console tells operators about tasks: why a pending task waits (the API's
// `waiting` codes, worded in the page), what Execute and Process really did, and the
// actions each task allows as the API decides them (`allowed`). A service of its own
// (the harness gives it two slots), so "all slots busy" can be made to happen.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { makeHome, serve, browser, login, createTask, task, stask, waitFor, WAIT } from '../lib/harness.mjs';

let home;
let server;
let br;
let page;
let base;

async function waitToast(text, p = page) {
  const toast = p.locator('.toast', { hasText: text }).first();
  await toast.waitFor({ timeout: WAIT });
  return toast.innerText();
}

async function waitStatus(id, statuses) {
  return waitFor(`task ${id} to be ${statuses}`, () => {
    const t = task(home, id);
    return statuses.includes(t.status) && t;
  }, WAIT, 100);
}

async function go(url, p = page) {
  await p.goto(`${base}${url}`);
  await p.waitForSelector('#page-title');
}

describe('honest task operations', () => {
  /** Long tasks holding both slots. */
  let long = [];

  before(async () => {
    home = makeHome();
    // A failed attempt waits ten minutes for its automatic retry.
    fs.appendFileSync(path.join(home, 'stask.toml'), '\nretry_base_ms = 600000\n');
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

  test('a failed attempt waiting for its retry says when, and Execute says it started', { timeout: 60_000 }, async () => {
    // Two seconds per attempt, failing at the end: pending, waiting for its retry.
    const id = createTask(home, 'demo', 'run', { steps: 4, step_ms: 500, fail_at: 4 });
    await waitFor('the first attempt failed', () => {
      const t = task(home, id);
      return t.status === 'pending' && t.attempts === 1;
    });
    await go(`/tasks/${id}`);
    const why = page.locator('#task-waiting');
    await why.waitFor({ state: 'visible', timeout: WAIT });
    assert.equal(await why.getAttribute('data-code'), 'retry_at');
    assert.match(await why.innerText(), /automatic retry is due at/);
    await page.click('#task-execute');
    const toast = await waitToast(`Task #${id} started`);
    assert.doesNotMatch(toast, /being executed/);
    await waitStatus(id, ['pending']);
    stask(home, ['tasks', 'cancel', String(id)]);
  });

  test('with every slot busy, Execute and Process say the task still waits and why, and the page shows it', { timeout: 60_000 }, async () => {
    long = [0, 1].map(() => createTask(home, 'demo', 'run', { steps: 900, step_ms: 200 }));
    for (const id of long) await waitStatus(id, ['running']);
    const waiting = createTask(home, 'demo', 'noop', {});
    await go(`/tasks/${waiting}`);
    const why = page.locator('#task-waiting');
    await why.waitFor({ state: 'visible', timeout: WAIT });
    assert.equal(await why.getAttribute('data-code'), 'slots_busy');
    assert.match(await why.innerText(), /All slots are busy \(2 of 2 running\)/);

    await page.click('#task-execute');
    const toast = await waitToast(`Task #${waiting} is due now but still waits`);
    assert.match(toast, /slots are busy/);
    assert.equal(task(home, waiting).status, 'pending');

    // Process on the dashboard: nothing starts, one waits for a slot.
    await go('/');
    await page.click('#process-tasks');
    const processed = await waitToast('waits for a free slot');
    assert.match(processed, /^1 task waits for a free slot\./);
    assert.doesNotMatch(processed, /starting/);
  });

  test('in Ukrainian the reason a task waits is worded in Ukrainian', { timeout: 60_000 }, async () => {
    const waiting = createTask(home, 'demo', 'noop', {});
    // A browser of its own (pages of one browser share the session).
    const ukBrowser = await browser({ locale: 'uk-UA' });
    const uk = await ukBrowser.page();
    try {
      await login(uk, base, 'alice');
      await uk.goto(`${base}/tasks/${waiting}`);
      const why = uk.locator('#task-waiting');
      await why.waitFor({ state: 'visible', timeout: WAIT });
      assert.match(await why.innerText(), /Усі слоти зайняті \(виконується 2 з 2\)/);
    } finally {
      await ukBrowser.close();
    }
  });

  test('an inactive worker: its task says so, and the list offers only what the API allows', { timeout: 60_000 }, async () => {
    const product = createTask(home, 'product', 'import', { file: 'imports/products.csv' });
    const demo = createTask(home, 'demo', 'noop', {});
    stask(home, ['workers', 'deactivate', 'product']);
    try {
      await go(`/tasks/${product}`);
      const why = page.locator('#task-waiting');
      await why.waitFor({ state: 'visible', timeout: WAIT });
      assert.equal(await why.getAttribute('data-code'), 'worker_inactive');
      assert.match(await why.innerText(), /worker is inactive/);
      // No Execute for it (the API would refuse), Execute for the other pending task.
      assert.equal(await page.locator('#task-execute').count(), 0);

      await go('/tasks?status=pending');
      const row = (id) => page.locator(`#tasks-table tr[data-task-id="${id}"]`);
      await row(product).waitFor({ timeout: WAIT });
      await row(demo).waitFor({ timeout: WAIT });
      assert.equal(await row(product).locator('[data-op=execute]').count(), 0);
      assert.equal(await row(demo).locator('[data-op=execute]').count(), 1);
      assert.equal(await row(product).locator('[data-op=cancel]').count(), 1);
      // The worker's scope comes with the task, not from the workers list.
      assert.match(await row(product).innerText(), /· \S+/);
    } finally {
      stask(home, ['workers', 'activate', 'product']);
    }
  });

  test('an operator sees Cancel only on the tasks the API says they may cancel', { timeout: 60_000 }, async () => {
    const theirs = createTask(home, 'demo', 'noop', {}, ['--user', 'oscar']);
    const others = createTask(home, 'demo', 'noop', {}, ['--user', 'alice']);
    const opBrowser = await browser();
    const op = await opBrowser.page();
    try {
      await login(op, base, 'oscar');
      // The list answer as the API gives it, with one task's permissions taken away:
      // the page must follow the API rather than re-deciding from the role.
      await op.route((url) => url.pathname === '/api/v1/tasks', async (route) => {
        const res = await route.fetch();
        const body = await res.json();
        for (const t of body.tasks || []) if (t.id === theirs) t.allowed = { execute: false, cancel: false, retry: false, delete: false };
        await route.fulfill({ response: res, json: body });
      });
      await op.goto(`${base}/tasks?status=pending`);
      const row = (id) => op.locator(`#tasks-table tr[data-task-id="${id}"]`);
      await row(theirs).waitFor({ timeout: WAIT });
      await row(others).waitFor({ timeout: WAIT });
      assert.equal(await row(others).locator('[data-op=cancel]').count(), 0, 'not their task');
      assert.equal(await row(others).locator('[data-op=execute]').count(), 1);
      assert.equal(await row(theirs).locator('[data-op=cancel]').count(), 0, 'the API said no');
      assert.equal(await row(theirs).locator('[data-op=execute]').count(), 0, 'the API said no');
    } finally {
      await opBrowser.close();
      for (const id of long) stask(home, ['tasks', 'cancel', String(id)]);
    }
  });
});
