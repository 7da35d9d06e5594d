// Drives the search page in Debian's Chromium with playwright-core, against a real
// `sluice up` that tests/web_ui.rs started and filled. Exits non-zero with a message on the
// first failed check; saves a screenshot of each step in $SLUICE_ARTIFACTS.
//
// Environment: SLUICE_URL, ADMIN_TOKEN, DEV_TOKEN, PROD_LINES, DEV_LINES, DEV_FILE (a CRI file
// the agent tails, appended to for the live tail), PLAIN_LINES (lines of a plain file, with no
// namespace, pod or level), SLUICE_ARTIFACTS.

import { appendFileSync, readFileSync } from "node:fs";
import { check, env, launch, searchFor, shot, total } from "./browser.mjs";

const base = env("SLUICE_URL");
const admin = env("ADMIN_TOKEN");
const dev = env("DEV_TOKEN");
const prodLines = Number(env("PROD_LINES"));
const devLines = Number(env("DEV_LINES"));
const devFile = env("DEV_FILE");
const plainLines = Number(env("PLAIN_LINES"));

async function signIn(page, token, url = base) {
  await page.goto(url);
  await page.waitForSelector("#login:not([hidden])");
  await page.fill("#token", token);
  await page.click("#login button[type=submit]");
  return total(page);
}

const browser = await launch();

