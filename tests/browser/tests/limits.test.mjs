// Limits per key in the web console: a task waiting for its key's limit says so on its
// page and in its row of the task list ("limit 'shop:42' 1/1 in use"), names its key,
// and shows no start time (its run_after is the claim's); the worker's settings form
// takes the `limits` setting as JSON and refuses what is not JSON on the field.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { makeHome, serve, browser, login, screenshot, createTask, stask, task, waitFor, WAIT } from '../lib/harness.mjs';

let home;
let server;
let br;
let page;
let base;
let running;
let waiting;

describe('limits per key in the web console', () => {
  before(async () => {
    home = makeHome();
    stask(home, ['workers', 'settings', 'demo', 'limits=[{"action": "run", "key": "shop:{shop}", "concurrency": 1}]']);
    server = await serve(home);
    base = server.url;
    // The harness has two slots: the second task of shop 42 waits for the key, not a slot.
    running = createTask(home, 'demo', 'run', { steps: 900, step_ms: 100, shop: 42 });
    await waitFor('the first task of shop 42 to run', () => task(home, running).status === 'running', WAIT, 100);
    waiting = createTask(home, 'demo', 'run', { steps: 1, step_ms: 10, shop: 42 });
    br = await browser();
    page = await br.page();
    await login(page, base, 'alice');
  });

  after(async () => {
    if (running) stask(home, ['tasks', 'cancel', String(running)], { quiet: true });
    if (br) await br.close();
    if (server) await server.stop();
    if (br && br.errors.length) console.log('browser errors:\n' + br.errors.join('\n'));
    if (home) fs.rmSync(home, { recursive: true, force: true });
  });

  test("a task's page says which limit it waits for and names its key", async () => {
    await page.goto(`${base}/tasks/${waiting}`);
    const why = page.locator('#task-waiting');
    await why.waitFor({ state: 'visible', timeout: WAIT });
    assert.equal(await why.getAttribute('data-code'), 'limit');
    assert.match(await why.innerText(), /Limit 'shop:42' 1\/1 in use/);
    assert.equal(await page.textContent('#task-limit'), 'shop:42');
    await screenshot(page, 'limits-01-task');
  });

  test('its row in the task list says so in a few words', async () => {
    await page.goto(`${base}/tasks?status=pending`);
    const note = page.locator(`#tasks-table tr[data-task-id="${waiting}"] .waiting-note`);
    await note.waitFor({ timeout: WAIT });
    assert.equal(await note.getAttribute('data-waiting'), 'limit');
    assert.equal(await note.textContent(), "limit 'shop:42' 1/1 in use");
    await screenshot(page, 'limits-02-list');
  });

  test("the worker's settings take the limits as JSON", async () => {
    await page.goto(`${base}/workers/demo`);
    const field = page.locator('input[data-key=limits]');
    await field.waitFor({ timeout: WAIT });
    assert.deepEqual(JSON.parse(await field.inputValue()), [{ action: 'run', key: 'shop:{shop}', concurrency: 1 }]);
    await field.fill('[{"action": "run"');
    await page.click('#save-settings');
    const err = page.locator('.field:has(input[data-key=limits]) .field-error');
    await waitFor('the JSON error', async () => /valid JSON/.test((await err.textContent()) || ''));
    // Two at a time per shop: the waiting task may start.
    await field.fill('[{"action": "run", "key": "shop:{shop}", "concurrency": 2}]');
    await page.click('#save-settings');
    await waitFor('the waiting task to run', () => task(home, waiting).status !== 'pending', WAIT, 100);
    const shown = JSON.parse(stask(home, ['workers', 'show', 'demo', '--json']));
    assert.deepEqual(shown.limits, [{ action: 'run', key: 'shop:{shop}', concurrency: 2 }]);
  });
});
