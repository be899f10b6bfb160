//! Recomputing roots from a stream of leaves, for `cpis audit verify --full`: O(n) time,
//! O(log n) memory, and the first index where recomputed leaves and expected ones part.
//!
//! A signed root alone cannot say *which* record was altered. The verifier names it by
//! comparing the leaf hashes it recomputes from the events with the leaf hashes the log
//! stored when it appended them ([`first_leaf_mismatch`]), having checked that those stored
//! leaves rebuild the signed root ([`root_of_leaf_hashes`]); a single inclusion proof of the
//! named record against the signed root then confirms it.

use crate::error::{Error, check_count, check_size};
use crate::{Hash, leaf_hash, node_hash};

/// Builds tree roots leaf by leaf, keeping only the hashes of the maximal complete subtrees
/// (one per set bit of the size, a "compact range").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootBuilder {
    size: u64,
    /// Hashes of the maximal complete subtrees, largest (leftmost) first.
    subtrees: Vec<Hash>,
}

impl RootBuilder {
    /// A builder for the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Resumes building after the first `size` leaves, from the hashes of their maximal
    /// complete subtrees: the stored hashes at [`crate::tree_hash_indexes`]`(size)`.
    pub fn resume(size: u64, subtrees: &[Hash]) -> Result<Self, Error> {
        check_size(size)?;
        check_count(size.count_ones() as usize, subtrees.len())?;
        Ok(RootBuilder {
            size,
            subtrees: subtrees.to_vec(),
        })
    }

    /// Adds the next record's leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.push_with(leaf, |_| ());
    }

    /// Adds the next record's leaf hash, passing `stored` the hashes the stored-hash layout
    /// keeps for it: the leaf hash, then one per subtree it completes, lowest first.
    pub(crate) fn push_with(&mut self, leaf: Hash, mut stored: impl FnMut(Hash)) {
        let mut h = leaf;
        stored(h);
        // Each trailing 1 bit of the old size is a subtree the new leaf completes; its left
        // half is the smallest subtree held, on top of the stack.
        let mut size = self.size;
        while size & 1 == 1 {
            if let Some(left) = self.subtrees.pop() {
                h = node_hash(&left, &h);
                stored(h);
            }
            size >>= 1;
        }
        self.subtrees.push(h);
        self.size += 1;
    }

    /// Adds the next record from its data.
    pub fn push_data(&mut self, data: &[u8]) {
        self.push(leaf_hash(data));
    }

    /// The number of leaves pushed.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the leaves pushed so far ([`crate::EMPTY_TREE_HASH`] for none); O(log n),
    /// so it can be compared with every checkpoint the stream passes.
    pub fn root(&self) -> Hash {
        crate::tree::fold_range(&self.subtrees)
    }
}

/// The size and root of the tree with these leaf hashes.
pub fn root_of_leaf_hashes<I: IntoIterator<Item = Hash>>(leaves: I) -> (u64, Hash) {
    let mut builder = RootBuilder::new();
    for leaf in leaves {
        builder.push(leaf);
    }
    (builder.size, builder.root())
}

/// The first record where two leaf sequences differ; `None` on one side means that sequence
/// ended there (a record was deleted, or appended without being expected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafMismatch {
    /// The record index.
    pub index: u64,
    /// The leaf hash expected there (e.g. stored by the log).
    pub expected: Option<Hash>,
    /// The leaf hash found there (e.g. recomputed from the event).
    pub actual: Option<Hash>,
}

impl std::fmt::Display for LeafMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |h: Option<Hash>| h.map_or_else(|| "nothing".to_owned(), |h| h.to_string());
        write!(
            f,
            "record {}: expected leaf hash {}, found {}",
            self.index,
            show(self.expected),
            show(self.actual)
        )
    }
}

/// The first index at which `actual` differs from `expected`, or `None` if they are equal
/// (including in length).
pub fn first_leaf_mismatch<E, A>(expected: E, actual: A) -> Option<LeafMismatch>
where
    E: IntoIterator<Item = Hash>,
    A: IntoIterator<Item = Hash>,
{
    let (mut expected, mut actual) = (expected.into_iter(), actual.into_iter());
    let mut index = 0u64;
    loop {
        match (expected.next(), actual.next()) {
            (None, None) => return None,
            (e, a) if e != a => {
                return Some(LeafMismatch {
                    index,
                    expected: e,
                    actual: a,
                });
            }
            _ => index += 1,
        }
    }
}
