//! What a stopping process waits for: requests in flight, client connections that may
//! still send one, and tasks that must finish their last write (the usage flush).

use std::sync::atomic::{AtomicUsize, Ordering};

/// Requests between their head and their last response byte.
pub static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Open data-plane client connections, idle keep-alives included.
static CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

/// Held for the life of a client connection.
pub struct Connection(());

impl Connection {
    pub fn open() -> Connection {
        CONNECTIONS.fetch_add(1, Ordering::AcqRel);
        Connection(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        CONNECTIONS.fetch_sub(1, Ordering::AcqRel);
    }
}

pub fn connections() -> usize {
    CONNECTIONS.load(Ordering::Acquire)
}

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

/// Whether the gateway can serve: every component that must load first (the snapshot,
/// the persisted daily quotas) has said so.
#[derive(Debug)]
pub struct Readiness(AtomicUsize);

impl Readiness {
    /// Ready once `components` calls of [`Readiness::set_ready`] have been made.
    pub fn new(components: usize) -> Self {
        Readiness(AtomicUsize::new(components))
    }

    pub fn set_ready(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(1)
            });
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }
}
