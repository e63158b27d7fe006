// The New task form's "Runs after" field: a task created after another from the form
// waits for it (its page says so, naming it; "Process tasks" counts it as waiting, not
// starting), runs once it completed, and runs after
// any outcome with "even if they fail"; ids that are not ids, or a task that does not
// exist, are refused on the field.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { makeHome, serve, browser, login, screenshot, createTask, stask, staskJson, task, waitFor, WAIT } from '../lib/harness.mjs';

let home;
let server;
let br;
let page;
let base;
// Long high-priority tasks holding the harness's two slots while a test needs the
// task it depends on to stay pending.
let holders = [];

async function openForm(action) {
  await page.goto(`${base}/tasks/new?worker=demo&action=${action}`);
  await page.waitForSelector('#new-after');
  await waitFor('the action to be chosen', async () => (await page.inputValue('#new-action')) === action);
}

/** Submits the form and returns the id of the task page it opens. */
async function createFromForm() {
  const from = page.url();
  await page.click('#create-task');
  await page.waitForURL((u) => /\/tasks\/\d+$/.test(u.pathname) && u.href !== from, { timeout: WAIT });
  return Number(page.url().split('/').pop());
}

const taskCount = () => staskJson(home, ['tasks', 'list', '--limit', '1000']).length;

const holdSlots = () => {
  holders = [0, 1].map(() => createTask(home, 'demo', 'run', { steps: 900, step_ms: 100 }, ['--priority', 'high']));
};

const freeSlots = () => {
  for (const id of holders) stask(home, ['tasks', 'cancel', String(id)]);
  holders = [];
};

describe('"Runs after" in the New task form', () => {
  before(async () => {
    home = makeHome();
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

  test('a task created after another waits for it, says so, and runs once it completed', { timeout: 120_000 }, async () => {
    holdSlots();
    const a = createTask(home, 'demo', 'echo', { step: 'A' });
    assert.equal(task(home, a).status, 'pending');

    await openForm('echo');
    await page.fill('#new-data', '{"step": "B"}');
    await page.fill('#new-after', `${a}`);
    await screenshot(page, 'deps-01-form');
    const b = await createFromForm();
    assert.notEqual(b, a);
    const stored = task(home, b);
    assert.equal(stored.status, 'pending');
    assert.deepEqual(stored.dependencies, { after: [a], any: false, waiting_on: [a] });

    // Its page says it waits for #A.
    const why = page.locator('#task-waiting');
    await why.waitFor({ state: 'visible', timeout: WAIT });
    assert.equal(await why.getAttribute('data-code'), 'dependencies');
    assert.match(await why.innerText(), new RegExp(`waits for #${a} to end`));
    await screenshot(page, 'deps-02-waiting');

    // "Process tasks" does not count B as starting: it waits for A, and A for a slot.
    await page.goto(`${base}/`);
    await page.click('#process-tasks');
    const toast = page.locator('.toast', { hasText: 'runs after' }).first();
    await toast.waitFor({ timeout: WAIT });
    const said = await toast.innerText();
    assert.match(said, /1 task waits for a free slot\./);
    assert.match(said, /1 task waits for the tasks it runs after\./);
    assert.doesNotMatch(said, /start now/);
    await page.goto(`${base}/tasks/${b}`);
    await why.waitFor({ state: 'visible', timeout: WAIT });

    // A runs once the slots are free, then B.
    freeSlots();
    await waitFor('A and B to complete', () => task(home, a).status === 'completed' && task(home, b).status === 'completed', 60_000, 200);
    const [ta, tb] = [task(home, a), task(home, b)];
    assert.ok(tb.started_at >= ta.finished_at, `B started (${tb.started_at}) after A finished (${ta.finished_at})`);
    // The open page follows: it no longer says B waits.
    await why.waitFor({ state: 'hidden', timeout: WAIT });
  });

  test('"even if they fail" runs it after a task that failed', { timeout: 120_000 }, async () => {
    holdSlots();
    const a = createTask(home, 'demo', 'run', { steps: 1, step_ms: 10, fail_at: 1 }, ['--max-attempts', '1']);
    await openForm('echo');
    await page.fill('#new-after', `#${a}`);
    await page.check('#new-after-any');
    const b = await createFromForm();
    assert.deepEqual(task(home, b).dependencies, { after: [a], any: true, waiting_on: [a] });
    freeSlots();
    await waitFor('B to complete after A failed', () => task(home, a).status === 'failed' && task(home, b).status === 'completed', 60_000, 200);
  });

  test('ids that are not ids, or a task that does not exist, are refused on the field', async () => {
    const before = taskCount();
    await openForm('echo');
    const err = page.locator('.field:has(#new-after) .field-error');
    await page.fill('#new-after', '12, abc');
    await page.click('#create-task');
    await waitFor('the local error', async () => /task ids/.test((await err.textContent()) || ''));
    assert.equal(await page.getAttribute('#new-after', 'aria-invalid'), 'true');

    // The API's answer for a task that does not exist, next to the field.
    await page.fill('#new-after', '999999');
    await page.click('#create-task');
    await waitFor('the API error', async () => /task 999999 does not exist/.test((await err.textContent()) || ''));
    await screenshot(page, 'deps-03-missing');
    assert.match(page.url(), /\/tasks\/new/);
    assert.equal(taskCount(), before, 'nothing was created');
  });
});
