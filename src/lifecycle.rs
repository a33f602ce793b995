//! What a stopping process waits for: requests in flight, and tasks that must finish
//! their last write (the usage flush) before the process exits.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Requests between their head and their last response byte.
pub static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Background tasks that still owe a final write.
static FINALIZERS: AtomicUsize = AtomicUsize::new(0);

/// Held by a task that must finish before exit; dropping it releases the exit.
pub struct Finalizer(());

impl Finalizer {
    pub fn register() -> Finalizer {
        FINALIZERS.fetch_add(1, Ordering::AcqRel);
        Finalizer(())
    }
}

impl Drop for Finalizer {
    fn drop(&mut self) {
        FINALIZERS.fetch_sub(1, Ordering::AcqRel);
    }
}

pub fn in_flight() -> usize {
    IN_FLIGHT.load(Ordering::Acquire)
}

/// True once nothing is in flight and every finalizer is done.
pub fn drained() -> bool {
    in_flight() == 0 && FINALIZERS.load(Ordering::Acquire) == 0
}
