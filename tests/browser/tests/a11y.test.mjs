// Accessibility: axe-core finds no violation on any page, in the light and the dark
// theme; every page is photographed at desktop (1440×900) and phone (390×844) widths
// (target/browser-artifacts/a11y-*). A service of its own.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { makeHome, serve, browser, login, stask, createTask } from '../lib/harness.mjs';
import { axeViolations, screenshotsAtWidths, WIDTHS } from '../lib/axe.mjs';

let home;
let server;
let br;
let page;
let base;
let doneId;

/** Every page, with what shows it is drawn (its data, not only its frame). */
function pages() {
  return [
    { name: 'dashboard', url: '/', ready: '#throughput-chart svg, #queue-chart' },
    { name: 'tasks', url: '/tasks', ready: '#tasks-table tbody tr' },
    { name: 'task', url: `/tasks/${doneId}`, ready: '#task-status [data-status]' },
    { name: 'new-task', url: '/tasks/new', ready: 'form' },
    { name: 'workers', url: '/workers', ready: '.worker-card' },
    { name: 'worker', url: '/workers/demo', ready: '#schedule h2' },
    { name: 'statistics', url: '/stats', ready: '#activity-chart svg' },
    { name: 'running', url: '/running', ready: '.host-card' },
  ];
}

async function open(p) {
  await page.goto(`${base}${p.url}`);
  await page.waitForSelector('#page-title');
  await page.waitForSelector(p.ready, { state: 'attached' });
  // Pages that draw in steps (charts after the counts) settle within a few frames.
  await page.waitForTimeout(300);
}

describe('accessibility (axe-core) and screenshots of every page', () => {
  before(async () => {
    home = makeHome();
    doneId = Number(stask(home, ['tasks', 'create', 'demo', 'run', '--data', '{"steps": 3}']).trim().split('\n')[0]);
    stask(home, ['tasks', 'execute', String(doneId)], { quiet: true });
    const failed = Number(stask(home, ['tasks', 'create', 'demo', 'run', '--data', '{"steps": 3, "fail_at": 2}', '--max-attempts', '1']).trim().split('\n')[0]);
    try {
      stask(home, ['tasks', 'execute', String(failed)], { quiet: true });
    } catch {
      /* a failed task makes execute exit with an error */
    }
    stask(home, ['workers', 'schedule', 'demo', 'daily', '--at', '08:30'], { quiet: true });
    // A pending task that stays pending (its worker inactive): a queue on the dashboard.
    createTask(home, 'product', 'import', { file: 'imports/products.csv' });
    stask(home, ['workers', 'deactivate', 'product']);
    server = await serve(home);
    base = server.url;
    br = await browser({ viewport: WIDTHS.desktop });
    page = await br.page();
  });

  after(async () => {
    if (br) await br.close();
    if (server) await server.stop();
    if (br && br.errors.length) console.log('browser errors:\n' + br.errors.join('\n'));
    if (home) fs.rmSync(home, { recursive: true, force: true });
  });

  for (const theme of ['light', 'dark']) {
    test(`no axe violations on any page in the ${theme} theme`, { timeout: 180_000 }, async () => {
      await page.emulateMedia({ colorScheme: theme });
      await page.context().clearCookies();
      await page.goto(`${base}/login`);
      await page.waitForSelector('form.login-form');
      const found = {};
      const login_ = await axeViolations(page);
      if (login_.length) found.login = login_;
      await screenshotsAtWidths(page, `a11y-${theme}-login`);
      await login(page, base, 'alice');
      for (const p of pages()) {
        await open(p);
        const v = await axeViolations(page);
        if (v.length) found[p.name] = v;
        await screenshotsAtWidths(page, `a11y-${theme}-${p.name}`);
        // The phone layout (menu collapsed, tables as cards) is checked too.
        await page.setViewportSize(WIDTHS.phone);
        await page.waitForTimeout(150);
        const phone = await axeViolations(page);
        if (phone.length) found[`${p.name} (phone)`] = phone;
        await page.setViewportSize(WIDTHS.desktop);
      }
      assert.deepEqual(found, {}, `axe violations:\n${JSON.stringify(found, null, 1)}`);
    });
  }

  test('a screenshot of every page at both widths', () => {
    const dir = new URL('../../../target/browser-artifacts/', import.meta.url);
    const names = fs.readdirSync(dir);
    for (const theme of ['light', 'dark']) {
      for (const p of ['login', ...pages().map((x) => x.name)]) {
        for (const w of Object.keys(WIDTHS)) assert.ok(names.includes(`a11y-${theme}-${p}-${w}.png`), `a11y-${theme}-${p}-${w}.png`);
      }
    }
  });

  test('no script errors in the browser', () => {
    assert.deepEqual(br.errors, []);
  });
});
