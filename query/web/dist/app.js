// The Sluice search page. Plain DOM, no framework: the page is small and must load from the
// binary with nothing fetched from elsewhere. Log text is untrusted, so every value reaches
// the page through textContent, never as HTML.
import { initAlerts, reloadAlerts } from "./alerts.js";
import { initDashboards, reloadDashboards } from "./dashboards.js";
import { $, TOKEN_KEY, authHeaders, el, input, select } from "./page.js";
const RANGES = {
    "15m": 15 * 60000,
    "1h": 3600000,
    "24h": 86400000,
    "7d": 7 * 86400000,
};
const LEVEL_COLORS = {
    fatal: "#7a271a",
    error: "#d92d20",
    warn: "#f79009",
    info: "#2e90fa",
    debug: "#98a2b3",
    trace: "#d0d5dd",
    "": "#b3c2d3",
};
class Unauthorized extends Error {
}
/// Queries go as a form POST, not in the URL: a pasted query may be longer than a URL holds.
async function api(path, params) {
    const response = await fetch(path, {
        method: "POST",
        headers: authHeaders(),
        body: new URLSearchParams(params),
    });
    if (response.status === 401) {
        showLogin("需要有效令牌 A valid token is required");
        throw new Unauthorized();
    }
    const body = await response.json().catch(() => ({ error: response.statusText }));
    if (!response.ok)
        throw new Error(body.error ?? response.statusText);
    return body;
}
function showLogin(message) {
    $("login").hidden = false;
    $("logout").hidden = true;
    $("login-message").textContent = message;
}
/// The time range of the form, in milliseconds since the epoch (`undefined`: open).
function timeRange() {
    const range = select("range").value;
    if (range in RANGES) {
        const now = Date.now();
        return { start: now - RANGES[range], end: now + 60000 };
    }
    if (range === "custom") {
        return { start: parseInput(input("start").value, shownUtc), end: parseInput(input("end").value, shownUtc) };
    }
    return {};
}
function rangeParams() {
    const { start, end } = timeRange();
    const out = {};
    if (start !== undefined && !Number.isNaN(start))
        out.start = new Date(start).toISOString();
    if (end !== undefined && !Number.isNaN(end))
        out.end = new Date(end).toISOString();
    return out;
}
/// The query as typed.
function typed() {
    return input("q").value.trim();
}
/// The query sent: the typed one, narrowed to logs or to Kubernetes events by the selector.
function query() {
    const q = typed();
    const kind = select("kind").value;
    const filter = kind === "events" ? "stream:event" : kind === "logs" ? "-stream:event" : "";
    if (!filter)
        return q;
    return q ? `(${q}) ${filter}` : filter;
}
/// Keeps the query in the address bar, so the URL can be shared.
function saveUrl() {
    const params = new URLSearchParams();
    const q = typed();
    if (q)
        params.set("q", q);
    const kind = select("kind").value;
    if (kind !== "all")
        params.set("kind", kind);
    const range = select("range").value;
    params.set("range", range);
    if (range === "custom") {
        // ISO 8601 in UTC, whatever the zone the page shows.
        const { start, end } = timeRange();
        if (start !== undefined)
            params.set("start", new Date(start).toISOString());
        if (end !== undefined)
            params.set("end", new Date(end).toISOString());
    }
    if (utc())
        params.set("tz", "utc");
    history.replaceState(null, "", `?${params}${location.hash}`);
}
function loadUrl() {
    const params = new URLSearchParams(location.search);
    input("q").value = params.get("q") ?? "";
    const range = params.get("range");
    if (range)
        select("range").value = range;
    select("kind").value = params.get("kind") ?? "all";
    input("utc").checked = params.get("tz") === "utc";
    shownUtc = utc();
    showZone();
    const iso = (name) => {
        const ms = Date.parse(params.get(name) ?? "");
        return Number.isNaN(ms) ? "" : formatInput(ms, shownUtc);
    };
    input("start").value = iso("start");
    input("end").value = iso("end");
    $("custom-range").hidden = range !== "custom";
}
/// Times show in the browser's zone, or in UTC with the toggle; always 24-hour, the zone
/// shown beside the range. `shownUtc` is the zone the custom-range inputs are written in.
let shownUtc = false;
function utc() {
    return input("utc").checked;
}
function pad(n, width = 2) {
    return String(n).padStart(width, "0");
}
/// `YYYY-MM-DD HH:mm:ss` of `ms`, in UTC or the browser's zone.
function formatInput(ms, inUtc = utc()) {
    const d = new Date(ms);
    if (inUtc)
        return d.toISOString().slice(0, 19).replace("T", " ");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
/// `YYYY-MM-DD HH:mm[:ss]` (or with `T`) read in UTC or the browser's zone; `undefined` when
/// empty or not such a time.
function parseInput(text, inUtc) {
    const m = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?$/.exec(text.trim());
    if (!m)
        return undefined;
    const [y, mo, d, h, mi, sec] = m.slice(1).map((x) => Number(x ?? 0));
    return inUtc ? Date.UTC(y, mo - 1, d, h, mi, sec) : new Date(y, mo - 1, d, h, mi, sec).getTime();
}
/// `UTC`, or the browser's offset such as `UTC+08:00`.
function zoneName() {
    if (utc())
        return "UTC";
    const offset = -new Date().getTimezoneOffset();
    const abs = Math.abs(offset);
    return `UTC${offset >= 0 ? "+" : "-"}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}
function showZone() {
    $("zone").textContent = zoneName();
    $("zone").title = utc() ? "时间以 UTC 显示 Times are in UTC" : "时间以本地时区显示 Times are in your local zone";
}
/// A record's time in the zone shown, to the millisecond.
function shortTime(ts) {
    const ms = Date.parse(ts);
    if (Number.isNaN(ms))
        return ts;
    return `${formatInput(ms)}.${pad(new Date(ms).getUTCMilliseconds(), 3)}${utc() ? "Z" : ""}`;
}
function messageNode(hit) {
    const node = el("div", undefined, "message");
    const chars = Array.from(hit.message);
    let at = 0;
    for (const [start, end] of hit.highlights ?? []) {
        if (start > at)
            node.append(chars.slice(at, start).join(""));
        node.append(el("mark", chars.slice(start, end).join("")));
        at = end;
    }
    if (at < chars.length)
        node.append(chars.slice(at).join(""));
    return node;
}
function hitNode(hit, live = false) {
    const li = el("li");
    li.dataset.id = hit.id;
    if (live)
        li.classList.add("live");
    const meta = el("div", undefined, "meta");
    meta.append(el("time", shortTime(hit.ts)));
    for (const [name, value] of [
        ["cluster", hit.cluster],
        ["namespace", hit.namespace],
        ["pod", hit.pod],
        ["container", hit.container],
    ]) {
        if (value) {
            const badge = el("span", value, `badge ${name}`);
            badge.title = name;
            meta.append(badge);
        }
    }
    if (hit.level)
        meta.append(el("span", hit.level, `badge level level-${hit.level}`));
    if (hit.event)
        meta.append(...eventBadges(hit.event));
    for (const flag of hit.flags ?? [])
        meta.append(el("span", flag, "badge flag"));
    li.append(meta, messageNode(hit));
    li.addEventListener("click", () => void showContext(hit.id));
    return li;
}
/// An event's type, reason, object and which occurrence this is, as the hit's columns.
function eventBadges(e) {
    const badges = [];
    for (const [name, value] of [
        ["event-type", e.type],
        ["reason", e.reason],
        ["object", e.object],
    ]) {
        if (!value)
            continue;
        const badge = el("span", value, `badge ${name}${name === "event-type" ? ` event-${value}` : ""}`);
        badge.title = name;
        badges.push(badge);
    }
    const count = el("span", `×${e.count}`, "badge event-count");
    count.title = "第几次 occurrence (count)";
    badges.push(count);
    return badges;
}
let nextCursor;
let generation = 0;
/// Whether the current search was run with force, which its next pages need too.
let forced = false;
/// A query refused as too broad can be run anyway, once, from the error line.
function offerForce(message) {
    const box = $("error");
    box.textContent = message;
    if (!message.startsWith("query too broad"))
        return;
    const b = el("button", "仍然执行 Run anyway");
    b.type = "button";
    b.id = "force";
    b.addEventListener("click", () => void search(true));
    box.append(" ", b);
}
async function search(force = false) {
    const mine = ++generation;
    saveUrl();
    $("error").textContent = "";
    const params = { q: query(), ...rangeParams() };
    if (force)
        params.force = "true";
    forced = force;
    try {
        const [page, histogram, facets] = await Promise.all([
            api("/api/v1/search", { ...params, limit: "100" }),
            api("/api/v1/histogram", params),
            api("/api/v1/facets", params),
        ]);
        if (mine !== generation)
            return;
        const hits = $("hits");
        hits.replaceChildren(...page.hits.map((h) => hitNode(h)));
        nextCursor = page.next_cursor;
        $("more").hidden = !nextCursor;
        const fresh = page.touched.watermark ? ` · 数据完整至 complete to ${shortTime(page.touched.watermark)}` : "";
        $("status").textContent = `${page.total} 条命中 hits · ${page.took_ms} ms${fresh}${tail ? " · 实时 live" : ""}`;
        $("status").dataset.total = String(page.total);
        delete $("status").dataset.failed;
        drawHistogram(histogram);
        drawFacets(facets);
    }
    catch (e) {
        if (mine !== generation)
            return;
        // Nothing on screen may look like the answer to a query that has none.
        clearResults();
        if (!(e instanceof Unauthorized))
            offerForce(String(e.message));
    }
}
function clearResults() {
    $("hits").replaceChildren();
    nextCursor = undefined;
    $("more").hidden = true;
    $("status").textContent = "";
    delete $("status").dataset.total;
    $("status").dataset.failed = "true";
    $("histogram").replaceChildren();
    $("facets").replaceChildren();
}
async function more() {
    if (!nextCursor)
        return;
    const params = { q: query(), ...rangeParams(), limit: "100", cursor: nextCursor };
    if (forced)
        params.force = "true";
    const page = await api("/api/v1/search", params);
    $("hits").append(...page.hits.map((h) => hitNode(h)));
    nextCursor = page.next_cursor;
    $("more").hidden = !nextCursor;
}
const SVG = "http://www.w3.org/2000/svg";
/// The bars' height; the time axis is drawn below them.
const BARS_HEIGHT = 120;
const AXIS_HEIGHT = 18;
function drawHistogram(h) {
    const svg = $("histogram");
    svg.replaceChildren();
    svg.dataset.total = String(h.total);
    if (!h.buckets.length || !h.start || !h.end)
        return;
    const width = svg.clientWidth || 800;
    let buckets = h.buckets;
    let start = Date.parse(h.start);
    let end = Date.parse(h.end);
    if (select("range").value === "all") {
        // "All time" spans the whole index; fit it to where this query's records are.
        const first = buckets.findIndex((b) => b.total > 0);
        if (first >= 0) {
            let last = buckets.length - 1;
            while (buckets[last].total === 0)
                last--;
            buckets = buckets.slice(first, last + 1);
            start = Date.parse(buckets[0].ts);
            end = Date.parse(buckets[buckets.length - 1].ts) + h.interval_ms;
        }
    }
    svg.dataset.start = String(start);
    svg.dataset.end = String(end);
    const max = Math.max(1, ...buckets.map((b) => b.total));
    const barWidth = width / buckets.length;
    buckets.forEach((bucket, i) => {
        let y = BARS_HEIGHT;
        const series = bucket.counts && Object.keys(bucket.counts).length ? bucket.counts : { "": bucket.total };
        for (const level of Object.keys(LEVEL_COLORS).filter((l) => l in series).concat(Object.keys(series).filter((l) => !(l in LEVEL_COLORS)))) {
            const h2 = (series[level] / max) * (BARS_HEIGHT - 10);
            y -= h2;
            const rect = document.createElementNS(SVG, "rect");
            rect.setAttribute("x", String(i * barWidth));
            rect.setAttribute("y", String(y));
            rect.setAttribute("width", String(Math.max(1, barWidth - 1)));
            rect.setAttribute("height", String(h2));
            rect.setAttribute("fill", LEVEL_COLORS[level] ?? "#667085");
            const title = document.createElementNS(SVG, "title");
            title.textContent = `${shortTime(bucket.ts)} ${level || "-"}: ${series[level]}`;
            rect.append(title);
            svg.append(rect);
        }
    });
    drawAxis(svg, start, end, width);
}
/// Six labelled ticks along the bottom, in the zone shown, 24-hour: the date too when the span
/// crosses days, seconds when it is short.
function drawAxis(svg, start, end, width) {
    const span = end - start;
    const label = (ms) => {
        const full = formatInput(ms);
        if (span < 10 * 60000)
            return full.slice(11);
        return formatInput(start).slice(0, 10) === formatInput(end - 1).slice(0, 10) ? full.slice(11, 16) : full.slice(5, 16);
    };
    const ticks = 5;
    for (let i = 0; i <= ticks; i++) {
        const x = (i / ticks) * width;
        const line = document.createElementNS(SVG, "line");
        line.setAttribute("x1", String(x));
        line.setAttribute("x2", String(x));
        line.setAttribute("y1", String(BARS_HEIGHT));
        line.setAttribute("y2", String(BARS_HEIGHT + 4));
        line.setAttribute("stroke", "#98a2b3");
        const text = document.createElementNS(SVG, "text");
        text.setAttribute("class", "tick");
        text.setAttribute("x", String(x));
        text.setAttribute("y", String(BARS_HEIGHT + AXIS_HEIGHT - 3));
        text.setAttribute("text-anchor", i === 0 ? "start" : i === ticks ? "end" : "middle");
        text.textContent = label(start + (i / ticks) * span);
        svg.append(line, text);
    }
}
/// Click-drag on the histogram zooms to the dragged span.
function enableZoom() {
    const svg = $("histogram");
    let from;
    let band;
    const x = (e) => e.clientX - svg.getBoundingClientRect().left;
    svg.addEventListener("mousedown", (e) => {
        from = x(e);
        band = document.createElementNS(SVG, "rect");
        band.setAttribute("y", "0");
        band.setAttribute("height", String(BARS_HEIGHT));
        band.setAttribute("fill", "rgba(46,144,250,.2)");
        svg.append(band);
    });
    svg.addEventListener("mousemove", (e) => {
        if (from === undefined || !band)
            return;
        band.setAttribute("x", String(Math.min(from, x(e))));
        band.setAttribute("width", String(Math.abs(x(e) - from)));
    });
    window.addEventListener("mouseup", (e) => {
        if (from === undefined)
            return;
        const to = x(e);
        const a = from;
        from = undefined;
        const start = Number(svg.dataset.start);
        const end = Number(svg.dataset.end);
        if (Math.abs(to - a) < 3 || !start || !end) {
            band?.remove();
            return;
        }
        const width = svg.clientWidth || 800;
        const at = (px) => start + (Math.max(0, Math.min(width, px)) / width) * (end - start);
        select("range").value = "custom";
        $("custom-range").hidden = false;
        shownUtc = utc();
        input("start").value = formatInput(at(Math.min(a, to)));
        input("end").value = formatInput(at(Math.max(a, to)) + 1000);
        void search();
    });
}
function drawFacets(f) {
    const box = $("facets");
    box.replaceChildren();
    const names = {
        namespace: "命名空间 Namespace",
        pod: "Pod",
        container: "容器 Container",
        level: "级别 Level",
    };
    const narrow = (term) => {
        input("q").value = typed() ? `${typed()} ${term}` : term;
        void search();
    };
    for (const facet of f.facets) {
        box.append(el("h3", names[facet.field] ?? facet.field));
        for (const v of facet.values) {
            const b = el("button");
            b.type = "button";
            b.dataset.field = facet.field;
            b.dataset.value = v.value;
            b.append(el("span", v.value), el("span", String(v.count), "count"));
            b.addEventListener("click", () => narrow(`${facet.field}:"${v.value.replace(/"/g, '\\"')}"`));
            box.append(b);
        }
        // The rest, so a facet adds up to the total: values beyond the top ones, and records
        // with no value at all (which `-field:*` selects).
        if (facet.other > 0) {
            const rest = el("div", undefined, "facet-other");
            rest.dataset.field = facet.field;
            rest.append(el("span", "(其他 other values)"), el("span", String(facet.other), "count"));
            box.append(rest);
        }
        if (facet.missing > 0) {
            const b = el("button", undefined, "facet-none");
            b.type = "button";
            b.dataset.field = facet.field;
            b.dataset.missing = "true";
            b.title = `-${facet.field}:*`;
            b.append(el("span", "(无 none)"), el("span", String(facet.missing), "count"));
            b.addEventListener("click", () => narrow(`-${facet.field}:*`));
            box.append(b);
        }
    }
}
async function showContext(id) {
    stopFollow();
    try {
        const c = await api("/api/v1/context", { id, before: "20", after: "20" });
        const panel = $("context");
        panel.hidden = false;
        const details = $("pod-details");
        details.replaceChildren();
        // An event's context is its repeat history: its other occurrences, in order.
        const event = c.hit.event;
        $("context-title").textContent = event ? "重复历史 Repeat history" : "上下文 Context";
        const eventRows = event
            ? [
                ["reason", event.reason],
                ["type", event.type],
                ["object", event.object],
                ["reporter", event.reporter],
                ["count", String(event.count)],
                ["first seen", event.first_seen ? shortTime(event.first_seen) : ""],
                ["last seen", event.last_seen ? shortTime(event.last_seen) : ""],
            ]
            : [];
        for (const [name, value] of [
            ...eventRows,
            ["cluster", c.hit.cluster],
            ["namespace", c.hit.namespace],
            ["pod", c.hit.pod],
            ["container", c.hit.container],
            ["node", c.hit.node],
            ["owner", c.hit.owner ?? ""],
            ["labels", Object.entries(c.hit.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(", ")],
            ["stream", c.hit.stream],
            ["file", c.hit.file],
            ["id", c.hit.id],
        ]) {
            details.append(el("dt", name), el("dd", value || "-"));
        }
        const lines = $("context-lines");
        lines.replaceChildren(...c.before.map((h) => contextLine(h)), contextLine(c.hit, "target"), ...c.after.map((h) => contextLine(h)));
        // Scrolls the panel, not the page, so the hit list stays where the user was.
        const target = lines.querySelector(".target");
        if (target)
            panel.scrollTop = target.offsetTop - panel.clientHeight / 2;
        panel.dataset.liveQuery = c.live_query;
    }
    catch (e) {
        if (!(e instanceof Unauthorized))
            $("error").textContent = String(e.message);
    }
}
function contextLine(hit, cls) {
    const li = el("li", undefined, cls);
    li.dataset.id = hit.id;
    li.append(el("time", shortTime(hit.ts)), " ");
    if (hit.event)
        li.append(el("span", `×${hit.event.count}`, "badge event-count"), " ");
    li.append(messageNode(hit));
    return li;
}
/// Reads a Server-Sent Events stream with fetch, which, unlike EventSource, can send the
/// Authorization header.
async function follow(q, signal, onHit) {
    const response = await fetch("/api/v1/tail", {
        method: "POST",
        headers: authHeaders(),
        body: new URLSearchParams({ q }),
        signal,
    });
    if (response.status === 401) {
        showLogin("需要有效令牌 A valid token is required");
        return;
    }
    if (!response.ok || !response.body) {
        const body = await response.json().catch(() => ({ error: response.statusText }));
        throw new Error(body.error ?? response.statusText);
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
        const { value, done } = await reader.read();
        if (done)
            return;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            let event = "message";
            const data = [];
            for (const line of block.split("\n")) {
                if (line.startsWith("event:"))
                    event = line.slice(6).trim();
                else if (line.startsWith("data:"))
                    data.push(line.slice(5).trimStart());
            }
            if (event === "hit" && data.length)
                onHit(JSON.parse(data.join("\n")));
        }
    }
}
let tail;
let followContext;
/// Ends "continue live from here": the context panel's own follow, apart from the live tail.
function stopFollow() {
    followContext?.abort();
    followContext = undefined;
    delete $("context").dataset.following;
    $("follow").textContent = "从这里实时跟踪 Continue live from here";
}
/// How often, at most, the histogram and facets are asked again while live hits arrive.
const LIVE_REFRESH_MS = 1000;
let liveRefresh;
function showTotal(total) {
    $("status").dataset.total = String(total);
    $("status").textContent = `${total} 条命中 hits${tail ? " · 实时 live" : ""}`;
}
/// Asks the histogram and facets again soon, so they follow the live hits; again, less and
/// less often, while the index has not caught up with the hits the tail showed (the tail sees
/// records before the index commits them).
function refreshSoon(delay = LIVE_REFRESH_MS) {
    if (liveRefresh !== undefined)
        return;
    const mine = generation;
    liveRefresh = window.setTimeout(async () => {
        liveRefresh = undefined;
        const params = { q: query(), ...rangeParams() };
        if (forced)
            params.force = "true";
        try {
            const [histogram, facets] = await Promise.all([
                api("/api/v1/histogram", params),
                api("/api/v1/facets", params),
            ]);
            if (mine !== generation || !tail)
                return;
            drawHistogram(histogram);
            drawFacets(facets);
            if (histogram.total < Number($("status").dataset.total ?? "0"))
                refreshSoon(Math.min(delay * 2, 10000));
        }
        catch {
            // The next live hit asks again.
        }
    }, delay);
}
function stopTail() {
    tail?.abort();
    tail = undefined;
    input("live").checked = false;
    const total = $("status").dataset.total;
    if (total !== undefined)
        showTotal(Number(total));
}
function startTail() {
    stopTail();
    tail = new AbortController();
    input("live").checked = true;
    const hits = $("hits");
    showTotal(Number($("status").dataset.total ?? "0"));
    follow(query(), tail.signal, (hit) => {
        hits.prepend(hitNode(hit, true));
        showTotal(Number($("status").dataset.total ?? "0") + 1);
        refreshSoon();
    }).catch((e) => {
        if (e.name !== "AbortError")
            $("error").textContent = String(e.message);
    });
}
async function exportAll() {
    const format = select("export-format").value;
    const params = new URLSearchParams({ q: query(), ...rangeParams(), format });
    const response = await fetch("/api/v1/export", {
        method: "POST",
        headers: authHeaders(),
        body: params,
    });
    if (response.status === 401) {
        showLogin("需要有效令牌 A valid token is required");
        return;
    }
    if (!response.ok) {
        const body = await response.json().catch(() => ({ error: response.statusText }));
        $("error").textContent = body.error ?? response.statusText;
        return;
    }
    const url = URL.createObjectURL(await response.blob());
    const a = el("a");
    a.href = url;
    a.download = `sluice-export.${format}`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
}
function init() {
    loadUrl();
    if (sessionStorage.getItem(TOKEN_KEY))
        $("logout").hidden = false;
    $("search").addEventListener("submit", (e) => {
        e.preventDefault();
        void search();
        if (input("live").checked)
            startTail();
    });
    $("kind").addEventListener("change", () => void search());
    $("utc").addEventListener("change", () => {
        // The custom range stays the same instants, written in the new zone.
        for (const id of ["start", "end"]) {
            const ms = parseInput(input(id).value, shownUtc);
            if (ms !== undefined)
                input(id).value = formatInput(ms);
        }
        shownUtc = utc();
        showZone();
        void search();
    });
    $("range").addEventListener("change", () => {
        $("custom-range").hidden = select("range").value !== "custom";
        void search();
    });
    $("login").addEventListener("submit", (e) => {
        e.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, input("token").value.trim());
        input("token").value = "";
        $("login").hidden = true;
        $("logout").hidden = false;
        void search();
        reloadAlerts();
        void reloadDashboards().catch(() => undefined);
    });
    $("logout").addEventListener("click", () => {
        sessionStorage.removeItem(TOKEN_KEY);
        stopTail();
        $("hits").replaceChildren();
        $("alerts").hidden = true;
        $("alerts-toggle").hidden = true;
        $("dashboards").hidden = true;
        $("dashboards-toggle").hidden = true;
        showLogin("");
    });
    $("live").addEventListener("change", () => (input("live").checked ? startTail() : stopTail()));
    $("more").addEventListener("click", () => void more());
    $("export").addEventListener("click", () => void exportAll());
    $("close-context").addEventListener("click", () => {
        stopFollow();
        $("context").hidden = true;
    });
    $("follow").addEventListener("click", () => {
        if (followContext) {
            stopFollow();
            return;
        }
        followContext = new AbortController();
        $("context").dataset.following = "true";
        $("follow").textContent = "停止跟踪 Stop following";
        const lines = $("context-lines");
        follow($("context").dataset.liveQuery ?? "", followContext.signal, (hit) => {
            lines.append(contextLine(hit, "live"));
        }).catch(() => undefined);
    });
    enableZoom();
    initAlerts(formatInput, () => showLogin("需要有效令牌 A valid token is required"));
    initDashboards(() => showLogin("需要有效令牌 A valid token is required"));
    void search();
}
init();
