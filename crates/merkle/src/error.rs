//! Errors of tree computations and proof checks.

use crate::Hash;

/// The largest tree this crate computes over: 2^62 leaves.
///
/// Stored-hash indexes grow to about twice the number of leaves, so this bound keeps all
/// index arithmetic inside `u64`. Proof *checks* accept any size: they never touch indexes.
pub const MAX_TREE_SIZE: u64 = 1 << 62;

/// Why a tree computation or a proof check failed.
///
/// The verification variants say exactly which record and tree sizes were involved, so that
/// `cpis audit verify` can report the failing index as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A record index at or beyond the tree size.
    #[error("record {index} is not in a tree of size {size}")]
    IndexOutOfRange {
        /// The record index asked for.
        index: u64,
        /// The tree size it was asked of.
        size: u64,
    },
    /// Consistency needs `1 <= old <= new`: every tree trivially extends the empty one.
    #[error("no consistency proof from tree size {old} to tree size {new}: need 1 <= old <= new")]
    InvalidTreeSizes {
        /// The older (smaller) tree size.
        old: u64,
        /// The newer (larger) tree size.
        new: u64,
    },
    /// A tree size beyond [`MAX_TREE_SIZE`].
    #[error("tree size {size} exceeds the supported maximum of 2^62")]
    TreeTooLarge {
        /// The tree size asked for.
        size: u64,
    },
    /// A plan-then-compute step got a different number of hashes than its plan asked for.
    #[error("expected {expected} stored hashes for this computation, got {actual}")]
    HashCount {
        /// How many indexes the plan listed.
        expected: usize,
        /// How many hashes were supplied.
        actual: usize,
    },
    /// An inclusion proof of the wrong length for its record and tree size.
    #[error(
        "inclusion proof for record {index} in a tree of size {size} must have {expected} hashes, got {actual}"
    )]
    InclusionProofLength {
        /// The record index.
        index: u64,
        /// The tree size.
        size: u64,
        /// The length RFC 6962 prescribes.
        expected: usize,
        /// The proof's length.
        actual: usize,
    },
    /// An inclusion proof that leads to a different root than the tree's.
    #[error(
        "inclusion proof for record {index} leads to root {computed}, but the tree of size {size} has root {expected}"
    )]
    InclusionMismatch {
        /// The record index.
        index: u64,
        /// The tree size.
        size: u64,
        /// The root the proof and leaf hash lead to.
        computed: Hash,
        /// The root the proof was checked against.
        expected: Hash,
    },
    /// A consistency proof of the wrong length for its two tree sizes.
    #[error(
        "consistency proof from tree size {old} to {new} must have {expected} hashes, got {actual}"
    )]
    ConsistencyProofLength {
        /// The older tree size.
        old: u64,
        /// The newer tree size.
        new: u64,
        /// The length RFC 6962 prescribes.
        expected: usize,
        /// The proof's length.
        actual: usize,
    },
    /// A consistency proof that does not rebuild the older tree's root.
    #[error(
        "consistency proof from tree size {old} to {new} rebuilds old root {computed}, but the tree of size {old} has root {expected}"
    )]
    ConsistencyOldRootMismatch {
        /// The older tree size.
        old: u64,
        /// The newer tree size.
        new: u64,
        /// The old root the proof rebuilds.
        computed: Hash,
        /// The old root it was checked against.
        expected: Hash,
    },
    /// A consistency proof that does not rebuild the newer tree's root.
    #[error(
        "consistency proof from tree size {old} to {new} rebuilds new root {computed}, but the tree of size {new} has root {expected}"
    )]
    ConsistencyNewRootMismatch {
        /// The older tree size.
        old: u64,
        /// The newer tree size.
        new: u64,
        /// The new root the proof rebuilds.
        computed: Hash,
        /// The new root it was checked against.
        expected: Hash,
    },
}

/// Why a computation over a [`HashReader`](crate::HashReader) failed: the reader's own error,
/// or an [`Error`] of the computation.
#[derive(Debug, thiserror::Error)]
pub enum ReadError<E> {
    /// The reader failed (e.g. the database was unreachable).
    #[error(transparent)]
    Read(E),
    /// The computation rejected its inputs or the hashes it was given.
    #[error(transparent)]
    Tree(#[from] Error),
}

/// Checks that a size is one this crate can compute over.
pub(crate) fn check_size(size: u64) -> Result<(), Error> {
    if size > MAX_TREE_SIZE {
        return Err(Error::TreeTooLarge { size });
    }
    Ok(())
}

/// Checks that exactly as many hashes were supplied as a plan asked for.
pub(crate) fn check_count(expected: usize, actual: usize) -> Result<(), Error> {
    if expected != actual {
        return Err(Error::HashCount { expected, actual });
    }
    Ok(())
}
