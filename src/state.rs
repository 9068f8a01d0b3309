//! Publishing compiled snapshots: one `ArcSwap` that `Check` reads without a lock, a generation
//! counter, and a readiness flag for the health service.

use std::{
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Instant,
};

use arc_swap::{ArcSwap, Guard};
use tokio::sync::watch;

use crate::policy::{snapshot::Snapshot, store::Store};

/// The current snapshot and its readiness.
#[derive(Debug)]
pub struct Shared {
    current: ArcSwap<Snapshot>,
    /// Serializes publishers so generations are strictly increasing (readers never take it).
    publish: Mutex<()>,
    ready: watch::Sender<bool>,
    /// The same as `ready`, for `Check` (a `watch` borrow takes a read lock).
    ready_flag: AtomicBool,
    generation: watch::Sender<u64>,
    /// Snapshots replaced by a newer one, kept until the metrics have folded their counters
    /// (and no request holds them any more). Cold path only.
    retired: Mutex<Vec<Arc<Snapshot>>>,
    /// When the current snapshot was published.
    published_at: Mutex<Option<Instant>>,
    /// Reloads that failed (the previous state kept serving).
    reload_errors: AtomicU64,
}

impl Default for Shared {
    fn default() -> Self {
        Self::new()
    }
}

impl Shared {
    /// An empty, not-ready state (generation 0).
    pub fn new() -> Self {
        Shared {
            current: ArcSwap::from_pointee(Snapshot::empty(0)),
            publish: Mutex::new(()),
            ready: watch::Sender::new(false),
            ready_flag: AtomicBool::new(false),
            generation: watch::Sender::new(0),
            retired: Mutex::new(Vec::new()),
            published_at: Mutex::new(None),
            reload_errors: AtomicU64::new(0),
        }
    }

    /// The snapshot to evaluate against. Lock-free.
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The snapshot as an owned `Arc` (for callers that keep it).
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Compiles `store` into the next generation, publishes it and marks the state ready.
    pub fn publish(&self, store: &Store) -> Arc<Snapshot> {
        let _guard = lock(&self.publish);
        let generation = self.current.load().generation + 1;
        let snap = Arc::new(Snapshot::build(store, generation));
        let old = self.current.swap(snap.clone());
        lock(&self.retired).push(old);
        *lock(&self.published_at) = Some(Instant::now());
        self.generation.send_replace(generation);
        self.ready_flag.store(true, Ordering::Release);
        self.ready.send_replace(true);
        snap
    }

    /// Readiness (true once a first state was published).
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// Takes the retired snapshots (for the metrics to fold).
    pub fn take_retired(&self) -> Vec<Arc<Snapshot>> {
        std::mem::take(&mut *lock(&self.retired))
    }

    /// Gives back retired snapshots that requests still hold.
    pub fn keep_retired(&self, still_used: Vec<Arc<Snapshot>>) {
        lock(&self.retired).extend(still_used);
    }

    /// How long ago the current state was published.
    pub fn age(&self) -> Option<std::time::Duration> {
        lock(&self.published_at).map(|t| t.elapsed())
    }

    /// Counts a reload that failed.
    pub fn reload_failed(&self) {
        self.reload_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Reloads that failed so far.
    pub fn reload_errors(&self) -> u64 {
        self.reload_errors.load(Ordering::Relaxed)
    }

    /// Whether a first state was published. Lock-free.
    pub fn is_ready(&self) -> bool {
        self.ready_flag.load(Ordering::Acquire)
    }

    /// Generation changes.
    pub fn generations(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
