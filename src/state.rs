//! Publishing compiled snapshots: one `ArcSwap` that `Check` reads without a lock, a generation
//! counter, and a readiness flag for the health service.

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
    generation: watch::Sender<u64>,
    /// Snapshots replaced by a newer one that a request still held when they were replaced,
    /// kept until the metrics can fold their counters. Cold path only.
    retired: Mutex<Vec<Arc<Snapshot>>>,
    /// Who folds a replaced snapshot's decision counters (the metrics); without one, a
    /// replaced snapshot is simply dropped.
    folder: std::sync::OnceLock<Weak<dyn Fold>>,
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
            folder: std::sync::OnceLock::new(),
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
        self.generation.send_replace(generation);
        self.ready_flag.store(true, Ordering::Release);
        self.ready.send_replace(true);
        snap
    }

    /// Readiness (true once a first state was published).
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// Has `folder` fold the counters of every snapshot this state replaces.
    pub fn set_folder(&self, folder: Weak<dyn Fold>) {
        let _ = self.folder.set(folder);
    }

    /// Makes `snap` the current snapshot. With a folder, the replaced one joins the retired
    /// ones in the same critical section (so that [`Shared::sweep_retired`] sees every
    /// snapshot exactly once, as current or retired), and every retired snapshot no request
    /// holds any more is folded: replaced snapshots never pile up, even when the state changes
    /// every few milliseconds and nothing scrapes. Without one, the replaced snapshot is
    /// dropped.
    fn replace(&self, snap: Arc<Snapshot>) {
        let Some(folder) = self.folder.get().and_then(Weak::upgrade) else {
            drop(self.current.swap(snap));
            return;
        };
        let mut retired = lock(&self.retired);
        retired.push(self.current.swap(snap));
        drop(retired);
        drop(self.sweep_retired(|s| folder.fold(s)));
    }

    /// Folds (with `fold`) every replaced snapshot that no request holds any more, and forgets
    /// it. Returns the replaced snapshots still held (they stay retired) and the current one,
    /// read in the same critical section as the retired ones: every snapshot not yet folded is
    /// in exactly one of them, so totals built from the folded counts, these, and nothing else
    /// never count a snapshot twice or miss one.
    pub fn sweep_retired(&self, fold: impl Fn(&Snapshot)) -> (Vec<Arc<Snapshot>>, Arc<Snapshot>) {
        let mut retired = lock(&self.retired);
        let (done, held): (Vec<_>, Vec<_>) = std::mem::take(&mut *retired)
            .into_iter()
            .partition(|s| Arc::strong_count(s) == 1);
        // Folded inside the critical section, so that no total misses them; dropped outside.
        for s in &done {
            fold(s);
        }
        *retired = held;
        let out = (retired.clone(), self.current.load_full());
        drop(retired);
        drop(done);
        out
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

/// Takes the counters of a snapshot that is no longer served.
pub trait Fold: Send + Sync + std::fmt::Debug {
    /// Adds `snap`'s decision counts to the totals; called once per snapshot, when no request
    /// holds it any more.
    fn fold(&self, snap: &Snapshot);
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[derive(Debug, Default)]
    struct Counting(AtomicUsize);

    impl Fold for Counting {
        fn fold(&self, _: &Snapshot) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn replaced_snapshots_do_not_pile_up() {
        let store = Store::new();
        // Without a folder, a replaced snapshot is dropped at once.
        let state = Shared::new();
        for _ in 0..100 {
            state.publish(&store);
        }
        assert!(
            state
                .sweep_retired(|_| panic!("nothing retired"))
                .0
                .is_empty()
        );

        // With one, it is folded as soon as no request holds it, and kept until then.
        let state = Shared::new();
        let counting = Arc::new(Counting::default());
        let folder: Arc<dyn Fold> = counting.clone();
        state.set_folder(Arc::downgrade(&folder));
        state.publish(&store);
        let held = state.load_full(); // a request in flight on generation 1
        for _ in 0..100 {
            state.publish(&store);
        }
        let (retired, current) = state.sweep_retired(|_| panic!("the held one is not folded"));
        assert_eq!(retired.len(), 1, "only the held snapshot waits");
        assert_eq!(retired[0].generation, held.generation);
        assert_eq!(current.generation, held.generation + 100);
        drop((retired, current));
        drop(held);
        state.publish(&store);
        assert!(state.sweep_retired(|_| panic!("all folded")).0.is_empty());
        // Generation 0, the 99 never held, then the held one and the last replaced.
        assert_eq!(counting.0.load(Ordering::Relaxed), 102);
    }
}
