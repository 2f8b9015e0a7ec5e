//! Idle polling on the serving threads: before a serving thread sleeps, it keeps checking
//! for new events for a short, adaptive window ([`Config::idle_poll`](crate::Config::idle_poll)).
//!
//! Why: a thread that sleeps in `epoll_wait` has to be woken when the next packet arrives, and
//! on a virtual machine whose idle vCPUs halt at once (guest halt polling off) that wake-up
//! costs tens of microseconds, twice per call (the upstream's answer, the caller's next
//! request). Polling through those short gaps keeps the thread running instead.
//!
//! How much: the window adapts the way the kernel's halt-polling governor
//! (`cpuidle-haltpoll`) does. After each real sleep the thread compares how long it was idle
//! (polling plus sleeping) with the window and its ceiling: idle longer than the window but
//! within the ceiling grows the window (a longer poll would have caught the event); idle
//! longer than the ceiling ends it (nothing comes that soon; the kernel halves it instead).
//! A thread keeps two windows, one for gaps while a call is in progress on it (most often
//! waiting for its upstream) and one for gaps between calls, since the two differ: behind a
//! slow upstream the first closes, between sparse calls the second does, and the thread then
//! sleeps at once (until gaps of that kind are short again). At most the ceiling is spent per
//! gap.
//!
//! Mechanics: a serving thread runs a single-threaded tokio runtime ([`runtime`], [`start`]).
//! Its `on_thread_park` hook ([`before_park`]) runs whenever the runtime has nothing left to do; when there was
//! activity since the last gap it wakes the poller task ([`poller`]) instead of letting the
//! thread sleep. The poller yields in a loop: between its turns the runtime checks epoll
//! without blocking and runs whatever became ready. Activity is counted by the connection
//! futures ([`counted`]): every poll of one means the thread had work.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// The window a growing poll starts from (the kernel's `guest_halt_poll_grow_start` is 50 µs).
const GROW_START: Duration = Duration::from_micros(25);

/// The per-thread state of idle polling. Only its own serving thread touches it (the hooks
/// run on the thread whose runtime parks), so plain cells suffice.
struct State {
    /// The ceiling; zero: idle polling is off on this thread.
    ceiling: Cell<Duration>,
    /// The current windows, from zero to the ceiling, by [`Gap`].
    windows: [Cell<Duration>; 2],
    /// Calls in progress on this thread ([`busy`]).
    calls: Cell<u32>,
    /// What the thread is waiting for in the current idle gap.
    gap: Cell<Gap>,
    /// Polls of connection futures so far ([`counted`]).
    activity: Cell<u64>,
    /// `activity` when the current idle gap began.
    seen: Cell<u64>,
    /// When the current idle gap began (the last activity seen).
    idle_since: Cell<Option<Instant>>,
    /// Set when the thread goes to sleep for real: the start of that gap, to measure it.
    sleeping_since: Cell<Option<Instant>>,
    /// Set by [`before_park`] to start the poller, taken by the poller.
    start: Cell<bool>,
    /// The poller's waker while it waits to be started.
    waker: Cell<Option<Waker>>,
}

thread_local! {
    static STATE: State = const { State::new() };
}

/// A serving thread's single-threaded async runtime, with the idle-polling hooks when
/// `ceiling` is not zero. Its thread calls [`start`] in it.
pub(crate) fn runtime(ceiling: Duration) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all();
    if !ceiling.is_zero() {
        builder
            .on_thread_park(before_park)
            .on_thread_unpark(after_unpark);
    }
    builder.build()
}

/// Starts idle polling on the calling thread, with windows up to `ceiling` (zero: off): call
/// it first thing in the [`runtime`] built with the same ceiling.
pub(crate) fn start(ceiling: Duration) {
    STATE.with(|s| s.enable(ceiling));
    if !ceiling.is_zero() {
        tokio::spawn(poller());
    }
}

