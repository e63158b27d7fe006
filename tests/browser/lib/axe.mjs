// axe-core (Deque's accessibility rules engine) run inside the page, and screenshots of
// a page at the desktop and phone widths every page is checked at.

import fs from 'node:fs';
import { createRequire } from 'node:module';
import { screenshot } from './harness.mjs';

const require = createRequire(import.meta.url);
const AXE_SOURCE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/** The widths every page is photographed at. */
export const WIDTHS = {
  desktop: { width: 1440, height: 900 },
  phone: { width: 390, height: 844 },
};

/**
 * Runs axe-core on the page as it is now (WCAG 2.x A and AA rules and axe's best
 * practices) and returns its violations, each as one readable line per element.
 * The script is evaluated through the debugging protocol, so the page's Content
 * Security Policy does not stop it.
 */
export async function axeViolations(page) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(() =>
    window.axe.run(document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'] },
      resultTypes: ['violations'],
    }),
  );
  return result.violations.flatMap((v) =>
    v.nodes.map((n) => `${v.id} (${v.impact}): ${n.target.join(' ')} — ${n.failureSummary.replace(/\s+/g, ' ')}`),
  );
}

/** Full-page screenshots of the page at each of WIDTHS, named `NAME-desktop`, `NAME-phone`. */
export async function screenshotsAtWidths(page, name, settle = async () => {}) {
  const was = page.viewportSize();
  for (const [label, size] of Object.entries(WIDTHS)) {
    await page.setViewportSize(size);
    await page.waitForTimeout(100);
    await settle();
    await screenshot(page, `${name}-${label}`);
  }
  if (was) await page.setViewportSize(was);
}
