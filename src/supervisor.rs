//! Keeps the background workers (ingest lanes, the expiry sweeper, the webhook dispatcher) running.
//!
//! A worker that panics or returns is marked down, which `/readyz` reports by name, and started
//! again after a delay that doubles with each consecutive failure up to [`RESTART_DELAY_MAX`]: a
//! worker that fails at once on every start (a bug meeting the same data) costs a log line and a
//! few polls per half minute rather than a busy loop, and one that failed once is back within a
//! second. Hand-written: the job is a loop around `tokio::spawn`, smaller than any supervision
//! crate's API.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
#[cfg(feature = "test-hooks")]
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The first restart delay: long enough that a probe sees the worker down (operators learn of
/// every failure, not only of crash loops), short enough that queued reports wait only a moment.
pub const RESTART_DELAY_MIN: Duration = Duration::from_secs(1);
/// The longest restart delay, reached after six failures in a row.
pub const RESTART_DELAY_MAX: Duration = Duration::from_secs(30);
/// A worker that ran this long before failing starts again after [`RESTART_DELAY_MIN`]: its
/// failure is a new one, not the next round of a crash loop.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);

/// How a worker's future ended without panicking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Its work is over for good (its queue was closed at shutdown): not restarted.
    Finished,
    /// It returned although it should run as long as the process: restarted.
    Returned,
}

/// A worker currently down, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Down {
    pub name: String,
    /// `panicked`, `returned` or `cancelled`.
    pub reason: &'static str,
}

struct Slot {
    name: String,
    down: Option<&'static str>,
    restarts: u64,
    /// Wakes the running worker to panic where it stands (see [`Supervisor::inject_panic`]).
    #[cfg(feature = "test-hooks")]
    fault: Arc<Notify>,
}

/// The workers of one process and their state; shared with `/readyz`.
#[derive(Default)]
pub struct Supervisor {
    slots: Mutex<Vec<Slot>>,
}

impl Supervisor {
    pub fn new() -> Arc<Supervisor> {
        Arc::new(Supervisor::default())
    }

    /// Runs the worker `make` builds, and builds and runs it again whenever it fails. The handle
    /// ends with the worker when it finishes; aborting it stops the worker too.
    pub fn spawn<F, Fut>(self: &Arc<Self>, name: impl Into<String>, mut make: F) -> JoinHandle<()>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Ended> + Send + 'static,
    {
        let name = name.into();
        #[cfg(feature = "test-hooks")]
        let fault = Arc::new(Notify::new());
        let index = {
            let mut slots = self.slots.lock().expect("supervisor lock");
            slots.push(Slot {
                name: name.clone(),
                down: None,
                restarts: 0,
                #[cfg(feature = "test-hooks")]
                fault: fault.clone(),
            });
            slots.len() - 1
        };
        let supervisor = self.clone();
        crate::metrics::worker_up(&name, true);
        metrics::counter!(crate::metrics::WORKER_RESTARTS, "worker" => name.clone()).increment(0);
        tokio::spawn(async move {
            let mut delay = RESTART_DELAY_MIN;
            loop {
                let started = Instant::now();
                let work = make();
                #[cfg(feature = "test-hooks")]
                let work = {
                    let fault = fault.clone();
                    async move {
                        tokio::select! {
                            ended = work => ended,
                            () = fault.notified() => panic!("a fault was injected"),
                        }
                    }
                };
                let incarnation = AbortOnDrop(tokio::spawn(work));
                // The readiness answer says how it ended; the log also says with what message
                // (which stays out of HTTP answers: it may quote data).
                let (reason, detail) = match incarnation.join().await {
                    Ok(Ended::Finished) => return,
                    Ok(Ended::Returned) => ("returned", String::new()),
                    Err(error) if error.is_panic() => {
                        ("panicked", panic_message(error.into_panic()))
                    }
                    Err(_) => ("cancelled", String::new()),
                };
                let (wait, next) = restart_delay(delay, started.elapsed());
                delay = next;
                tracing::error!(
                    worker = %name,
                    reason,
                    %detail,
                    restart_in_ms = wait.as_millis() as u64,
                    "a background worker died; restarting it"
                );
                supervisor.set_down(index, Some(reason));
                tokio::time::sleep(wait).await;
                supervisor.set_down(index, None);
                tracing::info!(worker = %name, "background worker restarted");
            }
        })
    }

    fn set_down(&self, index: usize, reason: Option<&'static str>) {
        let mut slots = self.slots.lock().expect("supervisor lock");
        let slot = &mut slots[index];
        if reason.is_none() && slot.down.is_some() {
            slot.restarts += 1;
            metrics::counter!(crate::metrics::WORKER_RESTARTS, "worker" => slot.name.clone())
                .increment(1);
        }
        slot.down = reason;
        crate::metrics::worker_up(&slot.name, reason.is_none());
    }

    /// The workers that are down right now, in the order they were started.
    pub fn down(&self) -> Vec<Down> {
        self.slots
            .lock()
            .expect("supervisor lock")
            .iter()
            .filter_map(|slot| {
                slot.down.map(|reason| Down {
                    name: slot.name.clone(),
                    reason,
                })
            })
            .collect()
    }

    /// How many times the worker `name` was restarted.
    pub fn restarts(&self, name: &str) -> Option<u64> {
        self.slots
            .lock()
            .expect("supervisor lock")
            .iter()
            .find(|slot| slot.name == name)
            .map(|slot| slot.restarts)
    }

    /// Makes the running worker `name` panic where it stands, as a bug in it would; `false` if no
    /// worker has that name. For the tests of supervision only: it exists with the `test-hooks`
    /// feature, which the test suite turns on and a release build never has.
    #[cfg(feature = "test-hooks")]
    pub fn inject_panic(&self, name: &str) -> bool {
        let slots = self.slots.lock().expect("supervisor lock");
        match slots.iter().find(|slot| slot.name == name) {
            Some(slot) => {
                slot.fault.notify_one();
                true
            }
            None => false,
        }
    }
}

/// `(how long to wait now, the delay after the next failure)`, given the current delay and how
/// long the worker ran before it failed.
fn restart_delay(delay: Duration, ran: Duration) -> (Duration, Duration) {
    let now = if ran >= STABLE_AFTER {
        RESTART_DELAY_MIN
    } else {
        delay
    };
    (now, (now * 2).min(RESTART_DELAY_MAX))
}

/// A spawned task that is aborted when its handle is dropped, so that aborting the supervising
/// task stops the worker too.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn join(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "no message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_delays_double_up_to_the_bound_and_reset_after_a_stable_run() {
        let mut delay = RESTART_DELAY_MIN;
        let mut seen = Vec::new();
        for _ in 0..8 {
            let (now, next) = restart_delay(delay, Duration::from_millis(5));
            seen.push(now.as_secs());
            delay = next;
        }
        assert_eq!(seen, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(restart_delay(delay, STABLE_AFTER).0, RESTART_DELAY_MIN);
    }

    #[test]
    fn panic_messages_are_read_from_both_payload_kinds() {
        assert_eq!(panic_message(Box::new("static")), "static");
        assert_eq!(panic_message(Box::new(String::from("owned"))), "owned");
        assert_eq!(panic_message(Box::new(3)), "no message");
    }
}