/// What a thread waits for when it is idle, each with a window of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gap {
    /// A call is in progress on the thread: its upstream's answer, most likely.
    Upstream = 0,
    /// No call is: the caller's next request.
    Caller = 1,
}

impl State {
    /// Idle polling off.
    const fn new() -> State {
        State {
            ceiling: Cell::new(Duration::ZERO),
            windows: [Cell::new(Duration::ZERO), Cell::new(Duration::ZERO)],
            calls: Cell::new(0),
            gap: Cell::new(Gap::Caller),
            activity: Cell::new(0),
            seen: Cell::new(0),
            idle_since: Cell::new(None),
            sleeping_since: Cell::new(None),
            start: Cell::new(false),
            waker: Cell::new(None),
        }
    }

    fn enable(&self, ceiling: Duration) {
        self.ceiling.set(ceiling);
        for window in &self.windows {
            window.set(ceiling.min(GROW_START));
        }
    }

    /// If there was activity since the current idle gap began, a new gap begins at `now`:
    /// notes what it waits for, and returns its window.
    fn gap_after_activity(&self, now: Instant) -> Option<Duration> {
        let activity = self.activity.get();
        if activity == self.seen.get() {
            return None;
        }
        self.seen.set(activity);
        let gap = if self.calls.get() > 0 {
            Gap::Upstream
        } else {
            Gap::Caller
        };
        self.gap.set(gap);
        self.idle_since.set(Some(now));
        Some(self.windows[gap as usize].get())
    }

    fn before_park(&self, now: Instant) {
        if self.ceiling.get().is_zero() {
            return;
        }
        if self.gap_after_activity(now).is_some_and(|w| !w.is_zero()) {
            if let Some(waker) = self.waker.take() {
                self.start.set(true);
                waker.wake();
                return;
            }
        }
        // Polled (or not to poll) and nothing came: the thread sleeps. (Before its first
        // activity there is no gap to learn from.)
        self.sleeping_since.set(self.idle_since.get());
    }

    fn after_unpark(&self, now: Instant) {
        let Some(since) = self.sleeping_since.take() else {
            return;
        };
        let window = &self.windows[self.gap.get() as usize];
        window.set(adapt(
            window.get(),
            self.ceiling.get(),
            now.saturating_duration_since(since),
        ));
    }
}

/// Counts a call in progress on this thread until dropped (hold it while the call runs).
pub(crate) fn busy() -> Busy {
    let _ = STATE.try_with(|s| s.calls.set(s.calls.get().saturating_add(1)));
    Busy
}

/// See [`busy`].
pub(crate) struct Busy;

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = STATE.try_with(|s| s.calls.set(s.calls.get().saturating_sub(1)));
    }
}

/// The runtime's `on_thread_park` hook: it has nothing to run. After activity, starts the
/// poller (the runtime then checks epoll without blocking and runs it); otherwise the thread
/// is about to sleep.
fn before_park() {
    let _ = STATE.try_with(|s| s.before_park(Instant::now()));
}

/// The runtime's `on_thread_unpark` hook: after a real sleep, adapts the window to how long
/// the thread was idle.
fn after_unpark() {
    let _ = STATE.try_with(|s| s.after_unpark(Instant::now()));
}

/// The next window after an idle gap of `idle` (polling and sleeping) that polling within
/// `window` did not catch.
fn adapt(window: Duration, ceiling: Duration, idle: Duration) -> Duration {
    if idle > ceiling {
        // Nothing came within the ceiling: stop polling until gaps are short again.
        Duration::ZERO
    } else if idle > window {
        // A longer poll would have caught it.
        (window * 2).max(GROW_START).min(ceiling)
    } else {
        window
    }
}

