// Workflows in the web interface: the Workflows page lists them with overall progress,
// fifty a page; a workflow's page draws its graph (layered left to right by dependency
// depth, nodes coloured by status and linking to their tasks), updates live, and offers
// Cancel and Retry only to who may use them; its texts follow the language.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { makeHome, serve, browser, login, logout, screenshot, stask, staskJson, waitFor, WAIT } from '../lib/harness.mjs';
import { axeViolations } from '../lib/axe.mjs';

let home;
let server;
let br;
let page;
let base;

/** Creates a workflow from `doc` with the CLI, started by `user`; returns its id and tasks. */
function createWorkflow(doc, user) {
  const file = path.join(home, `wf-${Date.now()}-${Math.random()}.json`);
  fs.writeFileSync(file, JSON.stringify(doc));
  return staskJson(home, ['workflows', 'create', file, '--user', user]);
}

const workflow = (id) => staskJson(home, ['workflows', 'show', String(id)]);

const chain = (name) => ({
  name,
  tasks: [
    { step: 'slow', worker: 'demo', action: 'run', data: { steps: 900, step_ms: 100 } },
    { step: 'next', worker: 'demo', action: 'echo', after: ['slow'] },
    { step: 'end', worker: 'demo', action: 'echo', after: ['next'] },
  ],
});

async function nodeClass(step) {
  return page.getAttribute(`#workflow-graph [data-step="${step}"]`, 'class');
}

