// Drives the search page in Debian's Chromium with playwright-core, against a real
// `sluice up` that tests/web_ui.rs started and filled. Exits non-zero with a message on the
// first failed check; saves a screenshot of each step in $SLUICE_ARTIFACTS.
//
// Environment: SLUICE_URL, ADMIN_TOKEN, DEV_TOKEN, PROD_LINES, DEV_LINES, DEV_FILE (a CRI file
// the agent tails, appended to for the live tail), SLUICE_ARTIFACTS.

import { appendFileSync, readFileSync } from "node:fs";
import { check, env, launch, searchFor, shot, total } from "./browser.mjs";

const base = env("SLUICE_URL");
const admin = env("ADMIN_TOKEN");
const dev = env("DEV_TOKEN");
const prodLines = Number(env("PROD_LINES"));
const devLines = Number(env("DEV_LINES"));
const devFile = env("DEV_FILE");

async function signIn(page, token, url = base) {
  await page.goto(url);
  await page.waitForSelector("#login:not([hidden])");
  await page.fill("#token", token);
  await page.click("#login button[type=submit]");
  return total(page);
}

const browser = await launch();

try {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => {
    console.error(`page error: ${e.message}`);
    process.exitCode = 1;
  });

  // Without a token the API refuses and the page asks for one.
  const all = await signIn(page, admin);
  check(all === prodLines + devLines, `admin sees every line (${all})`);

  // A Chinese query: hit count, highlights, the histogram agrees.
  const chinese = await searchFor(page, "支付超时");
  check(chinese === (prodLines + devLines) / 10, `支付超时 finds ${chinese}`);
  const marks = await page.locator("#hits li mark").allTextContents();
  check(marks.length > 0 && marks.every((m) => m === "支付超时"), "matches are highlighted");
  await page.waitForFunction((n) => document.getElementById("histogram").dataset.total === String(n), chinese);
  check((await page.locator("#histogram rect").count()) > 0, "the histogram is drawn");
  check(page.url().includes("q=%E6%94%AF%E4%BB%98%E8%B6%85%E6%97%B6"), "the URL carries the query");
  await shot(page, "1-chinese-query");

  // A shared URL opens the same search (after signing in: tokens stay in their own tab).
  const shared = await context.newPage();
  check((await signIn(shared, admin, page.url())) === chinese, "the shared URL reproduces the search");
  await shared.close();

  // A facet narrows the query.
  await page.evaluate(() => delete document.getElementById("status").dataset.total);
  await page.click('#facets button[data-field="namespace"][data-value="dev"]');
  const devChinese = await total(page);
  check(devChinese === devLines / 10, `the dev facet narrows to ${devChinese}`);
  check((await page.inputValue("#q")).includes('namespace:"dev"'), "the facet is added to the query");

  // Click a hit: its context, in write order, with the pod's details.
  await page.click("#hits li >> nth=0");
  await page.waitForSelector("#context:not([hidden]) #context-lines li.target");
  const before = await page.locator("#context-lines li").count();
  check(before > 1, `context shows ${before} lines around the hit`);
  const details = await page.locator("#pod-details").textContent();
  check(details.includes("pay-2") && details.includes("dev"), "pod details are shown");
  await shot(page, "2-context");

  // Live tail: a new line written to the file arrives on the page.
  await page.fill("#q", "");
  await page.press("#q", "Enter");
  await total(page);
  await page.check("#live");
  await page.waitForTimeout(500);
  const marker = `实时新行 live-${Date.now()}`;
  appendFileSync(devFile, `2026-11-30T11:59:59.000000001Z stdout F INFO dev ${marker}\n`);
  await page.waitForSelector(`#hits li.live:has-text("${marker}")`, { timeout: 30_000 });
  check(true, "a new line arrives in the live tail");
  await shot(page, "3-live-tail");
  await page.uncheck("#live");

  // Export what the query matches.
  await searchFor(page, "支付超时");
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#export")]);
  const exported = readFileSync(await download.path(), "utf8").trim().split("\n");
  check(exported.length === chinese, `export holds ${exported.length} lines`);
  check(exported.every((l) => JSON.parse(l).message.includes("支付超时")), "every exported line matches");

  // Drag on the histogram zooms in.
  await searchFor(page, "");
  const box = await page.locator("#histogram").boundingBox();
  await page.evaluate(() => delete document.getElementById("status").dataset.total);
  await page.mouse.move(box.x + box.width * 0.25, box.y + 50);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.5, box.y + 50, { steps: 5 });
  await page.mouse.up();
  const zoomed = await total(page);
  check((await page.inputValue("#range")) === "custom", "zooming sets a custom range");
  check(zoomed > 0 && zoomed < all, `the zoomed range holds ${zoomed} of ${all}`);
  await shot(page, "4-zoomed");

  // The dev token sees no prod data, through the page and through the API it calls.
  const devContext = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const devPage = await devContext.newPage();
  const devAll = await signIn(devPage, dev);
  check(devAll === devLines + 1, `dev sees its ${devAll} lines only`);
  const namespaces = await devPage.locator('#facets button[data-field="namespace"]').evaluateAll((bs) =>
    bs.map((b) => b.dataset.value),
  );
  check(namespaces.length === 1 && namespaces[0] === "dev", `dev's namespace facet: ${namespaces}`);
  check((await searchFor(devPage, "namespace:prod")) === 0, "namespace:prod finds nothing for dev");
  check((await searchFor(devPage, "namespace:prod OR namespace:dev")) === devLines + 1, "OR does not widen dev's scope");
  const badges = await devPage.locator("#hits .badge.namespace").allTextContents();
  check(badges.length > 0 && badges.every((b) => b === "dev"), "every hit shown to dev is dev");
  const prodId = await page.evaluate(async (token) => {
    const r = await fetch("/api/v1/search?q=namespace:prod&limit=1", { headers: { Authorization: `Bearer ${token}` } });
    return (await r.json()).hits[0].id;
  }, admin);
  const status = await devPage.evaluate(async ([token, id]) => {
    const r = await fetch(`/api/v1/context?id=${id}`, { headers: { Authorization: `Bearer ${token}` } });
    return r.status;
  }, [dev, prodId]);
  check(status === 404, "a prod record's context is not found for dev");
  await shot(devPage, "5-dev-scope");
  await devContext.close();
  await context.close();
} finally {
  await browser.close();
}
