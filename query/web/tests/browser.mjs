// What the page's browser scripts share: the environment, checks, screenshots, the searches
// they type, and Debian's Chromium launched headless.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

const artifacts = env("SLUICE_ARTIFACTS");
mkdirSync(artifacts, { recursive: true });

let step = 0;
export function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
  console.log(`ok ${++step} - ${what}`);
}

export async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: false });
}

export async function total(page) {
  // The status carries the hit count once a search finished.
  await page.waitForFunction(() => document.getElementById("status").dataset.total !== undefined);
  return Number(await page.locator("#status").getAttribute("data-total"));
}

export async function searchFor(page, q) {
  await page.evaluate(() => delete document.getElementById("status").dataset.total);
  await page.fill("#q", q);
  await page.press("#q", "Enter");
  return total(page);
}

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/// A page that fails the script on any uncaught error in it.
export async function newPage(browser, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, ...options });
  const page = await context.newPage();
  page.on("pageerror", (e) => {
    console.error(`page error: ${e.message}`);
    process.exitCode = 1;
  });
  return { context, page };
}
