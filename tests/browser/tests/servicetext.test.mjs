// Text the service generates, worded in the page in the user's language: schedule
// descriptions (the API's `description_code`, with the language's plural rules) on the
// workers list and a worker's page, and the service's own log lines (servicetext.js),
// while what a plugin writes stays as it wrote it.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { makeHome, serve, browser, login, stask, apiGet, screenshot, WAIT } from '../lib/harness.mjs';

let home;
let server;
let br;
let page;
let base;
let taskId;

async function setLanguage(code) {
  await page.evaluate((c) => localStorage.setItem('stask.lang', c), code);
}

async function scheduleOnCard(worker) {
  await page.goto(`${base}/workers`);
  const desc = page.locator(`article[data-worker="${worker}"] .schedule-desc`);
  await desc.waitFor({ timeout: WAIT });
  return desc.textContent();
}

/** serviceText() of each of `texts`, run in the page (its current language). */
async function inPage(texts) {
  return page.evaluate(async (list) => {
    const m = await import('/js/servicetext.js');
    return list.map((x) => m.serviceText(x));
  }, texts);
}

describe('service-generated text in the user language', () => {
  before(async () => {
    home = makeHome();
    stask(home, ['workers', 'schedule', 'demo', 'daily', '--at', '03:00']);
    stask(home, ['workers', 'schedule', 'product', 'regular', '--every', '22m', '--from', '08:00', '--to', '18:00']);
    taskId = Number(stask(home, ['tasks', 'create', 'demo', 'run', '--data', JSON.stringify({ steps: 2, step_ms: 0 })]).trim().split('\n')[0]);
    stask(home, ['tasks', 'execute', String(taskId)], { quiet: true });
    server = await serve(home);
    base = server.url;
    br = await browser({ locale: 'uk-UA' });
    page = await br.page();
    await login(page, base, 'alice');
  });

  after(async () => {
    if (br) await br.close();
    if (server) await server.stop();
    if (br && br.errors.length) console.log('browser errors:\n' + br.errors.join('\n'));
    if (home) fs.rmSync(home, { recursive: true, force: true });
  });

  test('the API sends schedule descriptions as a code and parameters', async () => {
    const workers = await apiGet(page, base, '/workers');
    const list = Array.isArray(workers) ? workers : workers.workers || workers.items;
    const demo = list.find((w) => w.identifier === 'demo');
    assert.equal(demo.schedule.description, 'daily at 03:00');
    assert.deepEqual(demo.schedule.description_code, { code: 'daily', params: { at: '03:00' } });
    const sched = await apiGet(page, base, '/workers/product/schedule');
    assert.deepEqual((sched.schedule || sched).description_code, { code: 'regular', params: { every_minutes: 22, from: '08:00', to: '18:00' } });
  });

  test('schedule descriptions in Ukrainian and Russian, with their plural forms', { timeout: 60_000 }, async () => {
    await setLanguage('uk');
    assert.equal(await scheduleOnCard('demo'), 'щодня о 03:00');
    // 22: the "few" form in Ukrainian and Russian.
    assert.equal(await scheduleOnCard('product'), 'кожні 22 хвилини з 08:00 до 18:00');
    await page.goto(`${base}/workers/demo`);
    await page.waitForSelector('#schedule-summary');
    assert.match(await page.textContent('#schedule-summary'), /щодня о 03:00/);
    assert.match(await page.textContent('#worker-schedule-line'), /щодня о 03:00/);
    await screenshot(page, 'servicetext-01-worker-uk');

    await setLanguage('ru');
    assert.equal(await scheduleOnCard('demo'), 'ежедневно в 03:00');
    assert.equal(await scheduleOnCard('product'), 'каждые 22 минуты с 08:00 до 18:00');
    // The plural rules pick the form from the number.
    const forms = await page.evaluate(async () => {
      const m = await import('/js/servicetext.js');
      return [1, 2, 5, 21, 90].map((n) => m.scheduleText({ code: 'regular', params: { every_minutes: n, from: '00:00', to: '23:59' } }));
    });
    assert.deepEqual(forms, [
      'ежеминутно с 00:00 до 23:59',
      'каждые 2 минуты с 00:00 до 23:59',
      'каждые 5 минут с 00:00 до 23:59',
      'каждую 21 минуту с 00:00 до 23:59',
      'каждые 90 минут с 00:00 до 23:59',
    ]);

    // English words it as the service does.
    await setLanguage('en');
    assert.equal(await scheduleOnCard('demo'), 'daily at 03:00');
  });

  test("the service's log lines in the user's language, plugin lines unchanged", { timeout: 60_000 }, async () => {
    await setLanguage('uk');
    await page.goto(`${base}/workers`);
    await page.waitForSelector('.schedule-desc');
    const res = await apiGet(page, base, `/tasks/${taskId}/logs?limit=100`);
    const messages = (res.lines || res.log || []).map((l) => l.message);
    assert.ok(messages.length >= 5, JSON.stringify(res).slice(0, 300));
    const shown = await inPage(messages);
    assert.equal(shown[0], 'Завдання створено (пріоритет: звичайний)');
    assert.equal(shown[1], 'Розпочато спробу 1 з 3');
    assert.match(shown[shown.length - 1], /^Завдання успішно виконано \(\d+ мс\)$|^Завдання успішно виконано \([\d,]+ с\)$/);
    // The demo plugin's own lines stay as it wrote them.
    for (let i = 2; i < messages.length - 1; i++) assert.equal(shown[i], messages[i]);

    const samples = await inPage([
      'Task created (priority high, by alice, unique key \'nightly-1\')',
      'Task created by schedule (weekly on mon,fri at 08:30)',
      'Queued for retry (was failed; 3 attempts so far)',
      'Started attempt 4 (retried by hand after its 3 automatic attempts)',
      'Attempt 1 of 3 failed: boom; retrying in 2.0s',
      'Task failed after 1m 5s: timed out after 1m 0s: the run exceeded the worker\'s time limit and was killed (change it with the `timeout` setting)',
      'Recovered: the process 4242 on web-1 that ran it is gone; requeued (attempt 1 of 3 was lost)',
      'Task cancelled as requested (the attempt was interrupted)',
      'Cancelled before it started',
      'worker inactive',
      'Hello! Running **2** steps of 0 ms',
    ]);
    assert.deepEqual(samples, [
      "Завдання створено (пріоритет: високий, користувач alice, унікальний ключ 'nightly-1')",
      'Завдання створено за розкладом (щотижня: пн і пт о 08:30)',
      'Знову в черзі (було: помилка; досі 3 спроби)',
      'Розпочато спробу 4 (повторено вручну після 3 автоматичних спроб)',
      'Спроба 1 з 3 не вдалася: boom; повтор через 2.0 с',
      'Завдання завершилося помилкою через 1 хв 5 с: час вичерпано (1 хв 0 с): виконання перевищило ліміт часу обробника, його примусово завершено (змініть налаштування `timeout`)',
      'Відновлено: процес 4242 на web-1, що виконував його, більше не працює; знову в черзі (спробу 1 з 3 втрачено)',
      'Завдання скасовано на запит (спробу перервано)',
      'Скасовано до початку виконання',
      'обробник неактивний',
      'Hello! Running **2** steps of 0 ms',
    ]);
  });
});
