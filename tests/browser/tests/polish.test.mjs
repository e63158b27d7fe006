// Web console polish: colour contrast in both themes, clickable task rows, relative
// times, plurals and attempt counts. A service of its own.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { makeHome, serve, browser, login, createTask, task, waitFor, WAIT } from '../lib/harness.mjs';

let home;
let server;
let br;
let page;
let base;

async function go(p, url) {
  await p.goto(`${base}${url}`);
  await p.waitForSelector('#page-title');
}

async function waitTaskStatus(id, statuses) {
  return waitFor(`task ${id} to be ${statuses}`, () => statuses.includes(task(home, id).status) && task(home, id), WAIT, 100);
}

/**
 * WCAG contrast ratios, in the page, of the elements the issue names: status badges
 * (pending, running), white text on the accent (primary buttons), and the progress text
 * on each status's progress bar fill.
 */
function contrasts() {
  return page.evaluate(async () => {
    const ui = await import('/js/ui.js');
    const rgb = (s) => {
      const m = s.match(/rgba?\(([\d.]+),\s*([\d.]+),\s*([\d.]+)(?:,\s*([\d.]+))?/);
      if (!m) throw new Error(`colour ${s}`);
      if (m[4] !== undefined && Number(m[4]) < 1) throw new Error(`translucent colour ${s}`);
      return [m[1], m[2], m[3]].map(Number);
    };
    const lum = (c) => {
      const [r, g, b] = rgb(c).map((v) => {
        v /= 255;
        return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
      });
      return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const ratio = (a, b) => {
      const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
      return Math.round(((x + 0.05) / (y + 0.05)) * 100) / 100;
    };
    const box = document.createElement('div');
    document.querySelector('main').append(box);
    const out = {};
    for (const st of ['pending', 'running', 'completed', 'failed', 'cancelled']) {
      const badge = ui.statusBadge(st);
      const bar = ui.progressBar(50, { status: st });
      box.append(badge, bar);
      const b = getComputedStyle(badge);
      out[`badge ${st}`] = ratio(b.color, b.backgroundColor);
      const text = getComputedStyle(bar.querySelector('.progress-text')).color;
      out[`progress text on ${st} fill`] = ratio(text, getComputedStyle(bar.querySelector('.progress-fill')).backgroundColor);
      out[`progress text on ${st} track`] = ratio(text, getComputedStyle(bar).backgroundColor);
    }
    const btn = ui.button('x', null, { cls: 'btn-primary' });
    box.append(btn);
    const bs = getComputedStyle(btn);
    out['primary button'] = ratio(bs.color, bs.backgroundColor);
    const cur = document.querySelector('.nav-link[aria-current="page"]');
    if (cur) out['current nav link'] = ratio(getComputedStyle(cur).color, getComputedStyle(cur).backgroundColor);
    box.remove();
    return out;
  });
}

describe('web console polish', () => {
  before(async () => {
    home = makeHome();
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

  test('text contrast is at least 4.5:1 in the light and the dark theme', async () => {
    for (const scheme of ['light', 'dark']) {
      await page.emulateMedia({ colorScheme: scheme });
      await go(page, '/');
      const got = await contrasts();
      const low = Object.entries(got).filter(([, r]) => r < 4.5);
      assert.deepEqual(low, [], `${scheme} theme: ${JSON.stringify(got)}`);
      for (const key of ['badge pending', 'badge running', 'primary button', 'progress text on running fill', 'progress text on completed fill']) {
        assert.ok(key in got, `${scheme}: ${key} measured`);
      }
    }
    await page.emulateMedia({ colorScheme: 'light' });
  });

  test('a click anywhere on a task row opens the task, except on its controls', async () => {
    const done = createTask(home, 'demo', 'noop', {});
    const failed = createTask(home, 'demo', 'run', { steps: 2, step_ms: 1, fail_at: 1 }, ['--max-attempts', '1']);
    await waitTaskStatus(done, ['completed']);
    await waitTaskStatus(failed, ['failed']);
    for (const [url, table] of [['/', '#recent-tasks'], ['/tasks', '#tasks-table']]) {
      await go(page, url);
      const row = page.locator(`${table} tr[data-task-id="${done}"]`);
      await row.waitFor();
      assert.equal(await row.evaluate((el) => getComputedStyle(el).cursor), 'pointer', `${url}: pointer cursor`);
      // Keyboard users keep the link.
      assert.equal(await row.locator(`a[href="/tasks/${done}"]`).count() >= 1, true);
      await row.locator('[data-label="Action"]').click();
      await page.waitForURL(new RegExp(`/tasks/${done}$`));
      await page.waitForSelector('#page-title');
      await go(page, url);
      // A button inside a row does its own job only.
      const fr = page.locator(`${table} tr[data-task-id="${failed}"]`);
      await fr.waitFor();
      if (table === '#tasks-table') {
        const cb = fr.locator(`input[data-select="${failed}"]`);
        await cb.click();
        assert.equal(await cb.isChecked(), true);
        assert.equal(new URL(page.url()).pathname, '/tasks');
      }
      await fr.locator('[data-op=retry]').click();
      await page.locator('.toast', { hasText: `#${failed} queued again` }).first().waitFor({ timeout: WAIT });
      assert.equal(new URL(page.url()).pathname, url, `${url}: retry button does not open the task`);
      await waitTaskStatus(failed, ['failed']);
      // A link inside a row goes where it points.
      await page.locator(`${table} tr[data-task-id="${done}"] .worker-cell a`).click();
      await page.waitForURL(/\/workers\/demo$/);
    }
  });

  test('the header keeps every section on one line at 1280 px, in every language', async () => {
    const size = page.viewportSize();
    await page.setViewportSize({ width: 1280, height: 800 });
    try {
      for (const code of ['en', 'uk', 'ru']) {
        await page.evaluate((c) => localStorage.setItem('stask.lang', c), code);
        await go(page, '/');
        await waitFor(`the page in ${code}`, () => page.evaluate((c) => document.documentElement.lang === c, code), WAIT, 50);
        const tops = await page.$$eval('.main-nav .nav-link', (links) => links.map((a) => Math.round(a.getBoundingClientRect().top)));
        assert.ok(tops.length >= 7, `${code}: the admin sees every section (${tops.length})`);
        assert.equal(new Set(tops).size, 1, `${code}: the sections wrap onto ${new Set(tops).size} lines (${tops})`);
      }
    } finally {
      await page.evaluate(() => localStorage.removeItem('stask.lang'));
      if (size) await page.setViewportSize(size);
    }
  });

  test('task lists show relative times, in every language, with the date and time on hover', async () => {
    const id = createTask(home, 'demo', 'noop', {});
    await waitTaskStatus(id, ['completed']);
    const expect = {
      en: { now: 'just now', three: '3 minutes ago', day: 'yesterday' },
      uk: { now: 'щойно', three: '3 хвилини тому', day: 'учора' },
      ru: { now: 'только что', three: '3 минуты назад', day: 'вчера' },
    };
    try {
      for (const [code, want] of Object.entries(expect)) {
        await page.evaluate((c) => localStorage.setItem('stask.lang', c), code);
        for (const url of ['/', '/tasks']) {
          await go(page, url);
          const cell = page.locator(`tr[data-task-id="${id}"] td.col-time time`);
          await cell.waitFor();
          assert.equal((await cell.textContent()).trim(), want.now, `${code} ${url}`);
          const { title, abs } = await cell.evaluate((el) => ({
            title: el.getAttribute('title'),
            abs: new Intl.DateTimeFormat(document.documentElement.lang, { dateStyle: 'medium', timeStyle: 'medium' }).format(new Date(Number(el.dataset.reltime))),
          }));
          assert.equal(title, abs, `${code} ${url}: absolute time on hover`);
        }
        const made = await page.evaluate(async () => {
          const ui = await import('/js/ui.js');
          const now = Date.now();
          return [ui.timeAgo(now - 3 * 60_000 - 5000).textContent, ui.timeAgo(now - 26 * 3600_000).textContent];
        });
        assert.deepEqual(made, [want.three, want.day], code);
      }
    } finally {
      await page.evaluate(() => localStorage.removeItem('stask.lang'));
    }
  });

  test('counts use the right plural in every language; attempts never read "4 of 3"', async () => {
    const expect = {
      en: { found: '1 task found', workers: ['Updated 1 worker: a.', 'Updated 2 workers: a.', 'Updated 5 workers: a.', 'Updated 21 workers: a.'], attempts: '2 (automatic limit: 1)' },
      uk: { found: 'Знайдено 1 завдання', workers: ['Оновлено 1 обробник: a.', 'Оновлено 2 обробники: a.', 'Оновлено 5 обробників: a.', 'Оновлено 21 обробник: a.'], attempts: '2 (автоматичний ліміт: 1)' },
      ru: { found: 'Найдена 1 задача', workers: ['Обновлён 1 обработчик: a.', 'Обновлено 2 обработчика: a.', 'Обновлено 5 обработчиков: a.', 'Обновлён 21 обработчик: a.'], attempts: '2 (автоматический лимит: 1)' },
    };
    // One failed task (max 1 attempt) retried by hand: 2 attempts.
    const failed = createTask(home, 'demo', 'run', { steps: 2, step_ms: 1, fail_at: 1 }, ['--max-attempts', '1', '--priority', 'high']);
    await waitTaskStatus(failed, ['failed']);
    await go(page, `/tasks/${failed}`);
    await page.click('#task-retry');
    await waitFor('the second attempt to fail', () => task(home, failed).attempts === 2 && task(home, failed).status === 'failed');
    try {
      for (const [code, want] of Object.entries(expect)) {
        await page.evaluate((c) => localStorage.setItem('stask.lang', c), code);
        await go(page, `/tasks?status=failed&priority=high`);
        await waitFor(`${code}: one task found`, async () => (await page.textContent('#tasks-summary')) === want.found);
        const made = await page.evaluate(async () => {
          const { rescanMessage } = await import('/js/pages/workers.js');
          return [1, 2, 5, 21].map((n) => rescanMessage({ updated: Array.from({ length: n }, () => 'a') }).replace(/(a, )+a/, 'a'));
        });
        assert.deepEqual(made, want.workers, code);
        await go(page, `/tasks/${failed}`);
        const dd = page.locator('dl.kv dt', { hasText: code === 'en' ? 'Attempts' : code === 'uk' ? 'Спроби' : 'Попытки' }).locator('xpath=following-sibling::dd[1]');
        await waitFor(`${code}: attempts`, async () => (await dd.textContent()) === want.attempts);
      }
    } finally {
      await page.evaluate(() => localStorage.removeItem('stask.lang'));
    }
  });

  test('no script errors in the browser', () => {
    assert.deepEqual(br.errors, []);
  });
});
