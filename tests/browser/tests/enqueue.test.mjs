// Follow-up tasks in the web interface: the page of a task that enqueued others lists
// them as links, each child's page says "Enqueued by #N" with a link back, and the
// worker page shows what the worker may enqueue.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { makeHome, serve, browser, login, screenshot, createTask, task, waitFor, WAIT } from '../lib/harness.mjs';

let home;
let server;
let br;
let page;
let base;

describe('tasks a task enqueued', () => {
  before(async () => {
    home = makeHome();
    server = await serve(home);
    base = server.url;
    br = await browser();
    page = await br.page();
    await login(page, base, 'vera');
  });

  after(async () => {
    if (br) await br.close();
    if (server) await server.stop();
    if (br && br.errors.length) console.log('browser errors:\n' + br.errors.join('\n'));
    if (home) fs.rmSync(home, { recursive: true, force: true });
  });

  test('the parent lists its children as links, and each child links back', { timeout: 120_000 }, async () => {
    const parent = createTask(home, 'demo', 'fan_out', { count: 2 });
    const done = await waitFor('the parent to complete', () => {
      const t = task(home, parent);
      return t.status === 'completed' ? t : null;
    });
    const children = done.children;
    assert.equal(children.length, 2);

    await page.goto(`${base}/tasks/${parent}`);
    const list = page.locator('#task-children');
    await list.waitFor({ state: 'visible', timeout: WAIT });
    assert.equal((await list.textContent()).trim(), children.map((c) => `#${c}`).join(', '));
    assert.equal(await list.locator('a').count(), 2);
    assert.equal(await page.locator('#task-parent').count(), 0, 'the parent has no parent');
    // Its log names each child it enqueued.
    await waitFor('the log to name the children', async () => (await page.textContent('body')).includes(`Enqueued task #${children[1]} (demo/run)`));
    await screenshot(page, 'enqueue-01-parent');

    await list.locator('a').first().click();
    await page.waitForURL((u) => u.pathname === `/tasks/${children[0]}`, { timeout: WAIT });
    const back = page.locator('#task-parent');
    await back.waitFor({ state: 'visible', timeout: WAIT });
    assert.equal((await back.textContent()).trim(), `#${parent}`);
    const row = page.locator('dt', { hasText: 'Enqueued by' });
    assert.equal(await row.count(), 1, 'the row says "Enqueued by"');
    await screenshot(page, 'enqueue-02-child');
    await back.locator('a').click();
    await page.waitForURL((u) => u.pathname === `/tasks/${parent}`, { timeout: WAIT });
  });

  test('the worker page shows what the worker may enqueue', { timeout: 60_000 }, async () => {
    await page.goto(`${base}/workers/demo`);
    const cell = page.locator('[data-access=enqueues]');
    await cell.waitFor({ state: 'visible', timeout: WAIT });
    assert.equal((await cell.textContent()).trim(), 'demo/run');
  });
});
