//! Typed indexes into a [`Snapshot`](super::snapshot::Snapshot)'s tables.
//!
//! A [`Decision`](super::decision::Decision) names what decided by index, so that it stays a
//! small `Copy` value; one newtype per table keeps a tier's index from being used as a
//! policy's. Tables are far smaller than `u32::MAX` entries.

use std::fmt;

macro_rules! index {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(u32);

        impl $name {
            /// The index of slot `i`. An `i` beyond `u32::MAX` (no table is that large)
            /// saturates, and then names no slot.
            #[inline]
            pub fn new(i: usize) -> Self {
                Self(u32::try_from(i).unwrap_or(u32::MAX))
            }

            /// The slot, for indexing the table.
            #[inline]
            pub const fn get(self) -> usize {
                self.0 as usize
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

index!(
    /// Index of a tier in [`Snapshot::tiers`](super::snapshot::Snapshot::tiers).
    TierIdx
);
index!(
    /// Index of a policy in [`Snapshot::policies`](super::snapshot::Snapshot::policies) (and
    /// of its tier in `policy_tier`).
    PolicyIdx
);
index!(
    /// Index of an endpoint in [`Snapshot::endpoints`](super::snapshot::Snapshot::endpoints).
    EndpointIdx
);
index!(
    /// An endpoint class's number: the slot of its plan in
    /// [`Snapshot::plans`](super::snapshot::Snapshot::plans).
    ClassIdx
);

impl ClassIdx {
    /// No class: an endpoint that is only ever a source (a pod of another node in per-node
    /// mode) has no plan.
    pub const NONE: ClassIdx = ClassIdx(u32::MAX);
}

index!(
    /// Index of an invalid policy in [`Snapshot::invalid`](super::snapshot::Snapshot::invalid).
    InvalidIdx
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_round_trips_and_saturates_beyond_u32() {
        assert_eq!(PolicyIdx::new(7).get(), 7);
        assert_eq!(TierIdx::new(0).to_string(), "0");
        assert_eq!(EndpointIdx::new(usize::MAX).get(), u32::MAX as usize);
        assert!(InvalidIdx::new(1) < InvalidIdx::new(2));
    }
}
