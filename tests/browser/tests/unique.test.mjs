// The New task form's unique key: a task created with a key, then the same key again
// opens the task that is there (with a notice) instead of creating one; an action's
// default key is shown; a bad period is refused on its field.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { makeHome, serve, browser, login, screenshot, createTask, staskJson, waitFor, WAIT } from '../lib/harness.mjs';

let home;
let server;
let br;
let page;
let base;

async function openForm(action) {
  await page.goto(`${base}/tasks/new?worker=demo&action=${action}`);
  await page.waitForSelector('#new-unique');
  await waitFor('the action to be chosen', async () => (await page.inputValue('#new-action')) === action);
  await page.click('#new-unique summary');
}

const taskCount = () => staskJson(home, ['tasks', 'list', '--limit', '1000']).length;

describe('unique keys in the New task form', () => {
  before(async () => {
    home = makeHome();
    // The harness's two slots, held by long tasks: the tasks the tests create stay
    // pending, so what counts as "there" does not change under them.
    for (let i = 0; i < 2; i++) createTask(home, 'demo', 'run', { steps: 900, step_ms: 100 }, ['--priority', 'high']);
    server = await serve(home);
    base = server.url;
    br = await browser();
    page = await br.page();
    await login(page, base, 'oscar');
  });

  after(async () => {
    if (br) await br.close();
    if (server) await server.stop();
    if (br && br.errors.length) console.log('browser errors:\n' + br.errors.join('\n'));
    if (home) fs.rmSync(home, { recursive: true, force: true });
  });

  test('the same key opens the task that is there instead of creating another', async () => {
    const before = taskCount();
    await openForm('echo');
    await page.fill('#new-unique-key', 'browser-key');
    await page.fill('#new-unique-for', '1h');
    await page.click('#create-task');
    await page.waitForURL(/\/tasks\/\d+$/, { timeout: WAIT });
    const first = Number(page.url().split('/').pop());
    assert.equal(taskCount(), before + 1);

    await openForm('echo');
    await page.fill('#new-unique-key', 'browser-key');
    await screenshot(page, 'unique-01-form');
    await page.click('#create-task');
    await page.locator('.toast', { hasText: 'already there' }).first().waitFor({ timeout: WAIT });
    await page.waitForURL(new RegExp(`/tasks/${first}$`), { timeout: WAIT });
    assert.equal(taskCount(), before + 1, 'nothing was created');
  });

  test("an action's default key is shown and can be turned off", async () => {
    await openForm('digest');
    assert.equal(await page.getAttribute('#new-unique-key', 'placeholder'), 'digest:{topic}');
    assert.match(await page.textContent('#new-unique-key-default'), /digest:\{topic\}/);
    assert.equal(await page.isVisible('#new-no-unique'), true);
    await page.fill('#new-data', '{"topic": "news"}');
    await page.click('#create-task');
    await page.waitForURL(/\/tasks\/\d+$/, { timeout: WAIT });
    const first = Number(page.url().split('/').pop());
    // Turned off, the same data makes a second task.
    await openForm('digest');
    await page.fill('#new-data', '{"topic": "news"}');
    await page.check('#new-no-unique');
    await page.click('#create-task');
    await page.waitForURL((u) => /\/tasks\/\d+$/.test(u.pathname) && !u.pathname.endsWith(`/${first}`), { timeout: WAIT });
    // An action without a default key offers nothing to turn off.
    await openForm('echo');
    assert.equal(await page.isVisible('#new-no-unique'), false);
  });

  test('a bad period or no status is refused on its field', async () => {
    const before = taskCount();
    await openForm('echo');
    await page.fill('#new-unique-key', 'k');
    await page.fill('#new-unique-for', '10 minutes');
    await page.click('#create-task');
    await waitFor('the period error', async () => /unknown unit/.test(await page.locator('.field:has(#new-unique-for) .field-error').textContent()));
    await page.fill('#new-unique-for', '');
    for (const s of ['pending', 'running']) await page.uncheck(`#new-unique-state-${s}`);
    await page.click('#create-task');
    await waitFor('the states error', async () => /at least one status/.test(await page.textContent('#new-unique-states-err')));
    assert.match(page.url(), /\/tasks\/new/);
    assert.equal(taskCount(), before);
  });
});
