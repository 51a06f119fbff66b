//! hyper's `Timer` on the runtime's clock. hyper-util's `TokioTimer` calls the real tokio timer
//! directly, which panics under madsim; this one goes through our `tokio` (madsim-tokio), so
//! header-read timeouts run on simulated time in the simulator.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// hyper timer backed by the runtime's `sleep`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuntimeTimer;

struct RuntimeSleep(Pin<Box<tokio::time::Sleep>>);

impl Future for RuntimeSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for RuntimeSleep {}

impl hyper::rt::Timer for RuntimeTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(RuntimeSleep(Box::pin(tokio::time::sleep(duration))))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        // hyper hands out std instants derived from its own `now()`; convert to a duration.
        #[allow(clippy::disallowed_methods)] // hyper's API is in std instants
        let now = Instant::now();
        self.sleep(deadline.saturating_duration_since(now))
    }

    fn now(&self) -> Instant {
        #[allow(clippy::disallowed_methods)] // hyper's API is in std instants
        Instant::now()
    }
}
