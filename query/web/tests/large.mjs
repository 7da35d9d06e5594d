// Large answers on the search page, in Debian's Chromium: 10,000 hits on screen (loaded page
// by page with "More") and a 24 h histogram, against a real `sluice up` that tests/web_ui.rs
// filled with LINES lines spread over the last 24 hours. Checks what is on screen; measures
// (prints, never asserts) how long each step took and the longest task that held the page's
// main thread, as Chromium's Long Tasks API reports it.
//
// Environment: SLUICE_URL, SLUICE_ARTIFACTS, and LINES (the lines in the last 24 h; unset, any
// number above 10,000 will do: pointed at a large index, the script measures that one).

import { check, env, launch, newPage, searchFor, shot, total } from "./browser.mjs";

const base = env("SLUICE_URL");
const lines = process.env.LINES ? Number(process.env.LINES) : undefined;
const WANT = 10_000;

const browser = await launch();
try {
  const { context, page } = await newPage(browser);
  await page.addInitScript(() => {
    window.__longest = 0;
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__longest = Math.max(window.__longest, e.duration);
    }).observe({ type: "longtask", buffered: true });
  });
  let started = Date.now();
  await page.goto(`${base}/?range=24h`);
  const inDay = await total(page);
  check(lines === undefined ? inDay > WANT : inDay === lines, `the last 24 h hold ${inDay} lines`);
  const firstAnswer = Date.now() - started;
  const bars = await page.locator("#histogram rect").count();
  check(bars >= 24, `the 24 h histogram is drawn (${bars} bars)`);

  started = Date.now();
  const pages = await page.evaluate(async (want) => {
    const hits = document.getElementById("hits");
    const more = document.getElementById("more");
    let clicks = 0;
    while (hits.childElementCount < want && !more.hidden) {
      const before = hits.childElementCount;
      more.click();
      clicks++;
      while (hits.childElementCount === before) await new Promise((r) => setTimeout(r, 1));
    }
    return clicks;
  }, WANT);
  const loaded = Date.now() - started;
  const onScreen = await page.evaluate(() => document.getElementById("hits").childElementCount);
  check(onScreen >= WANT, `${onScreen} hits on screen after ${pages} pages`);

  // Still responsive: a frame after scrolling to the end, and a new search replacing them all.
  const frame = await page.evaluate(async () => {
    window.scrollTo(0, document.body.scrollHeight);
    const t = performance.now();
    await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    return performance.now() - t;
  });
  await shot(page, "large-1-ten-thousand");
  started = Date.now();
  const info = await searchFor(page, "INFO");
  const replaced = Date.now() - started;
  check(info > 0 && (await page.locator("#hits li").count()) === 100, "a new search replaces them");
  const longest = await page.evaluate(() => window.__longest);
  console.log(
    `measured: first answer ${firstAnswer} ms; ${onScreen} hits in ${pages} pages in ${loaded} ms ` +
      `(${(loaded / pages).toFixed(1)} ms a page); a frame after scrolling to the end ${frame.toFixed(1)} ms; ` +
      `a new search replacing them ${replaced} ms; longest main-thread task ${longest.toFixed(0)} ms`,
  );
  await context.close();
} finally {
  await browser.close();
}
console.log("large answers checks done");
