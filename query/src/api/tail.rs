//! `GET /api/v1/tail`: a live stream (Server-Sent Events) of new records matching a query.
//!
//! Each event `hit` carries one record as JSON; a comment line every 15 s keeps proxies from
//! closing an idle stream. The stream follows the store's commits (see [`crate::tail`]), so
//! a record is sent once, when it becomes searchable.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{ApiError, ApiState, Caller, Params};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TailParams {
    #[serde(default)]
    q: String,
}

pub(super) async fn tail(
    State(state): State<ApiState>,
    caller: Caller,
    Params(params): Params<TailParams>,
) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let scope = caller.scope();
    // Checked before the stream opens, so a bad query is a 400 rather than a silent stream.
    {
        let (store, scope, q) = (store.clone(), scope.clone(), params.q.clone());
        state.admission.run(move || store.prepare(&q, None, None, &scope).map(|_| ())).await?;
    }
    let mut commits = store.subscribe_commits();
    let mut seen = *commits.borrow_and_update();
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(256);
    let ready = Event::default().event("ready").data(format!("{{\"seq\":{seen}}}"));
    let _ = tx.send(Ok(ready)).await;
    let admission = state.admission.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = commits.changed() => if changed.is_err() { return },
                () = tx.closed() => return,
            }
            let upto = *commits.borrow_and_update();
            let mut cursor = None;
            loop {
                let (store, scope, q) = (store.clone(), scope.clone(), params.q.clone());
                let admission = admission.clone();
                let page = match tokio::task::spawn_blocking(move || {
                    let _turn = admission.page_turn();
                    store.tail_page(&q, &scope, seen, upto, cursor)
                })
                .await
                {
                    Ok(Ok(page)) => page,
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "live tail failed; closing the stream");
                        return;
                    }
                    Err(_) => return,
                };
                let full = page.len() == crate::tail::PAGE;
                for (key, hit) in page {
                    cursor = Some(key);
                    let event =
                        Event::default().event("hit").json_data(&hit).expect("a hit serialises");
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                if !full {
                    break;
                }
            }
            seen = upto;
        }
    });
    Ok(Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}
