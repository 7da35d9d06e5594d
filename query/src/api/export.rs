//! `GET /api/v1/export`: every match, streamed as NDJSON or CSV, optionally gzip-compressed;
//! no cap on size. Pages of hits are read with the cursor from one pinned snapshot of the
//! index, so an export is consistent as of its start however long it runs.

use std::io::Write;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{ApiError, ApiState, Caller, Params, parse_order, times};
use crate::QueryError;
use crate::search::{Cursor, Hit};

const PAGE: usize = 2_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExportParams {
    #[serde(default)]
    q: String,
    start: Option<String>,
    end: Option<String>,
    /// `ndjson` (default) or `csv`.
    format: Option<String>,
    /// `true`: a `.gz` file (`application/gzip`); otherwise gzip only as a transfer encoding
    /// when the client sends `Accept-Encoding: gzip`.
    gzip: Option<bool>,
    order: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Ndjson,
    Csv,
}

const CSV_HEADER: [&str; 11] = [
    "ts",
    "cluster",
    "namespace",
    "pod",
    "container",
    "node",
    "stream",
    "level",
    "file",
    "id",
    "message",
];

fn csv_rows(hits: &[Hit], header: bool) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    if header {
        let _ = writer.write_record(CSV_HEADER);
    }
    for h in hits {
        let _ = writer.write_record([
            &h.ts,
            &h.cluster,
            &h.namespace,
            &h.pod,
            &h.container,
            &h.node,
            &h.stream,
            &h.level,
            &h.file,
            &h.id,
            &h.message,
        ]);
    }
    writer.into_inner().unwrap_or_default()
}

fn ndjson_rows(hits: &[Hit]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hits.len() * 256);
    for h in hits {
        serde_json::to_writer(&mut out, h).expect("a hit serialises");
        out.push(b'\n');
    }
    out
}

pub(super) async fn export(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Params(params): Params<ExportParams>,
) -> Result<Response, ApiError> {
    let (start_ns, end_ns) = times(params.start.as_deref(), params.end.as_deref())?;
    let format = match params.format.as_deref() {
        None | Some("ndjson") => Format::Ndjson,
        Some("csv") => Format::Csv,
        Some(other) => {
            return Err(QueryError::Parameter {
                name: "format",
                reason: format!("{other:?} is neither ndjson nor csv"),
            }
            .into());
        }
    };
    let order = parse_order(params.order.as_deref())?;
    let file_gzip = params.gzip.unwrap_or(false);
    let accepts_gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let gzip = file_gzip || accepts_gzip;
    let export_turn = state.exports.enter().await?;
    let store = state.store.clone();
    let scope = caller.scope();
    let query = params.q;
    let (prepared, first, total) = {
        let store = store.clone();
        state
            .admission
            .run(move || {
                let prepared = store.prepare(&query, start_ns, end_ns, &scope)?;
                let (first, total) = store.top(&prepared, PAGE, order, None, true)?;
                Ok((prepared, first, total))
            })
            .await?
    };

    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let admission = state.admission.clone();
    tokio::task::spawn_blocking(move || {
        let _export_turn = export_turn;
        let mut gz = gzip.then(|| GzEncoder::new(Vec::new(), Compression::fast()));
        let send = |bytes: Vec<u8>, gz: &mut Option<GzEncoder<Vec<u8>>>| -> bool {
            let chunk = match gz {
                Some(encoder) => {
                    if encoder.write_all(&bytes).is_err() {
                        return false;
                    }
                    std::mem::take(encoder.get_mut())
                }
                None => bytes,
            };
            chunk.is_empty() || tx.blocking_send(Ok(Bytes::from(chunk))).is_ok()
        };
        let mut page = first;
        let mut header = format == Format::Csv;
        loop {
            let hits: Vec<Hit> = page.iter().map(|(_, h)| h.clone()).collect();
            let rows = match format {
                Format::Ndjson => ndjson_rows(&hits),
                Format::Csv => csv_rows(&hits, std::mem::take(&mut header)),
            };
            if !send(rows, &mut gz) {
                return; // The client went away.
            }
            let Some((last, _)) = page.last() else { break };
            if page.len() < PAGE {
                break;
            }
            let turn = admission.page_turn();
            let next = store.top(&prepared, PAGE, order, Some(Cursor(*last)), false);
            drop(turn);
            match next {
                Ok((next, _)) => page = next,
                Err(e) => {
                    tracing::error!(error = %e, "export failed part way; the response is cut short");
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            }
        }
        if let Some(encoder) = gz
            && let Ok(rest) = encoder.finish()
            && !rest.is_empty()
        {
            let _ = tx.blocking_send(Ok(Bytes::from(rest)));
        }
    });

    let mut response = Body::from_stream(ReceiverStream::new(rx)).into_response();
    let h = response.headers_mut();
    let (content_type, extension) = match format {
        Format::Ndjson => ("application/x-ndjson", "ndjson"),
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    h.insert("x-sluice-total", HeaderValue::from(total));
    if file_gzip {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/gzip"));
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_str(&format!(
                "attachment; filename=\"sluice-export.{extension}.gz\""
            ))
            .expect("ascii header"),
        );
    } else {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_str(&format!("attachment; filename=\"sluice-export.{extension}\""))
                .expect("ascii header"),
        );
        if gzip {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
    }
    Ok(response)
}
