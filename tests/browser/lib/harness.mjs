// Test harness: a real `stask serve` on a temporary home with the example plugins,
// users made with the CLI, and headless Chromium (Debian's /usr/bin/chromium) driven by
// playwright-core. Screenshots go to target/browser-artifacts/.

import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const TARGET = process.env.CARGO_TARGET_DIR ? path.resolve(process.env.CARGO_TARGET_DIR) : path.join(ROOT, 'target');
export const BIN = path.join(TARGET, 'debug', 'stask');
export const ARTIFACTS = path.join(TARGET, 'browser-artifacts');
export const CHROMIUM = process.env.STASK_CHROMIUM || '/usr/bin/chromium';
export const PASSWORD = 'correct-horse-battery';

/** The longest a test waits for something to appear. */
export const WAIT = 30_000;

export function lib(name) {
  return path.join(TARGET, 'debug', `lib${name}.so`);
}

/** Runs the stask CLI on `home`; returns stdout (`quiet`: drops it, for long outputs). */
export function stask(home, args, { input, quiet = false } = {}) {
  return execFileSync(BIN, ['--home', home, ...args], { input, encoding: 'utf8', stdio: ['pipe', quiet ? 'ignore' : 'pipe', 'pipe'], env: cleanEnv(), maxBuffer: 256 * 1024 * 1024 });
}

export function staskJson(home, args) {
  return JSON.parse(stask(home, [...args, '--json']));
}

function cleanEnv() {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('STASK_')) delete env[k];
  return env;
}

/** Copies a library into the plugins directory (written whole, then renamed). */
export function installLib(home, crateLib, fileName = `lib${crateLib}.so`) {
  const dest = path.join(home, 'plugins', fileName);
  const tmp = `${dest}.tmp`;
  fs.copyFileSync(lib(crateLib), tmp);
  fs.chmodSync(tmp, 0o644);
  fs.renameSync(tmp, dest);
  return dest;
}

/**
 * A home with the demo and product workers installed and active, products.csv in
 * imports/, and three users (admin, operator, viewer) with PASSWORD.
 */
export function makeHome() {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'stask-browser-'));
  fs.chmodSync(home, 0o700);
  stask(home, ['init']);
  installLib(home, 'stask_worker_demo');
  installLib(home, 'stask_worker_product');
  stask(home, ['workers', 'discover', '--activate']);
  fs.mkdirSync(path.join(home, 'imports'), { recursive: true });
  fs.copyFileSync(path.join(ROOT, 'plugins', 'product-import', 'examples', 'products.csv'), path.join(home, 'imports', 'products.csv'));
  for (const [name, role] of [['alice', 'admin'], ['oscar', 'operator'], ['vera', 'viewer']]) {
    stask(home, ['users', 'add', name, '--role', role, '--password-stdin'], { input: `${PASSWORD}\n` });
  }
  return home;
}

export async function waitFor(what, fn, timeout = WAIT, every = 50) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** Starts `stask serve --bind BIND` on `home`; resolves once its address file exists. */
async function startService(home, bind) {
  const child = spawn(BIN, ['--home', home, 'serve', '--bind', bind, '--concurrency', '2'], {
    env: { ...cleanEnv(), RUST_LOG: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const addrFile = path.join(home, 'run', `http-${child.pid}.addr`);
  const url = await waitFor('the service to listen', () => {
    if (child.exitCode !== null) throw new Error(`stask serve exited (${child.exitCode}): ${output}`);
    return fs.existsSync(addrFile) && fs.readFileSync(addrFile, 'utf8').trim();
  });
  return { child, url, output: () => output };
}

async function stopService(child) {
  if (child.exitCode !== null) return;
  const done = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await done;
  clearTimeout(timer);
}

/**
 * `stask serve --bind 127.0.0.1:0` on `home`; resolves once its address file exists.
 * `down()` stops the service (the browser's address stays: the proxy too, when there is
 * one), `up()` starts it again on the same port.
 */
export async function serve(home) {
  let svc = await startService(home, '127.0.0.1:0');
  const url = svc.url;
  let proxy = null;
  if (process.env.STASK_BROWSER_DEV_PROXY === '1') {
    const { devProxy } = await import('./devproxy.mjs');
    proxy = await devProxy(path.join(ROOT, 'host', 'web'), url);
  }
  return {
    url: proxy ? proxy.url : url,
    apiUrl: url,
    get child() {
      return svc.child;
    },
    output: () => svc.output(),
    async down() {
      await stopService(svc.child);
    },
    async up() {
      svc = await waitFor('the port to be free again', () => startService(home, new URL(url).host).catch(() => null), WAIT, 250);
    },
    async stop() {
      if (proxy) proxy.close();
      await stopService(svc.child);
    },
  };
}

/** Headless Chromium with a fresh profile directory. */
export async function browser({ viewport = { width: 1280, height: 900 }, locale = 'en-US' } = {}) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'stask-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport,
    locale,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const errors = [];
  const watch = (page) => {
    page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) errors.push(`console: ${m.text()}`);
    });
  };
  context.pages().forEach(watch);
  context.on('page', watch);
  return {
    context,
    errors,
    async page() {
      return context.pages()[0] || context.newPage();
    },
    async close() {
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Signs in through the login form and waits for the dashboard. */
export async function login(page, base, name) {
  await page.goto(`${base}/login`);
  await page.waitForSelector('form.login-form');
  await page.fill('input[name=username]', name);
  await page.fill('input[name=password]', PASSWORD);
  await page.click('form.login-form button[type=submit]');
  await page.waitForSelector('#recent-tasks', { timeout: WAIT });
}

export async function logout(page) {
  await page.click('#logout');
  await page.waitForSelector('form.login-form');
}

/** A GET of the API with the page's session cookie. */
export async function apiGet(page, base, p) {
  const res = await page.request.get(`${base}/api/v1${p}`);
  if (!res.ok()) throw new Error(`GET ${p}: ${res.status()} ${await res.text()}`);
  return res.json();
}

export async function screenshot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** Creates a task with the CLI (started by `user`); returns its id. */
export function createTask(home, worker, action, data, extra = []) {
  return Number(stask(home, ['tasks', 'create', worker, action, '--data', JSON.stringify(data), ...extra]).trim().split('\n')[0]);
}

export function task(home, id) {
  return staskJson(home, ['tasks', 'show', String(id)]);
}
