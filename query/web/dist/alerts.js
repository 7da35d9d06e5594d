// The alerts panel: firing, pending and silenced alerts of `sluice up --alerts` (and what
// Prometheus pushed), the silences, and a form that creates one — prefilled from an alert's
// labels by its "Silence" button. Hidden when the server runs no alerting (`enabled: false`)
// or the caller has no valid token yet. Open with the header button or a URL ending in `#alerts`.
import { $, authHeaders, el, input } from "./page.js";
const REFRESH_MS = 5000;
let formatTime = (ms) => new Date(ms).toISOString();
let unauthorized = () => undefined;
let timer;
class HttpError extends Error {
    constructor(status, message) {
        super(message);
        this.status = status;
    }
}
async function call(method, path, body) {
    const headers = { ...authHeaders() };
    if (body !== undefined)
        headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401)
        unauthorized();
    const answer = await response.json().catch(() => ({ error: response.statusText }));
    if (!response.ok)
        throw new HttpError(response.status, answer.error ?? response.statusText);
    return answer;
}
/// `name="value"` matchers for every label of an alert (Alertmanager's syntax).
function matchersOf(labels) {
    return Object.entries(labels)
        .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
        .join("\n");
}
function alertRow(a) {
    const row = el("tr");
    row.className = `alert ${a.state}`;
    row.dataset.fingerprint = a.fingerprint;
    row.append(el("td", a.state, `badge state ${a.state}`));
    row.append(el("td", a.labels.alertname ?? "", "alertname"));
    const labels = el("td", undefined, "labels");
    for (const [k, v] of Object.entries(a.labels)) {
        if (k !== "alertname")
            labels.append(el("span", `${k}=${v}`, "badge label"));
    }
    row.append(labels);
    row.append(el("td", a.annotations.summary ?? "", "summary"));
    row.append(el("td", formatTime(a.startsAt), "since"));
    const action = el("td");
    const silence = el("button", "静默 Silence", "silence");
    silence.type = "button";
    silence.addEventListener("click", () => {
        matchersInput().value = matchersOf(a.labels);
        input("silence-creator").focus();
    });
    action.append(silence);
    row.append(action);
    return row;
}
function silenceItem(s) {
    const item = el("li", undefined, s.active ? "silence active" : "silence");
    item.dataset.id = s.id;
    item.append(el("code", s.matchers.join(", ")));
    item.append(el("span", ` ${s.created_by} · ${formatTime(s.starts_at_ms)} → ${formatTime(s.ends_at_ms)}${s.comment ? ` · ${s.comment}` : ""}`));
    if (s.active) {
        const expire = el("button", "结束 Expire", "expire");
        expire.type = "button";
        expire.addEventListener("click", () => {
            void call("DELETE", `/api/v1/silences/${encodeURIComponent(s.id)}`).then(refresh, showError);
        });
        item.append(expire);
    }
    return item;
}
function matchersInput() {
    return $("silence-matchers");
}
function showError(e) {
    $("alerts-error").textContent = e instanceof Error ? e.message : String(e);
}
async function refresh() {
    let alerts;
    try {
        const answer = await call("GET", "/api/v1/alerts");
        if (!answer.enabled) {
            $("alerts-toggle").hidden = true;
            $("alerts").hidden = true;
            return;
        }
        alerts = answer.alerts;
    }
    catch (e) {
        if (e instanceof HttpError && e.status === 401) {
            $("alerts-toggle").hidden = true;
            return;
        }
        showError(e);
        return;
    }
    $("alerts-toggle").hidden = false;
    $("alerts-error").textContent = "";
    const order = { firing: 0, pending: 1, silenced: 2 };
    alerts.sort((a, b) => order[a.state] - order[b.state] || a.startsAt - b.startsAt);
    const firing = alerts.filter((a) => a.state === "firing").length;
    $("alerts-count").textContent = firing ? String(firing) : "";
    $("alerts-toggle").classList.toggle("firing", firing > 0);
    const body = $("alerts-table").querySelector("tbody");
    body.replaceChildren(...alerts.map(alertRow));
    if (!alerts.length) {
        const none = el("tr");
        none.append(el("td", "没有告警 No alerts", "none"));
        body.append(none);
    }
    $("alerts").dataset.loaded = String(alerts.length);
    // Silences are for admins: others see the alerts and no form.
    try {
        const { silences } = await call("GET", "/api/v1/silences");
        $("silence-form").hidden = false;
        silences.sort((a, b) => Number(b.active) - Number(a.active) || b.starts_at_ms - a.starts_at_ms);
        $("silences").replaceChildren(...silences.map(silenceItem));
    }
    catch (e) {
        if (!(e instanceof HttpError && e.status === 403))
            throw e;
        $("silence-form").hidden = true;
        $("silences").replaceChildren(el("li", "静默仅管理员可见 Silences are for admins"));
    }
}
function show(open) {
    $("alerts").hidden = !open;
    const url = new URL(location.href);
    url.hash = open ? "alerts" : "";
    history.replaceState(null, "", url.hash ? url : url.href.replace(/#$/, ""));
    if (timer !== undefined)
        clearInterval(timer);
    timer = open ? window.setInterval(() => void refresh().catch(showError), REFRESH_MS) : undefined;
    if (open)
        void refresh().catch(showError);
}
async function createSilence() {
    const matchers = matchersInput()
        .value.split("\n")
        .map((m) => m.trim())
        .filter((m) => m);
    const body = {
        matchers,
        duration: input("silence-duration").value.trim(),
        created_by: input("silence-creator").value.trim(),
        comment: input("silence-comment").value.trim(),
    };
    const { id } = await call("POST", "/api/v1/silences", body);
    $("silence-message").textContent = `已静默 Silenced: ${id}`;
    $("silence-message").dataset.id = id;
    await refresh();
}
/// After signing in: the caller may now see alerts.
export function reloadAlerts() {
    void refresh().catch(() => undefined);
}
export function initAlerts(format, onUnauthorized) {
    formatTime = format;
    unauthorized = onUnauthorized;
    $("alerts-toggle").addEventListener("click", () => show($("alerts").hidden));
    $("alerts-refresh").addEventListener("click", () => void refresh().catch(showError));
    $("silence-form").addEventListener("submit", (e) => {
        e.preventDefault();
        $("silence-message").textContent = "";
        createSilence().catch(showError);
    });
    if (location.hash === "#alerts")
        show(true);
    else
        reloadAlerts();
}
