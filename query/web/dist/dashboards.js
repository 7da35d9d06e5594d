// The dashboards panel: the built-in dashboards and those of `--dashboards`, drawn with live
// numbers. Log panels ask the search API (so a user limited to some namespaces sees only
// theirs), metric panels the server's Prometheus proxy. The dashboard, time range and
// variables live in the URL: `#dashboard=<name>&range=1h&var-<name>=<value>`.
import { $, authHeaders, el, select } from "./page.js";
const RANGES = ["15m", "1h", "6h", "24h", "7d"];
const SVG = "http://www.w3.org/2000/svg";
/// What a `$variable` becomes when "all" is chosen: any value, or none at all.
const ALL = "";
let current;
let timer;
let unauthorized = () => undefined;
async function getJson(path) {
    const response = await fetch(path, { headers: authHeaders() });
    if (response.status === 401)
        unauthorized();
    const answer = await response.json().catch(() => ({ error: response.statusText }));
    if (!response.ok)
        throw new Error(answer.error ?? response.statusText);
    return answer;
}
function hashParams() {
    return new URLSearchParams(location.hash.replace(/^#/, ""));
}
function setHash(params) {
    const url = new URL(location.href);
    url.hash = params.toString();
    history.replaceState(null, "", url);
}
function durationMs(text) {
    const m = /^(\d+)\s*(s|m|h|d)$/.exec(text.trim());
    if (!m)
        return 3600000;
    const unit = { s: 1000, m: 60000, h: 3600000, d: 86400000 }[m[2]];
    return Number(m[1]) * unit;
}
function chosen(v) {
    const raw = hashParams().getAll(`var-${v.name}`).filter((x) => x !== ALL);
    if (raw.length)
        return v.multi ? raw : raw.slice(0, 1);
    return v.field ? [] : (v.values ?? []).slice(0, 1);
}
/// A log query with its variables bound: `field:$v` becomes the chosen values, or, for all,
/// any value or none (`field:* OR -field:*`), so records without the field still count.
function bindLog(query, view) {
    let q = query;
    for (const v of view.variables) {
        const values = chosen(v);
        const pattern = new RegExp(`([\\w.]+):\\$(?:\\{${v.name}\\}|${v.name}\\b)`, "g");
        q = q.replace(pattern, (_, field) => values.length
            ? `(${values.map((x) => `${field}:${JSON.stringify(x)}`).join(" OR ")})`
            : `(${field}:* OR -${field}:*)`);
        q = q.replace(new RegExp(`\\$(?:\\{${v.name}\\}|${v.name}\\b)`, "g"), values.join(" "));
    }
    return q;
}
/// PromQL with its variables bound as Grafana does: all is `.*`, several are `a|b`.
function bindPromql(expr, view) {
    let e = expr;
    for (const v of view.variables) {
        const values = chosen(v);
        e = e.replace(new RegExp(`\\$(?:\\{${v.name}\\}|${v.name}\\b)`, "g"), values.length ? values.join("|") : ".*");
    }
    return e;
}
function range() {
    const endMs = Date.now();
    const span = durationMs(hashParams().get("range") ?? current?.time ?? "1h");
    return { startMs: endMs - span, endMs };
}
function searchParams(q, extra) {
    const { startMs, endMs } = range();
    const p = new URLSearchParams({
        q,
        start: new Date(startMs).toISOString(),
        end: new Date(endMs).toISOString(),
        ...extra,
    });
    return p.toString();
}
function bars(counts) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${Math.max(counts.length, 1)} 100`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.classList.add("chart");
    const top = Math.max(1, ...counts);
    counts.forEach((c, i) => {
        const r = document.createElementNS(SVG, "rect");
        const h = (c / top) * 100;
        r.setAttribute("x", String(i + 0.1));
        r.setAttribute("width", "0.8");
        r.setAttribute("y", String(100 - h));
        r.setAttribute("height", String(h));
        svg.append(r);
    });
    return svg;
}
function line(points) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 100 100");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.classList.add("chart");
    if (points.length > 1) {
        const xs = points.map((p) => p[0]);
        const ys = points.map((p) => p[1]);
        const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
        const [y0, y1] = [Math.min(0, ...ys), Math.max(...ys)];
        const poly = document.createElementNS(SVG, "polyline");
        poly.setAttribute("points", points
            .map(([x, y]) => `${((x - x0) / (x1 - x0 || 1)) * 100},${100 - ((y - y0) / (y1 - y0 || 1)) * 100}`)
            .join(" "));
        svg.append(poly);
    }
    return svg;
}
function number(n) {
    return Number.isInteger(n) ? n.toLocaleString("en-US") : n.toPrecision(4);
}
async function drawPanel(p, view, body) {
    const q = bindLog(p.query ?? "", view);
    switch (p.type) {
        case "volume":
        case "errors": {
            const query = p.type === "errors" ? (q ? `(${q}) AND level:error` : "level:error") : q;
            const h = await getJson(`/api/v1/histogram?${searchParams(query, { split: p.type === "volume" ? "level" : "" })}`);
            const totals = {};
            for (const b of h.buckets)
                for (const [k, n] of Object.entries(b.counts ?? {}))
                    totals[k || "-"] = (totals[k || "-"] ?? 0) + n;
            body.append(el("strong", number(h.total), "total"), bars(h.buckets.map((b) => b.total)));
            const legend = el("ul", undefined, "legend");
            for (const [k, n] of Object.entries(totals).sort((a, b) => b[1] - a[1]))
                legend.append(el("li", `${k}: ${number(n)}`));
            body.append(legend);
            body.dataset.value = String(h.total);
            break;
        }
        case "top": {
            const field = p.field ?? "namespace";
            const f = await getJson(`/api/v1/facets?${searchParams(q, { fields: field, size: String(p.limit ?? 10) })}`);
            const table = el("table", undefined, "top");
            for (const v of f.facets[0]?.values ?? []) {
                const tr = el("tr");
                tr.append(el("td", v.value || "-"), el("td", number(v.count), "count"));
                table.append(tr);
            }
            body.append(table);
            body.dataset.value = String(f.facets[0]?.values.length ?? 0);
            break;
        }
        case "logs":
        case "events": {
            const query = p.type === "events" ? (q ? `(${q}) AND reason:*` : "reason:*") : q;
            const s = await getJson(`/api/v1/search?${searchParams(query, { limit: String(p.limit ?? 100) })}`);
            const list = el("ol", undefined, "lines");
            for (const hit of s.hits) {
                const li = el("li");
                li.append(el("time", hit.ts.replace("T", " ").slice(0, 19)), el("span", ` ${hit.namespace} `, "ns"), el("span", hit.message));
                list.append(li);
            }
            body.append(list);
            body.dataset.value = String(s.hits.length);
            break;
        }
        case "metric": {
            if (!view.prometheus) {
                body.append(el("p", "未配置 Prometheus — start with --prometheus-url", "note"));
                break;
            }
            const { startMs, endMs } = range();
            const step = Math.max(1, Math.round((endMs - startMs) / 1000 / 120));
            const params = new URLSearchParams({
                // Grafana's built-in interval variables, as it defines them for a 15 s scrape.
                query: bindPromql(p.promql ?? "", view)
                    .replace(/\$__rate_interval/g, `${Math.max(step * 4, 60)}s`)
                    .replace(/\$__interval/g, `${step}s`)
                    .replace(/\$__range/g, `${Math.round((endMs - startMs) / 1000)}s`),
                start: String(startMs / 1000),
                end: String(endMs / 1000),
                step: String(step),
            });
            const answer = await getJson(`/api/v1/dashboards/query_range?${params}`);
            const series = answer.data.result;
            const legend = el("ul", undefined, "legend");
            for (const s of series) {
                const name = (p.legend ?? "")
                    .replace(/\{\{\s*(\w+)\s*\}\}/g, (_, l) => s.metric[l] ?? "")
                    .trim() || JSON.stringify(s.metric);
                const last = Number(s.values[s.values.length - 1]?.[1] ?? "NaN");
                const li = el("li");
                li.append(el("span", `${name}: `), el("span", number(last), "value"));
                legend.append(li);
            }
            const first = series[0];
            if (first)
                body.append(line(first.values.map(([t, v]) => [t, Number(v)])));
            else
                body.append(el("p", "无数据 No data", "note"));
            body.append(legend);
            body.dataset.value = String(series.length);
            break;
        }
        case "markdown":
            body.append(el("pre", p.content ?? "", "markdown"));
            break;
    }
}
async function draw() {
    const view = current;
    if (!view)
        return;
    $("dashboards-error").textContent = "";
    const root = $("dashboard-body");
    const rows = view.rows.map((row) => {
        const section = el("section", undefined, "dash-row");
        section.append(el("h3", row.title));
        const panels = el("div", undefined, "dash-panels");
        const free = row.panels.filter((p) => p.width === null).length;
        const fixed = row.panels.reduce((n, p) => n + (p.width ?? 0), 0);
        for (const p of row.panels) {
            const box = el("div", undefined, "dash-panel");
            box.dataset.type = p.type;
            box.style.flexBasis = `${((p.width ?? Math.max(1, (24 - fixed) / Math.max(free, 1))) / 24) * 100}%`;
            box.append(el("h4", p.title || p.type));
            const body = el("div", undefined, "panel-body");
            box.append(body);
            panels.append(box);
            drawPanel(p, view, body)
                .then(() => (box.dataset.loaded = "true"))
                .catch((e) => {
                body.append(el("p", e.message, "error"));
                box.dataset.loaded = "error";
            });
        }
        section.append(panels);
        return section;
    });
    root.replaceChildren(...rows);
    root.dataset.name = view.name;
}
async function open(name) {
    current = await getJson(`/api/v1/dashboards/${encodeURIComponent(name)}`);
    const params = hashParams();
    params.set("dashboard", name);
    setHash(params);
    select("dashboard-select").value = name;
    const rangeSelect = select("dashboard-range");
    rangeSelect.value = params.get("range") ?? current.time;
    if (rangeSelect.value === "") {
        rangeSelect.append(el("option", current.time));
        rangeSelect.value = current.time;
    }
    await drawVariables(current);
    if (timer !== undefined)
        clearInterval(timer);
    timer = current.refresh ? window.setInterval(() => void draw(), durationMs(current.refresh)) : undefined;
    await draw();
}
async function drawVariables(view) {
    const box = $("dashboard-vars");
    box.replaceChildren();
    for (const v of view.variables) {
        const s = el("select");
        s.id = `var-${v.name}`;
        s.multiple = v.multi;
        if (v.field) {
            const all = el("option", "全部 All");
            all.value = ALL;
            s.append(all);
        }
        let values = v.values ?? [];
        if (v.field) {
            const f = await getJson(`/api/v1/facets?${searchParams("", { fields: v.field, size: "100" })}`).catch(() => ({ facets: [] }));
            values = (f.facets[0]?.values ?? []).map((x) => x.value).filter((x) => x);
        }
        for (const value of values)
            s.append(el("option", value));
        const picked = chosen(v);
        for (const o of Array.from(s.options))
            o.selected = picked.includes(o.value) || (!picked.length && o.value === ALL);
        s.addEventListener("change", () => {
            const params = hashParams();
            params.delete(`var-${v.name}`);
            for (const o of Array.from(s.selectedOptions))
                if (o.value !== ALL)
                    params.append(`var-${v.name}`, o.value);
            setHash(params);
            void draw();
        });
        const label = el("label", `${v.label} `);
        label.append(s);
        box.append(label);
    }
}
function show(visible) {
    $("dashboards").hidden = !visible;
    if (!visible) {
        if (timer !== undefined)
            clearInterval(timer);
        setHash(new URLSearchParams());
        return;
    }
    const name = hashParams().get("dashboard") ?? select("dashboard-select").value;
    if (name)
        void open(name).catch((e) => ($("dashboards-error").textContent = e.message));
}
/// After signing in: the list can now be read.
export async function reloadDashboards() {
    const { dashboards } = await getJson("/api/v1/dashboards");
    const s = select("dashboard-select");
    s.replaceChildren(...dashboards.map((d) => {
        const o = el("option", d.title);
        o.value = d.name;
        return o;
    }));
    $("dashboards-toggle").hidden = false;
    if (hashParams().has("dashboard"))
        show(true);
}
export function initDashboards(onUnauthorized) {
    unauthorized = onUnauthorized;
    const r = select("dashboard-range");
    r.replaceChildren(...RANGES.map((x) => el("option", x)));
    $("dashboards-toggle").addEventListener("click", () => show($("dashboards").hidden));
    select("dashboard-select").addEventListener("change", () => {
        setHash(new URLSearchParams());
        void open(select("dashboard-select").value).catch((e) => ($("dashboards-error").textContent = e.message));
    });
    r.addEventListener("change", () => {
        const params = hashParams();
        params.set("range", r.value);
        setHash(params);
        void draw();
    });
    $("dashboard-refresh").addEventListener("click", () => void draw());
    void reloadDashboards().catch(() => undefined);
}
