//! Store calls with core's retry schedule (seed fix #9): transient failures are retried with
//! capped exponential backoff on the runtime's clock, permanent ones are returned at once. Every
//! store write is idempotent (see `store`), so a retry after an ambiguous failure is safe.

use std::future::Future;

use chatbox_core::retry::RetryDecision;

use super::hub::Engine;
use super::store::StoreError;

impl Engine {
    /// Runs `op` until it succeeds, fails permanently, or the retry schedule gives up.
    pub async fn with_store_retry<T, F, Fut>(
        &self,
        operation: &'static str,
        mut op: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut retry = self.store_retry.start(None);
        loop {
            let began = self.clock.now();
            let result = op().await;
            self.metrics.observe_store_operation(operation, self.clock.now() - began);
            match result {
                Ok(value) => {
                    self.store_ready.store(true, std::sync::atomic::Ordering::Relaxed);
                    return Ok(value);
                }
                Err(error) => match retry.on_failure(error.class(), self.clock.now()) {
                    RetryDecision::RetryAfter { delay, attempt } => {
                        tracing::warn!(operation, attempt, ?delay, %error, "store operation failed; retrying");
                        tokio::time::sleep(delay).await;
                    }
                    RetryDecision::GiveUp(reason) => {
                        if error.class() == chatbox_core::retry::ErrorClass::Transient {
                            self.store_ready.store(false, std::sync::atomic::Ordering::Relaxed);
                        }
                        tracing::error!(operation, ?reason, %error, "store operation failed");
                        return Err(error);
                    }
                },
            }
        }
    }
}
