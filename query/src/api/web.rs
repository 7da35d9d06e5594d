//! The search page, embedded in the binary: `query/web/` holds its HTML, CSS and TypeScript
//! (compiled by `npm run build` into `query/web/dist/*.js` — the search in `app.js`, the alerts
//! panel in `alerts.js`, what both use in `page.js` — committed so that a
//! Rust build needs no Node.js; `scripts/test` checks it is current).

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX: &str = include_str!("../../web/index.html");
const APP: &str = include_str!("../../web/dist/app.js");
const PAGE: &str = include_str!("../../web/dist/page.js");
const ALERTS: &str = include_str!("../../web/dist/alerts.js");
const DASHBOARDS: &str = include_str!("../../web/dist/dashboards.js");
const STYLE: &str = include_str!("../../web/style.css");
const ICON: &str = include_str!("../../web/favicon.svg");

/// `/` and its assets; they carry no data, so they need no token (the API calls do).
pub(super) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let asset = |content_type: &'static str, body: &'static str| {
        move || async move {
            ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body)
                .into_response()
        }
    };
    Router::new()
        .route("/", get(asset("text/html; charset=utf-8", INDEX)))
        .route("/assets/app.js", get(asset("text/javascript; charset=utf-8", APP)))
        .route("/assets/page.js", get(asset("text/javascript; charset=utf-8", PAGE)))
        .route("/assets/alerts.js", get(asset("text/javascript; charset=utf-8", ALERTS)))
        .route("/assets/dashboards.js", get(asset("text/javascript; charset=utf-8", DASHBOARDS)))
        .route("/assets/style.css", get(asset("text/css; charset=utf-8", STYLE)))
        // Browsers ask for `/favicon.ico` on their own; an SVG answers both.
        .route("/assets/favicon.svg", get(asset("image/svg+xml", ICON)))
        .route("/favicon.ico", get(asset("image/svg+xml", ICON)))
}
