//! How many requests the store works on at once, and how many may wait for a turn.
//!
//! A search, histogram or facets request over a large index takes CPU and memory in proportion
//! to what it matches, so 200 at once took the process from 300 MiB to 1.9 GB. Here a fixed
//! number run and a bounded queue waits; past the queue a request is refused with 429 and
//! `Retry-After`, as Elasticsearch's search thread pool refuses with
//! `es_rejected_execution_exception`. An export or a live tail already answering takes a turn
//! for each page it reads and waits for it, never refused: its answer has begun. Exports also
//! take a turn of their own for their whole stream, from a second, smaller admission: each
//! holds a page of hits and its encoded rows while the client reads, and 200 at once held
//! 1.6 GB.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ApiError;
use crate::QueryError;

pub struct Admission {
    turns: Arc<Semaphore>,
    concurrent: usize,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl Admission {
    /// `concurrent` requests at once (at least one), `max_waiting` more in line.
    pub fn new(concurrent: usize, max_waiting: usize) -> Self {
        let concurrent = concurrent.max(1);
        Admission {
            turns: Arc::new(Semaphore::new(concurrent)),
            concurrent,
            waiting: AtomicUsize::new(0),
            max_waiting,
        }
    }

    /// Runs `work` on a blocking thread once it has a turn, or refuses it when the line is full.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, QueryError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let turn = self.enter().await?;
        tokio::task::spawn_blocking(move || {
            let result = work();
            drop(turn);
            result
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::from)
    }

    /// A turn for one page of an answer that has begun, waited for from a blocking thread.
    pub fn page_turn(&self) -> OwnedSemaphorePermit {
        tokio::runtime::Handle::current()
            .block_on(self.turns.clone().acquire_owned())
            .expect("the semaphore is never closed")
    }

    /// A turn held as long as the caller keeps it (an export, for its whole stream), or a
    /// refusal when the line is full.
    pub async fn enter(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        if let Ok(turn) = self.turns.clone().try_acquire_owned() {
            return Ok(turn);
        }
        // Counted before waiting and given back however the wait ends (the client may go).
        let in_line = Waiting::join(&self.waiting);
        if in_line.position > self.max_waiting {
            metrics::counter!("sluice_query_rejected_total").increment(1);
            return Err(QueryError::Busy(format!(
                "{} requests are running and {} waiting, the most this server takes; retry shortly",
                self.concurrent, self.max_waiting
            ))
            .into());
        }
        Ok(self.turns.clone().acquire_owned().await.expect("the semaphore is never closed"))
    }
}

/// A place in the line, left when dropped.
struct Waiting<'a> {
    count: &'a AtomicUsize,
    position: usize,
}

impl<'a> Waiting<'a> {
    fn join(count: &'a AtomicUsize) -> Self {
        Waiting { count, position: count.fetch_add(1, Ordering::AcqRel) + 1 }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn requests_past_the_line_are_refused_and_the_rest_all_run() {
        let admission = Arc::new(Admission::new(2, 3));
        let (release, hold) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let (admission, mut hold) = (admission.clone(), hold.clone());
            tasks.push(tokio::spawn(async move {
                admission
                    .run(move || {
                        tokio::runtime::Handle::current()
                            .block_on(hold.wait_for(|released| *released))
                            .unwrap();
                        Ok(1)
                    })
                    .await
            }));
        }
        // Two run and three wait: the sixth finds the line full.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let refused = admission.run(|| Ok(0)).await.unwrap_err();
        let ApiError::Query(QueryError::Busy(message)) = refused else { panic!("{refused:?}") };
        assert!(message.contains("2 requests are running and 3 waiting"), "{message}");
        release.send(true).unwrap();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), 1);
        }
        assert_eq!(admission.run(|| Ok(2)).await.unwrap(), 2, "the line is free again");
        assert_eq!(admission.waiting.load(Ordering::Acquire), 0);
    }
}
