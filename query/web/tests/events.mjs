// Kubernetes events on the search page, in Debian's Chromium, against a real `sluice up
// --kube-events` that tests/web_ui.rs started beside the Kubernetes API double and filled:
// the logs/events selector, the events' reason, object and occurrence columns, and an
// event's repeat history in the context panel.
//
// Environment: SLUICE_URL, LOG_LINES, EVENTS (occurrences in all), REPEATS (occurrences of the
// BackOff event of pod web-0), SLUICE_ARTIFACTS.

import { check, env, launch, newPage, searchFor, shot, total } from "./browser.mjs";

const base = env("SLUICE_URL");
const logLines = Number(env("LOG_LINES"));
const events = Number(env("EVENTS"));
const repeats = Number(env("REPEATS"));

async function choose(page, kind) {
  await page.evaluate(() => delete document.getElementById("status").dataset.total);
  await page.selectOption("#kind", kind);
  return total(page);
}

const browser = await launch();
try {
  const { context, page } = await newPage(browser);
  await page.goto(base);
  check((await total(page)) === logLines + events, `logs and events together: ${logLines} + ${events}`);
  check((await choose(page, "events")) === events, `only events: ${events}`);
  check(new URL(page.url()).searchParams.get("kind") === "events", "the selector is in the URL");
  const first = page.locator("#hits li").first();
  for (const column of ["event-type", "reason", "object", "event-count"]) {
    check((await first.locator(`.badge.${column}`).count()) === 1, `an event hit shows its ${column}`);
  }
  check((await choose(page, "logs")) === logLines, `only logs: ${logLines}`);
  check((await page.locator("#hits .badge.reason").count()) === 0, "log hits carry no event columns");
  await shot(page, "events-1-logs-only");

  // One event repeated: each occurrence a hit, its history around any of them.
  await choose(page, "events");
  const n = await searchFor(page, "reason:BackOff object:Pod/web-0");
  check(n === repeats, `the BackOff of web-0 is ${repeats} occurrences`);
  const middle = Math.ceil(repeats / 2);
  await page.locator("#hits li", { has: page.locator(".event-count", { hasText: `×${middle}` }) }).click();
  await page.waitForSelector("#context:not([hidden]) #context-lines li.target");
  check((await page.textContent("#context-title")).includes("Repeat history"), "the panel is the repeat history");
  const history = await page.locator("#context-lines .event-count").allTextContents();
  const expected = Array.from({ length: repeats }, (_, i) => `×${i + 1}`);
  check(JSON.stringify(history) === JSON.stringify(expected), `history ${history} is every occurrence in order`);
  check(
    (await page.textContent("#context-lines li.target .event-count")) === `×${middle}`,
    "the clicked occurrence is marked in its history",
  );
  const details = await page.textContent("#pod-details");
  check(details.includes("BackOff") && details.includes("Pod/web-0") && details.includes("kubelet"), "the event's details");
  await shot(page, "events-2-repeat-history");

  // A shared URL opens on events.
  const { page: shared } = await newPage(browser);
  await shared.goto(`${base}/?kind=events&q=event_type%3AWarning`);
  const warnings = await total(shared);
  check(warnings > 0 && warnings < events, `a shared URL keeps the selector: ${warnings} warnings`);
  check((await shared.locator("#kind").inputValue()) === "events", "the selector is restored from the URL");
  await context.close();
} finally {
  await browser.close();
}
console.log("events page checks done");
