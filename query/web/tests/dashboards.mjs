// The dashboards panel in Debian's Chromium, against a real `sluice up --prometheus-url` that
// tests/web_ui.rs started and fed, with a real Prometheus scraping it: the built-in pipeline
// health dashboard with live numbers (lines by level from the index, the WAL's size from
// Prometheus), then the log volume dashboard with a namespace chosen, kept in the URL.
//
// Environment: SLUICE_URL, LINES and ERRORS (lines written in all), PAY and PAY_ERRORS (of namespace
// pay), SHOP (of namespace shop), SLUICE_ARTIFACTS.

import { check, env, launch, newPage, shot } from "./browser.mjs";

const base = env("SLUICE_URL");
const [lines, errors, pay, payErrors, shop] = ["LINES", "ERRORS", "PAY", "PAY_ERRORS", "SHOP"].map((n) =>
  Number(env(n)),
);

const panel = (page, title) => page.locator(".dash-panel", { has: page.locator("h4", { hasText: title }) });
const num = (text) => Number(text.replaceAll(",", ""));

async function loaded(page, name) {
  await page.waitForSelector(`#dashboards:not([hidden]) #dashboard-body[data-name="${name}"] .dash-panel`);
  await page.waitForFunction(() => document.querySelectorAll(".dash-panel:not([data-loaded])").length === 0);
  const failed = await page.locator(".dash-panel[data-loaded=error]").allTextContents();
  check(failed.length === 0, `every panel drew: ${failed.join(" | ")}`);
}

const browser = await launch();
try {
  const { page } = await newPage(browser);
  await page.goto(`${base}/#dashboard=pipeline-health`);
  await loaded(page, "pipeline-health");
  check((await page.locator("#dashboard-select").inputValue()) === "pipeline-health", "pipeline health is open");
  const volume = num(await panel(page, "Lines by level").locator(".total").textContent());
  check(volume === lines, `lines by level counts ${lines}: ${volume}`);
  const levels = await panel(page, "Lines by level").locator(".legend li").allTextContents();
  check(levels.includes(`error: ${errors}`), `errors listed by level: ${levels}`);
  const wal = await panel(page, "WAL size (bytes)").locator(".value").allTextContents();
  check(wal.length === 1 && num(wal[0]) > 0, `the WAL's size from Prometheus: ${wal}`);
  const read = await panel(page, "Lines read per second, by agent").locator(".legend li").count();
  check(read >= 1, "a series of lines read per agent");
  await shot(page, "dashboard-pipeline-health");

  await page.selectOption("#dashboard-select", "log-volume");
  await loaded(page, "log-volume");
  const rows = await panel(page, "Namespaces").locator("tr").allTextContents();
  check(rows.includes(`pay${pay}`) && rows.includes(`shop${shop}`), `namespaces ranked: ${rows}`);
  await page.selectOption("#var-namespace", ["pay"]);
  await loaded(page, "log-volume");
  const payShown = num(await panel(page, "Error lines").locator(".total").textContent());
  check(payShown === payErrors, `pay's error lines: ${payShown}`);
  const url = page.url();
  check(url.includes("dashboard=log-volume") && url.includes("var-namespace=pay"), `the choice is in the URL: ${url}`);

  // The URL alone brings the same view back.
  const { page: again } = await newPage(browser);
  await again.goto(url);
  await loaded(again, "log-volume");
  check((await again.locator("#var-namespace").inputValue()) === "pay", "the variable is restored");
  const restored = num(await panel(again, "Error lines").locator(".total").textContent());
  check(restored === payErrors, `the same numbers: ${restored}`);
  await shot(again, "dashboard-log-volume-pay");
  console.log("dashboards page checks done");
} finally {
  await browser.close();
}
