//! Deadlines without a tokio timer per call.
//!
//! Every call waits under its deadline, every attempt under its per-try deadline, and hyper arms
//! a header-read timer whenever a keep-alive connection waits for its next request. With tokio's
//! timers each of those is an entry in the runtime's timer wheel, and registering an entry
//! earlier than every entry the parked worker planned to wake for makes tokio wake that worker
//! (a `write` to its eventfd, a context switch, a worker that looks for work and parks again):
//! at one connection that was about one wake-up per request and timer, measured with
//! `perf record -e syscalls:sys_enter_write -g` (see `BENCHMARKS.md`).
//!
//! Here one watchdog thread per process keeps the pending deadlines in order and wakes the task
//! waiting on each when it passes. Registering is an insertion under a mutex, dropping a removal.
//! The watchdog is only woken when a new deadline is earlier than the moment it will wake
//! anyway, and while deadlines are pending it never sleeps longer than [`MAX_SLEEP`], so a
//! deadline at least that far away never wakes anyone when it is registered. A [`Sleep`] reads
//! the clock itself whenever it is polled: it is ready exactly when its deadline has passed,
//! never earlier, and the watchdog makes sure it is polled then.
//!
//! Should the thread fail to start, tokio's timers are used instead.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Longest the watchdog sleeps while deadlines are pending.
const MAX_SLEEP: Duration = Duration::from_millis(250);

struct Watchdog {
    state: Mutex<State>,
    wake: Condvar,
}

struct State {
    /// Pending deadlines (with a number that tells equal instants apart) and their tasks.
    pending: BTreeMap<(Instant, u64), Waker>,
    next_id: u64,
    /// When the watchdog will next look at `pending` (`None`: not before it is notified).
    wakes_at: Option<Instant>,
}

static WATCHDOG: Watchdog = Watchdog {
    state: Mutex::new(State {
        pending: BTreeMap::new(),
        next_id: 0,
        wakes_at: None,
    }),
    wake: Condvar::new(),
};

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The watchdog, started on first use; `None` when its thread could not be started.
fn watchdog() -> Option<&'static Watchdog> {
    static STARTED: OnceLock<bool> = OnceLock::new();
    let started = *STARTED.get_or_init(|| {
        std::thread::Builder::new()
            .name("mca-deadlines".into())
            .stack_size(64 * 1024)
            .spawn(|| WATCHDOG.run())
            .is_ok()
    });
    started.then_some(&WATCHDOG)
}

impl Watchdog {
    fn run(&self) -> ! {
        let mut state = lock(&self.state);
        let mut due = Vec::new();
        loop {
            let now = Instant::now();
            while let Some(entry) = state.pending.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            if !due.is_empty() {
                // Awake: registrations meanwhile need not notify.
                state.wakes_at = Some(now);
                drop(state);
                for waker in due.drain(..) {
                    waker.wake();
                }
                state = lock(&self.state);
                continue;
            }
            state = match state.pending.keys().next() {
                None => {
                    state.wakes_at = None;
                    self.wake.wait(state).unwrap_or_else(|p| p.into_inner())
                }
                Some(&(at, _)) => {
                    let sleep = (at - now).min(MAX_SLEEP);
                    state.wakes_at = Some(now + sleep);
                    match self.wake.wait_timeout(state, sleep) {
                        Ok((s, _)) => s,
                        Err(p) => p.into_inner().0,
                    }
                }
            };
        }
    }

    fn register(&self, at: Instant, waker: Waker) -> u64 {
        let mut state = lock(&self.state);
        let id = state.next_id;
        state.next_id += 1;
        state.pending.insert((at, id), waker);
        if state.wakes_at.is_none_or(|w| at < w) {
            state.wakes_at = Some(at);
            self.wake.notify_one();
        }
        id
    }

    fn update(&self, at: Instant, id: u64, waker: &Waker) {
        if let Some(w) = lock(&self.state).pending.get_mut(&(at, id)) {
            w.clone_from(waker);
        }
    }

    fn deregister(&self, at: Instant, id: u64) {
        lock(&self.state).pending.remove(&(at, id));
    }
}

/// A future that is ready once `deadline` has passed (like `tokio::time::Sleep`).
pub(crate) struct Sleep(Inner);

enum Inner {
    Watched {
        at: Instant,
        /// Registered with the watchdog: the entry's number and the waker it holds.
        entry: Option<(u64, Waker)>,
        watchdog: &'static Watchdog,
    },
    Tokio(Pin<Box<tokio::time::Sleep>>),
}

impl Sleep {
    /// Registers nothing until it is first polled (and never, if the deadline has passed by
    /// then). Outside the watchdog, must be called within a tokio runtime.
    pub(crate) fn until(at: Instant) -> Sleep {
        Sleep(match watchdog() {
            Some(watchdog) => Inner::Watched {
                at,
                entry: None,
                watchdog,
            },
            None => Inner::Tokio(Box::pin(tokio::time::sleep_until(at.into()))),
        })
    }