describe('workflows in the web interface', () => {
  let done;
  let mine;
  let theirs;

  before(async () => {
    home = makeHome();
    server = await serve(home);
    base = server.url;
    // A diamond that runs to its end first, then two long chains holding both slots.
    done = createWorkflow(
      {
        name: 'finished diamond',
        tasks: [
          { step: 'fetch', worker: 'demo', action: 'echo' },
          { step: 'a', worker: 'demo', action: 'echo', after: ['fetch'] },
          { step: 'b', worker: 'demo', action: 'echo', after: ['fetch'] },
          { step: 'merge', worker: 'demo', action: 'echo', after: ['a', 'b'] },
        ],
      },
      'alice',
    );
    await waitFor('the diamond to complete', () => workflow(done.id).status === 'completed');
    mine = createWorkflow(chain("oscar's chain"), 'oscar');
    theirs = createWorkflow(chain("alice's chain"), 'alice');
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

  test('the Workflows page lists them with overall progress', async () => {
    await page.click('a[data-nav="workflows"]');
    await page.waitForSelector(`#workflow-rows tr[data-workflow-id="${done.id}"]`, { timeout: WAIT });
    const rows = await page.$$eval('#workflow-rows tr', (trs) => trs.map((tr) => tr.dataset.workflowId));
    assert.deepEqual(rows.map(Number), [theirs.id, mine.id, done.id], 'newest first');
    const row = page.locator(`#workflow-rows tr[data-workflow-id="${done.id}"]`);
    assert.equal(await row.locator('[role=progressbar]').getAttribute('aria-valuenow'), '100');
    assert.match(await row.textContent(), /finished diamond/);
    assert.match(await row.textContent(), /4 tasks/);
    assert.equal(await row.locator('[data-status]').getAttribute('data-status'), 'completed');
    await screenshot(page, 'workflows-01-list');
    assert.deepEqual(await axeViolations(page), [], 'the list passes axe');
  });

  test("a workflow's graph is layered by depth, coloured by status and links to its tasks", async () => {
    await page.goto(`${base}/workflows/${done.id}`);
    await page.waitForSelector('#workflow-graph [data-step="merge"]', { timeout: WAIT });
    const x = async (step) => Number(await page.getAttribute(`#workflow-graph [data-step="${step}"] rect`, 'x'));
    const [fetchX, aX, bX, mergeX] = [await x('fetch'), await x('a'), await x('b'), await x('merge')];
    assert.ok(fetchX < aX && aX === bX && bX < mergeX, `columns ${fetchX} ${aX} ${bX} ${mergeX}`);
    assert.equal(await page.locator('#workflow-graph .wf-edge').count(), 4);
    for (const s of ['fetch', 'a', 'b', 'merge']) assert.match(await nodeClass(s), /wf-completed/);
    assert.equal(await page.getAttribute('#workflow-progress', 'aria-valuenow'), '100');
    // Alice's finished workflow: nothing for Oscar to do.
    assert.equal(await page.locator('#workflow-cancel, #workflow-retry').count(), 0);
    await screenshot(page, 'workflows-02-graph');
    assert.deepEqual(await axeViolations(page), [], 'the workflow page passes axe');
    await page.click('#workflow-graph [data-step="merge"]');
    await page.waitForURL(new RegExp(`/tasks/${done.tasks.merge}$`), { timeout: WAIT });
    // The task's page names its workflow and step, linking back.
    await page.waitForSelector('#task-workflow a', { timeout: WAIT });
    assert.match(await page.textContent('#task-workflow'), new RegExp(`#${done.id}, step merge`));
    await page.click('#task-workflow a');
    await page.waitForURL(new RegExp(`/workflows/${done.id}$`), { timeout: WAIT });
  });

  test('cancel and retry act on the whole group and the page follows live', async () => {
    await page.goto(`${base}/workflows/${mine.id}`);
    await waitFor('the slow step to run', async () => /wf-running/.test(await nodeClass('slow')));
    assert.match(await nodeClass('next'), /wf-pending/);
    // Someone else's running workflow offers Oscar nothing.
    await page.goto(`${base}/workflows/${theirs.id}`);
    await page.waitForSelector('#workflow-graph [data-step="end"]', { timeout: WAIT });
    assert.equal(await page.locator('#workflow-cancel').count(), 0);

    await page.goto(`${base}/workflows/${mine.id}`);
    await page.click('#workflow-cancel');
    await page.waitForSelector('#confirm-dialog[open]');
    await page.click('#confirm-dialog [data-confirm]');
    await page.locator('.toast', { hasText: `Workflow #${mine.id}` }).first().waitFor({ timeout: WAIT });
    await waitFor('every node to be cancelled', async () => {
      for (const s of ['slow', 'next', 'end']) if (!/wf-cancelled/.test(await nodeClass(s))) return false;
      return true;
    });
    assert.equal(workflow(mine.id).status, 'cancelled');
    await page.waitForSelector('#workflow-retry', { timeout: WAIT });
    assert.equal(await page.locator('#workflow-cancel').count(), 0);
    await screenshot(page, 'workflows-03-cancelled');

    await page.click('#workflow-retry');
    await waitFor('the first step to run again', async () => /wf-running/.test(await nodeClass('slow')));
    assert.match(await nodeClass('end'), /wf-pending/);
    const shown = workflow(mine.id);
    assert.equal(shown.steps.find((s) => s.step === 'next').task.status, 'pending');
    assert.ok(await page.isVisible('#workflow-cancel'));
    // Stop it again, so the slots are free for whatever follows.
    stask(home, ['workflows', 'cancel', String(mine.id)]);
  });

  test('a viewer sees the graph but no buttons, in the chosen language', async () => {
    await logout(page);
    await login(page, base, 'vera');
    await page.goto(`${base}/workflows/${theirs.id}`);
    await page.waitForSelector('#workflow-graph [data-step="slow"]', { timeout: WAIT });
    assert.equal(await page.locator('#workflow-cancel, #workflow-retry').count(), 0);
    await page.selectOption('#lang-select', 'uk');
    await waitFor('the page in Ukrainian', async () => (await page.evaluate(() => document.documentElement.lang)) === 'uk');
    await waitFor('the title in Ukrainian', async () => /Робочий процес/.test(await page.textContent('#page-title')));
    assert.match(await page.textContent('a[data-nav="workflows"]'), /Робочі процеси/);
    await page.selectOption('#lang-select', 'en');
    await waitFor('the page in English', async () => (await page.evaluate(() => document.documentElement.lang)) === 'en');
    stask(home, ['workflows', 'cancel', String(theirs.id)]);
  });

  test('the list shows fifty workflows a page, the older ones on the pages after', { timeout: 120_000 }, async () => {
    const made = [];
    for (let i = 0; i < 50; i++) made.push(createWorkflow({ name: `batch ${i}`, tasks: [{ step: 'only', worker: 'demo', action: 'echo' }] }, 'alice').id);
    const ids = () => page.$$eval('#workflow-rows tr', (trs) => trs.map((tr) => Number(tr.dataset.workflowId)));
    await page.goto(`${base}/workflows`);
    await page.waitForSelector(`#workflow-rows tr[data-workflow-id="${made[49]}"]`, { timeout: WAIT });
    assert.deepEqual(await ids(), [...made].reverse(), 'the newest fifty, newest first');
    assert.match(await page.textContent('#workflows-summary'), /53/);
    assert.equal(await page.textContent('.pager-info'), 'Page 1 of 2');
    assert.ok(await page.isDisabled('.pager [data-page=prev]'));
    await page.click('.pager [data-page=next]');
    await page.waitForSelector(`#workflow-rows tr[data-workflow-id="${done.id}"]`, { timeout: WAIT });
    assert.deepEqual(await ids(), [theirs.id, mine.id, done.id], 'the three oldest on the second page');
    assert.match(page.url(), /[?&]page=2/);
    assert.equal(await page.textContent('.pager-info'), 'Page 2 of 2');
    assert.ok(await page.isDisabled('.pager [data-page=next]'));
    await page.click('.pager [data-page=prev]');
    await page.waitForSelector(`#workflow-rows tr[data-workflow-id="${made[0]}"]`, { timeout: WAIT });
    assert.equal((await ids()).length, 50);
  });
});