try {
  // A user in Shanghai whose browser writes 12-hour times (en-US): the page shows local time,
  // 24-hour, with the zone, and UTC on request.
  const context = await browser.newContext({
    acceptDownloads: true,
    viewport: { width: 1400, height: 900 },
    locale: "en-US",
    timezoneId: "Asia/Shanghai",
  });
  const page = await context.newPage();
  page.on("pageerror", (e) => {
    console.error(`page error: ${e.message}`);
    process.exitCode = 1;
  });

  // Nothing the page asks for is missing (a favicon 404 in the console, say).
  const missing = [];
  page.on("response", (r) => {
    if (r.status() === 404) missing.push(r.url());
  });

  // Without a token the API refuses and the page asks for one.
  const all = await signIn(page, admin);
  check(all === prodLines + devLines + plainLines, `admin sees every line (${all})`);

  // Every facet adds up to the total: its top values, the other values, and "(none)" for
  // records without one (the plain file's lines have no namespace, pod or level).
  const sums = await page.evaluate(() => {
    const out = {};
    for (const row of document.querySelectorAll("#facets [data-field]")) {
      const count = Number(row.querySelector(".count").textContent);
      out[row.dataset.field] = (out[row.dataset.field] ?? 0) + count;
    }
    return out;
  });
  check(
    ["namespace", "pod", "container", "level"].every((f) => sums[f] === all),
    `each facet adds up to ${all}: ${JSON.stringify(sums)}`,
  );
  await shot(page, "0-facets-add-up");
  await page.evaluate(() => delete document.getElementById("status").dataset.total);
  await page.click('#facets button.facet-none[data-field="namespace"]');
  check((await total(page)) === plainLines, `"(none)" of namespace finds the ${plainLines} plain lines`);
  check((await page.inputValue("#q")) === "-namespace:*", "it asks -namespace:*");
  // The plain notes are long: in their context they wrap.
  await page.click("#hits li >> nth=0");
  await page.waitForSelector("#context:not([hidden]) #context-lines li.target");
  const wrapped = await page.evaluate(() =>
    [...document.querySelectorAll("#context-lines .message")].some((m) => m.getClientRects().length > 0 && m.getBoundingClientRect().height > 30),
  );
  check(wrapped, "long lines wrap in the context panel");
  // Lines wrap between words: no word of the context is split across two lines.
  const split = await page.evaluate(() => {
    const broken = [];
    for (const message of document.querySelectorAll("#context-lines .message")) {
      const node = message.firstChild;
      if (!node || node.nodeType !== Node.TEXT_NODE) continue;
      for (const m of node.textContent.matchAll(/[A-Za-z]{3,}/g)) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const tops = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
        if (tops.size > 1) broken.push(m[0]);
      }
    }
    return broken;
  });
  check(split.length === 0, `no word breaks across lines in the context: ${split.slice(0, 5)}`);
  await shot(page, "0b-context-wraps");
  await page.click("#close-context");

  // A field with no value is a clear error, not a search for the field's name.
  await page.fill("#q", "level:");
  await page.press("#q", "Enter");
  await page.waitForFunction(() => document.getElementById("status").dataset.failed === "true");
  const empty = await page.textContent("#error");
  check(empty.includes("has no value") && empty.includes("-level:*"), `level: is refused: ${empty}`);

  // A Chinese query: hit count, highlights, the histogram agrees.
  const chinese = await searchFor(page, "支付超时");
  check(chinese === (prodLines + devLines) / 10, `支付超时 finds ${chinese}`);
  const marks = await page.locator("#hits li mark").allTextContents();
  check(marks.length > 0 && marks.every((m) => m === "支付超时"), "matches are highlighted");
  await page.waitForFunction((n) => document.getElementById("histogram").dataset.total === String(n), chinese);
  check((await page.locator("#histogram rect").count()) > 0, "the histogram is drawn");
  check(page.url().includes("q=%E6%94%AF%E4%BB%98%E8%B6%85%E6%97%B6"), "the URL carries the query");
  check((await page.textContent("#zone")) === "UTC+08:00", "the zone the times are in is shown");
  const firstHit = await page.evaluate(async (token) => {
    const r = await fetch("/api/v1/search?q=支付超时&limit=1", { headers: { Authorization: `Bearer ${token}` } });
    return (await r.json()).hits[0].ts;
  }, admin);
  const shownTime = await page.textContent("#hits li >> nth=0 >> time");
  const local = new Date(Date.parse(firstHit) + 8 * 3_600_000).toISOString().slice(0, 23).replace("T", " ");
  check(shownTime === local, `a hit's time is local, 24-hour: ${shownTime} for ${firstHit}`);
  await shot(page, "1-chinese-query");

  // A shared URL opens the same search (after signing in: tokens stay in their own tab).
  const shared = await context.newPage();
  check((await signIn(shared, admin, page.url())) === chinese, "the shared URL reproduces the search");
  await shared.close();

  // A bad query leaves nothing of the previous answer on screen.
  await page.fill("#q", "ts:[yesterday TO *]");
  await page.press("#q", "Enter");
  await page.waitForFunction(() => document.getElementById("status").dataset.failed === "true");
  check((await page.textContent("#error")).trim().length > 0, "a bad query shows its error");
  const stale = await page.evaluate(() => ({
    hits: document.querySelectorAll("#hits li").length,
    bars: document.querySelectorAll("#histogram rect").length,
    facets: document.querySelectorAll("#facets button").length,
    status: document.getElementById("status").textContent,
  }));
  check(
    stale.hits === 0 && stale.bars === 0 && stale.facets === 0 && stale.status === "",
    `no hits, count, histogram or facets of the previous query stay: ${JSON.stringify(stale)}`,
  );
  await shot(page, "1b-bad-query");
  check((await searchFor(page, "支付超时")) === chinese, "a good query after it answers again");

  // The histogram fits the query's records and labels its time axis (local, 24-hour).
  await searchFor(page, 'namespace:"dev"');
  const fit = await page.evaluate(() => {
    const svg = document.getElementById("histogram");
    const rects = [...svg.querySelectorAll("rect")].map((r) => [Number(r.getAttribute("x")), Number(r.getAttribute("width"))]);
    const ticks = [...svg.querySelectorAll("text.tick")].map((t) => t.textContent);
    return { width: svg.clientWidth, first: Math.min(...rects.map((r) => r[0])), last: Math.max(...rects.map((r) => r[0] + r[1])), ticks };
  });
  check(fit.first < fit.width * 0.05 && fit.last > fit.width * 0.95, `dev's bars span the width: ${JSON.stringify(fit)}`);
  check(
    fit.ticks.length === 6 && fit.ticks.every((t) => /^(19|20):\d{2}$/.test(t)),
    `the axis is labelled in local 24-hour time: ${fit.ticks}`,
  );
  await shot(page, "1c-histogram-axis");
  await searchFor(page, "支付超时");

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
  // Following from the context is the panel's own: it says so there, not in the status.
  await page.click("#follow");
  check((await page.getAttribute("#context", "data-following")) === "true", "the panel says it follows");
  check(!(await page.isChecked("#live")) && !(await page.textContent("#status")).includes("live"), "the live tail stays off");
  await page.click("#follow");
  check((await page.getAttribute("#context", "data-following")) === null, "following stops on a second click");
  await shot(page, "2-context");

  // Live tail: a new line written to the file arrives on the page.
  const beforeLive = await searchFor(page, "");
  const devCount = () => page.locator('#facets button[data-field="namespace"][data-value="dev"] .count').textContent();
  const devBefore = Number(await devCount());
  await page.check("#live");
  await page.waitForTimeout(500);
  const marker = `实时新行 live-${Date.now()}`;
  appendFileSync(devFile, `2026-11-30T11:59:59.000000001Z stdout F INFO dev ${marker}\n`);
  await page.waitForSelector(`#hits li.live:has-text("${marker}")`, { timeout: 30_000 });
  check(true, "a new line arrives in the live tail");
  // The facets and the histogram follow the live hits, and agree with the count.
  await page.waitForFunction(
    (n) => document.querySelector('#facets button[data-field="namespace"][data-value="dev"] .count')?.textContent === String(n),
    devBefore + 1,
    { timeout: 30_000 },
  );
  await page.waitForFunction((n) => document.getElementById("histogram").dataset.total === String(n), beforeLive + 1, {
    timeout: 30_000,
  });
  check((await total(page)) === beforeLive + 1, "live: the count, the dev facet and the histogram all grew by one");
  check((await page.textContent("#status")).includes("live"), "the status says live while the box is checked");
  await shot(page, "3-live-tail");
  await page.uncheck("#live");
  check(!(await page.textContent("#status")).includes("live"), "unchecked, the status no longer says live");

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
  // Rows of the toolbar: an item starts a new one when it sits below the last row's items.
  const rows = await page.evaluate(() => {
    const boxes = [...document.querySelectorAll("#search > *")]
      .filter((e) => e.offsetParent !== null)
      .map((e) => e.getBoundingClientRect())
      .sort((a, b) => a.top - b.top);
    let count = 0;
    let bottom = -Infinity;
    for (const b of boxes) {
      if (b.top >= bottom) count++;
      bottom = Math.max(bottom, b.bottom);
    }
    return count;
  });
  const clipped = await page.evaluate(() =>
    ["start", "end"].filter((id) => {
      const e = document.getElementById(id);
      return e.scrollWidth > e.clientWidth;
    }),
  );
  check(clipped.length === 0, `the range inputs show their whole times: ${clipped}`);
  await shot(page, "4-zoomed");
  check(rows === 1, `with a custom range the toolbar stays one row (${rows})`);
  const startShown = await page.inputValue("#start");
  check(/^2026-11-30 (18|19|20):\d{2}:\d{2}$/.test(startShown), `the range is local, 24-hour: ${startShown}`);
  const startInUrl = new URL(page.url()).searchParams.get("start");
  check(
    startInUrl.endsWith("Z") && Date.parse(startInUrl) === Date.parse(`${startShown.replace(" ", "T")}+08:00`),
    `the URL holds it as ISO 8601 UTC: ${startInUrl}`,
  );
  await page.evaluate(() => delete document.getElementById("status").dataset.total);
  await page.check("#utc");
  check((await total(page)) === zoomed, "UTC shows the same range");
  const startUtc = await page.inputValue("#start");
  check(Date.parse(`${startUtc.replace(" ", "T")}Z`) === Date.parse(startInUrl), `in UTC the range reads ${startUtc}`);
  check((await page.textContent("#hits li >> nth=0 >> time")).endsWith("Z"), "hit times are UTC, marked Z");
  check(new URL(page.url()).searchParams.get("tz") === "utc", "the URL keeps the UTC choice");
  await shot(page, "4b-utc");
  await page.uncheck("#utc");
  check(missing.length === 0, `nothing the page loaded was a 404: ${missing}`);

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
