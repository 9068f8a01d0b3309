//! Publishing compiled snapshots: one `ArcSwap` that `Check` reads without a lock, a generation
//! counter, and a readiness flag for the health service.

use std::sync::{Arc, Mutex};

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
    generation: watch::Sender<u64>,
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
            generation: watch::Sender::new(0),
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
        let _guard = self.publish.lock().unwrap_or_else(|e| e.into_inner());
        let generation = self.current.load().generation + 1;
        let snap = Arc::new(Snapshot::build(store, generation));
        self.current.store(snap.clone());
        self.generation.send_replace(generation);
        self.ready.send_replace(true);
        snap
    }

    /// Readiness (true once a first state was published).
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// Generation changes.
    pub fn generations(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}