/// The poller task of a serving thread: waits until [`before_park`] starts it, then keeps the
/// thread checking for events until the window passes with no activity.
async fn poller() {
    // When the runtime drops the poller, its waker must not outlive it in the thread-local.
    struct Forget;
    impl Drop for Forget {
        fn drop(&mut self) {
            let _ = STATE.try_with(|s| {
                s.waker.take();
                s.start.set(false);
            });
        }
    }
    let _forget = Forget;
    loop {
        Start.await;
        let window = STATE.with(|s| s.windows[s.gap.get() as usize].get());
        let mut deadline = Instant::now() + window;
        loop {
            tokio::task::yield_now().await;
            let now = Instant::now();
            // After activity a new gap begins, with its own window.
            if let Some(window) = STATE.with(|s| s.gap_after_activity(now)) {
                deadline = now + window;
            }
            if now >= deadline {
                break;
            }
        }
    }
}

/// Completes when [`before_park`] starts the poller.
struct Start;

impl Future for Start {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        STATE.with(|s| {
            if s.start.replace(false) {
                Poll::Ready(())
            } else {
                s.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
    }
}

/// Runs `future`, counting each of its polls as activity of the thread (for a connection: the
/// caller's bytes or the upstream's answer arrived).
pub(crate) async fn counted<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        let _ = STATE.try_with(|s| s.activity.set(s.activity.get().wrapping_add(1)));
        future.as_mut().poll(cx)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const CEILING: Duration = Duration::from_micros(200);

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn a_gap_just_past_the_window_grows_it_up_to_the_ceiling() {
        assert_eq!(adapt(Duration::ZERO, CEILING, us(80)), GROW_START);
        assert_eq!(adapt(us(50), CEILING, us(80)), us(100));
        assert_eq!(adapt(us(150), CEILING, us(180)), CEILING);
    }

    #[test]
    fn a_gap_past_the_ceiling_ends_polling() {
        assert_eq!(adapt(CEILING, CEILING, us(201)), Duration::ZERO);
        assert_eq!(
            adapt(us(50), CEILING, Duration::from_secs(1)),
            Duration::ZERO
        );
        assert_eq!(
            adapt(Duration::ZERO, CEILING, Duration::from_secs(1)),
            Duration::ZERO
        );
    }

    #[test]
    fn a_gap_within_the_window_keeps_it() {
        assert_eq!(adapt(us(100), CEILING, us(60)), us(100));
    }

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn state(ceiling: Duration) -> State {
        let s = State::new();
        s.enable(ceiling);
        s
    }

    #[test]
    fn after_activity_the_thread_polls_and_only_then_sleeps_and_learns_from_the_gap() {
        let s = state(CEILING);
        let wakes = Arc::new(CountingWaker(AtomicUsize::new(0)));
        s.waker.set(Some(Waker::from(wakes.clone())));
        let t0 = Instant::now();
        // A call in progress, then nothing to run: the poller is started, the thread stays up.
        s.calls.set(1);
        s.activity.set(1);
        s.before_park(t0);
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1);
        assert!(s.start.get());
        assert_eq!(s.gap.get(), Gap::Upstream);
        assert_eq!(s.sleeping_since.get(), None);
        // The poller's window passed with no activity: now the thread sleeps.
        s.before_park(t0 + us(30));
        assert_eq!(s.sleeping_since.get(), Some(t0));
        // Woken 80 µs after the gap began: a longer poll would have caught it.
        s.after_unpark(t0 + us(80));
        assert_eq!(s.windows[Gap::Upstream as usize].get(), us(50));
        assert_eq!(s.windows[Gap::Caller as usize].get(), GROW_START);
    }

    #[test]
    fn gaps_between_calls_have_a_window_of_their_own() {
        let s = state(CEILING);
        let t0 = Instant::now();
        // No call in progress, and no poller waiting: the thread sleeps at once.
        s.activity.set(1);
        s.before_park(t0);
        assert_eq!(s.gap.get(), Gap::Caller);
        assert_eq!(s.sleeping_since.get(), Some(t0));
        // The next call came a second later: stop polling between calls...
        s.after_unpark(t0 + Duration::from_secs(1));
        assert_eq!(s.windows[Gap::Caller as usize].get(), Duration::ZERO);
        // ...but keep polling for upstream answers.
        assert_eq!(s.windows[Gap::Upstream as usize].get(), GROW_START);
    }

