//! Publishing compiled snapshots: one `ArcSwap` that `Check` reads without a lock, and
//! readiness (a flag for `Check`, a `watch` for the health service). Whoever keeps counting a
//! replaced snapshot (the metrics) hears of it through [`OnReplace`].

use std::{
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Instant,
};

use arc_swap::{ArcSwap, Guard};
use tokio::sync::watch;

use crate::policy::{
    snapshot::Snapshot,
    store::{Changes, Store},
};

/// The current snapshot and its readiness.
#[derive(Debug)]
pub struct Shared {
    current: ArcSwap<Snapshot>,
    /// Serializes publishers so generations are strictly increasing (readers never take it).
    publish: Mutex<()>,
    ready: watch::Sender<bool>,
    /// The same as `ready`, for `Check` (a `watch` borrow takes a read lock).
    ready_flag: AtomicBool,
    /// Who is told when a snapshot is replaced (the metrics, which keep counting it until no
    /// request holds it); without one, a replaced snapshot is simply dropped.
    on_replace: std::sync::OnceLock<Weak<dyn OnReplace>>,
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
            on_replace: std::sync::OnceLock::new(),
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
        self.publish_changes(store, &Changes::everything())
    }

    /// Like [`Shared::publish`], for a store that the current snapshot was built from and that
    /// has had only `changes` since: only what they affect is recomputed
    /// ([`Snapshot::update`]).
    pub fn publish_changes(&self, store: &Store, changes: &Changes) -> Arc<Snapshot> {
        let _guard = lock(&self.publish);
        let current = self.current.load_full();
        let generation = current.generation + 1;
        let snap = Arc::new(Snapshot::update(&current, store, changes, generation));
        drop(current);
        self.replace(snap.clone());
        *lock(&self.published_at) = Some(Instant::now());
        self.ready_flag.store(true, Ordering::Release);
        self.ready.send_replace(true);
        snap
    }

    /// Readiness (true once a first state was published).
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// Tells `watcher` of every snapshot this state replaces.
    pub fn on_replace(&self, watcher: Weak<dyn OnReplace>) {
        let _ = self.on_replace.set(watcher);
    }

    /// Makes `snap` the current snapshot, through the watcher when there is one.
    fn replace(&self, snap: Arc<Snapshot>) {
        match self.on_replace.get().and_then(Weak::upgrade) {
            Some(watcher) => watcher.replace(&mut || self.current.swap(snap.clone())),
            None => drop(self.current.swap(snap)),
        }
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
}

/// Told of every snapshot replaced by a newer one.
pub trait OnReplace: Send + Sync + std::fmt::Debug {
    /// `swap` makes the new snapshot current and returns the one it replaced (call it once).
    /// Whatever must see each snapshot exactly once, as current or replaced, calls it inside
    /// the critical section where it reads the current one.
    fn replace(&self, swap: &mut dyn FnMut() -> Arc<Snapshot>);
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
