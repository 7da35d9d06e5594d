// The alerts panel in Debian's Chromium, against a real `sluice up --alerts` that
// tests/web_ui.rs started and fed: firing and pending alerts listed with their labels and
// summaries, a silence created from an alert's "Silence" button, the alert then shown as
// silenced, and the silence expired again.
//
// Environment: SLUICE_URL, FIRING (namespaces with a firing alert, comma-separated),
// PENDING (alertnames pending), SLUICE_ARTIFACTS.

import { check, env, launch, newPage, shot } from "./browser.mjs";

const base = env("SLUICE_URL");
const firing = env("FIRING").split(",");
const pending = env("PENDING").split(",");

const rows = (page, state) => page.locator(`#alerts-table tr.alert.${state}`);

const browser = await launch();
try {
  const { context, page } = await newPage(browser);
  await page.goto(base);
  await page.waitForSelector("#alerts-toggle:not([hidden])");
  check(
    (await page.textContent("#alerts-count")) === String(firing.length),
    `the header counts ${firing.length} firing alerts`,
  );
  await page.click("#alerts-toggle");
  await page.waitForSelector("#alerts:not([hidden]) #alerts-table tr.alert");
  check(new URL(page.url()).hash === "#alerts", "the panel is in the URL");
  check((await rows(page, "firing").count()) === firing.length, `${firing.length} firing rows`);
  for (const ns of firing) {
    const row = rows(page, "firing").filter({ hasText: `namespace=${ns}` });
    check((await row.count()) === 1, `a firing row for ${ns}`);
    const summary = await row.locator(".summary").textContent();
    check(summary.includes(ns) && summary.includes("支付失败"), `its summary: ${summary}`);
  }
  for (const name of pending) {
    check(
      (await rows(page, "pending").filter({ hasText: name }).count()) === 1,
      `${name} is listed as pending`,
    );
  }
  await shot(page, "alerts-1-firing-and-pending");

  // Silence one namespace's alert from its row.
  const target = firing[0];
  await rows(page, "firing").filter({ hasText: `namespace=${target}` }).locator("button.silence").click();
  const matchers = await page.inputValue("#silence-matchers");
  check(
    matchers.includes('alertname="pay-failures"') && matchers.includes(`namespace="${target}"`),
    `the form is prefilled with the alert's labels: ${matchers}`,
  );
  await page.fill("#silence-duration", "1h");
  await page.fill("#silence-creator", "alice");
  await page.fill("#silence-comment", "数据库迁移 db migration");
  await page.click("#silence-form button[type=submit]");
  await page.waitForSelector("#silence-message[data-id]");
  const id = await page.getAttribute("#silence-message", "data-id");
  await page.waitForSelector(`#silences li.active[data-id="${id}"]`);
  const listed = await page.textContent(`#silences li[data-id="${id}"]`);
  check(listed.includes("alice") && listed.includes("数据库迁移"), `the silence is listed: ${listed}`);
  await page.waitForSelector(`#alerts-table tr.alert.silenced`);
  check(
    (await rows(page, "silenced").filter({ hasText: `namespace=${target}` }).count()) === 1,
    `${target}'s alert shows as silenced`,
  );
  check((await rows(page, "firing").count()) === firing.length - 1, "one fewer firing");
  await shot(page, "alerts-2-silenced");
  console.log(`SILENCE_ID=${id}`);

  // A bad silence is refused with the server's reason.
  await page.fill("#silence-matchers", "namespace~bad");
  await page.click("#silence-form button[type=submit]");
  await page.waitForFunction(() => document.getElementById("alerts-error").textContent !== "");
  const error = await page.textContent("#alerts-error");
  check(error.startsWith("silence:"), `a bad matcher is refused: ${error}`);

  // Expire it again: the alert fires on the list.
  await page.click(`#silences li[data-id="${id}"] button.expire`);
  await page.waitForSelector(`#silences li[data-id="${id}"]:not(.active)`);
  await page.waitForFunction(
    (ns) => [...document.querySelectorAll("#alerts-table tr.alert.firing")].some((r) => r.textContent.includes(`namespace=${ns}`)),
    target,
  );
  check(true, "expired: the alert is firing again on the list");
  await context.close();
} finally {
  await browser.close();
}
console.log("alerts page checks done");
