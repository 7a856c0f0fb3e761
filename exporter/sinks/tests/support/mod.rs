//! The driver harness shared by the sink integration tests: a memory
//! queue and the real [`SinkDriver`] around any transport.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use flowscribe_sinks::core::backoff::BackoffConfig;
use flowscribe_sinks::core::driver::{
    DriverConfig, DriverHandle, DriverShutdownReport, DriverSnapshot, SinkDriver, Transport,
};
use flowscribe_sinks::core::queue::{Durability, DurableQueue, QueueConfig, Record};

/// Fast backoff (1..5 ms jitter), `Retry-After` capped at 300 ms.
pub fn driver_config(max_batch_records: usize) -> DriverConfig {
    DriverConfig {
        backoff: BackoffConfig {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(5),
            multiplier: 2.0,
        },
        max_batch_records,
        max_retry_after: Duration::from_millis(300),
        send_timeout: Duration::from_secs(10),
        ..DriverConfig::new("test-sink")
    }
}

pub struct Running {
    pub handle: DriverHandle,
    task: tokio::task::JoinHandle<DriverShutdownReport>,
}

impl Running {
    pub fn start<T: Transport + 'static>(transport: T, cfg: DriverConfig) -> Running {
        let queue =
            DurableQueue::open(QueueConfig::new("test-sink", None, Durability::Memory)).unwrap();
        Self::start_with_queue(transport, cfg, queue)
    }

    /// Start on a given queue (a disk queue a test reopens after a crash).
    pub fn start_with_queue<T: Transport + 'static>(
        transport: T,
        cfg: DriverConfig,
        queue: DurableQueue,
    ) -> Running {
        let (driver, handle) = SinkDriver::new(cfg, queue, transport);
        Running {
            handle,
            task: tokio::spawn(driver.run()),
        }
    }

    pub async fn push(&self, records: Vec<Record>) {
        let receipt = self.handle.queue().push(records).await.unwrap();
        assert!(receipt.shed.is_empty());
    }

    /// Wait until every pushed record is final.
    pub async fn settle(&self) -> DriverSnapshot {
        self.handle
            .flush(Instant::now() + Duration::from_secs(30))
            .await
            .unwrap();
        self.handle.snapshot()
    }

    /// A crash as far as the queue can tell: the driver stops where it is
    /// (mid-retry), nothing more is acked, every handle is dropped.
    pub async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
        drop(self.handle);
    }

    pub async fn stop(self) {
        self.handle
            .shutdown(Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
        self.task.await.unwrap();
    }
}

/// Poll `cond` until it holds (a condition, not a fixed sleep), at most 20 s.
pub async fn wait_for<F: Fn() -> bool>(what: &str, cond: F) {
    let end = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