    /// How long the peer of [`exchange_with_a_quick_peer`] takes to answer: long enough that
    /// a thread that does not poll is asleep when the answer comes, however the machine
    /// schedules the two threads.
    const ANSWER_AFTER: Duration = Duration::from_micros(200);

    /// Runs `exchanges` request-answer round trips with a peer that answers after
    /// [`ANSWER_AFTER`], on a single-threaded runtime with the idle-polling hooks and a window
    /// up to `ceiling`; returns how often the thread slept during them, and whether it slept
    /// again once idle.
    fn exchange_with_a_quick_peer(ceiling: Duration, exchanges: usize) -> (u64, bool) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let peer = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut conn, _) = listener.accept().expect("accept");
            let mut byte = [0u8];
            while conn.read_exact(&mut byte).is_ok() {
                std::thread::sleep(ANSWER_AFTER);
                if conn.write_all(&byte).is_err() {
                    break;
                }
            }
        });
        // Set up as a serving thread is (`Workers::start`): the control differs from the test
        // only in the ceiling.
        let runtime = runtime(ceiling).expect("runtime");
        let result = runtime.block_on(async move {
            start(ceiling);
            let metrics = tokio::runtime::Handle::current().metrics();
            let calls = tokio::spawn(counted(async move {
                let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
                conn.set_nodelay(true).expect("nodelay");
                let parks = tokio::runtime::Handle::current().metrics();
                let mut round_trips = async |n: usize| {
                    let before = parks.worker_park_count(0);
                    for _ in 0..n {
                        let _busy = busy();
                        conn.write_all(b"x").await.expect("write");
                        conn.read_exact(&mut [0u8]).await.expect("read");
                    }
                    parks.worker_park_count(0) - before
                };
                // Warm up: the window grows to fit the peer.
                round_trips(50).await;
                let parks = round_trips(exchanges).await;
                (parks, conn)
            }));
            let (parks, conn) = calls.await.expect("calls");
            // Idle now (the connection stays open): the poller must let the thread sleep.
            let idle = metrics.worker_park_count(0);
            tokio::time::sleep(ceiling + Duration::from_millis(50)).await;
            let slept = metrics.worker_park_count(0) > idle;
            drop(conn);
            (parks, slept)
        });
        peer.join().expect("peer");
        result
    }

    #[test]
    fn a_polling_thread_catches_quick_answers_without_sleeping_and_sleeps_once_idle() {
        // A ceiling far above any answer time on a busy machine: the peer answers within it.
        let (parks, slept) = exchange_with_a_quick_peer(Duration::from_millis(50), 200);
        assert!(parks < 20, "slept {parks} times in 200 exchanges");
        assert!(slept, "the poller kept the idle thread awake");
    }

    #[test]
    fn without_polling_the_thread_sleeps_for_every_answer() {
        // The control for the test above: its counting would see the difference.
        let (parks, slept) = exchange_with_a_quick_peer(Duration::ZERO, 200);
        assert!(parks >= 100, "slept {parks} times in 200 exchanges");
        assert!(slept);
    }

    #[test]
    fn a_sleep_before_the_first_activity_teaches_nothing() {
        // A serving thread waits for its first connection, perhaps for hours.
        let s = state(CEILING);
        let t0 = Instant::now();
        s.before_park(t0);
        s.after_unpark(t0 + Duration::from_secs(3600));
        assert_eq!(s.windows[Gap::Upstream as usize].get(), GROW_START);
        assert_eq!(s.windows[Gap::Caller as usize].get(), GROW_START);
    }
}