    fn reset(&mut self, new_at: Instant) {
        match &mut self.0 {
            Inner::Watched {
                at,
                entry,
                watchdog,
            } => {
                if let Some((id, _)) = entry.take() {
                    watchdog.deregister(*at, id);
                }
                *at = new_at;
            }
            Inner::Tokio(sleep) => sleep.as_mut().reset(new_at.into()),
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.get_mut().0 {
            Inner::Watched {
                at,
                entry,
                watchdog,
            } => {
                if Instant::now() >= *at {
                    if let Some((id, _)) = entry.take() {
                        watchdog.deregister(*at, id);
                    }
                    return Poll::Ready(());
                }
                match entry {
                    None => {
                        *entry = Some((
                            watchdog.register(*at, cx.waker().clone()),
                            cx.waker().clone(),
                        ))
                    }
                    Some((id, waker)) => {
                        if !waker.will_wake(cx.waker()) {
                            waker.clone_from(cx.waker());
                            watchdog.update(*at, *id, waker);
                        }
                    }
                }
                Poll::Pending
            }
            Inner::Tokio(sleep) => sleep.as_mut().poll(cx),
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Inner::Watched {
            at,
            entry: Some((id, _)),
            watchdog,
        } = &self.0
        {
            watchdog.deregister(*at, *id);
        }
    }
}

impl hyper::rt::Sleep for Sleep {}

/// The deadline passed first.
#[derive(Debug)]
pub(crate) struct Elapsed;

/// `fut`'s output, or [`Elapsed`] when `deadline` passes first (like `tokio::time::timeout_at`:
/// `fut` is polled first, so an output ready at the deadline wins).
pub(crate) async fn timeout_at<F: Future>(
    deadline: tokio::time::Instant,
    fut: F,
) -> Result<F::Output, Elapsed> {
    let mut fut = std::pin::pin!(fut);
    let mut sleep = Sleep::until(deadline.into_std());
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        Pin::new(&mut sleep).poll(cx).map(|()| Err(Elapsed))
    })
    .await
}

/// [`timeout_at`] `duration` from now.
pub(crate) async fn timeout<F: Future>(duration: Duration, fut: F) -> Result<F::Output, Elapsed> {
    timeout_at(tokio::time::Instant::now() + duration, fut).await
}

/// hyper's timer (the header-read timeout) on the watchdog.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Timer;

impl hyper::rt::Timer for Timer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Sleep::until(Instant::now() + duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Sleep::until(deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<Sleep>() {
            Some(s) => s.get_mut().reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fires_at_the_deadline_not_before() {
        for ms in [0u64, 1, 30, 300] {
            let start = Instant::now();
            let r = timeout(Duration::from_millis(ms), std::future::pending::<()>()).await;
            let took = start.elapsed();
            assert!(r.is_err());
            assert!(took >= Duration::from_millis(ms), "{ms}: {took:?}");
            assert!(took < Duration::from_millis(ms + 200), "{ms}: {took:?}");
        }
    }

    #[tokio::test]
    async fn a_ready_future_wins_and_nothing_stays_registered() {
        let r = timeout(Duration::from_secs(5), async { 7 }).await;
        assert_eq!(r.unwrap(), 7);
        let r = timeout(Duration::from_secs(5), async {
            tokio::task::yield_now().await;
            8
        })
        .await;
        assert_eq!(r.unwrap(), 8);
        let r = timeout(Duration::ZERO, async { 9 }).await;
        assert_eq!(r.unwrap(), 9);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_earlier_deadline_wakes_a_sleeping_watchdog() {
        // A long deadline first (the watchdog sleeps MAX_SLEEP), then a short one.
        let long = tokio::spawn(timeout(
            Duration::from_secs(60),
            std::future::pending::<()>(),
        ));
        tokio::task::yield_now().await;
        let start = Instant::now();
        let r = timeout(Duration::from_millis(20), std::future::pending::<()>()).await;
        assert!(r.is_err());
        assert!(
            start.elapsed() < Duration::from_millis(200),
            "{:?}",
            start.elapsed()
        );
        long.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reset_moves_the_deadline() {
        let mut sleep: Pin<Box<dyn hyper::rt::Sleep>> =
            hyper::rt::Timer::sleep(&Timer, Duration::from_secs(60));
        let pending = std::future::poll_fn(|cx| Poll::Ready(sleep.as_mut().poll(cx).is_pending()));
        assert!(pending.await);
        let start = Instant::now();
        hyper::rt::Timer::reset(
            &Timer,
            &mut sleep,
            Instant::now() + Duration::from_millis(30),
        );
        sleep.await;
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(30) && took < Duration::from_millis(250),
            "{took:?}"
        );
    }
}
