//! An in-memory log of stored hashes: for tests, benchmarks and the verifier's full
//! recomputation. The audit service keeps the same hashes in its database instead.

use crate::error::ReadError;
use crate::stored::{HashReader, stored_hash_count, stored_hash_index};
use crate::tree::{Range, fold_range};
use crate::{Hash, leaf_hash, node_hash};

/// A log kept in memory as its stored hashes (see [`crate::stored_hash_index`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryLog {
    hashes: Vec<Hash>,
    size: u64,
}

/// A read past the end of a [`MemoryLog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stored hash {index} is not in the log, which holds {stored} hashes")]
pub struct HashNotStored {
    /// The index asked for.
    pub index: u64,
    /// How many hashes the log holds.
    pub stored: u64,
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty log with room for `records` records without reallocating.
    pub fn with_capacity(records: u64) -> Self {
        let hashes = usize::try_from(stored_hash_count(records)).unwrap_or(usize::MAX);
        MemoryLog {
            hashes: Vec::with_capacity(hashes),
            size: 0,
        }
    }

    /// Appends a record and returns its index.
    pub fn append(&mut self, data: &[u8]) -> u64 {
        self.append_leaf_hash(leaf_hash(data))
    }

    /// Appends a record given its leaf hash and returns its index.
    pub fn append_leaf_hash(&mut self, leaf: Hash) -> u64 {
        let n = self.size;
        let mut h = leaf;
        self.hashes.push(h);
        // Record n completes one subtree per trailing 1 bit of n; the left half of each is
        // already stored. Same hashes as `stored_hashes_for_record`, without a Vec per append.
        for level in 0..(n + 1).trailing_zeros() {
            let left = self.hashes[to_usize(stored_hash_index(level, (n >> level) - 1))];
            h = node_hash(&left, &h);
            self.hashes.push(h);
        }
        self.size += 1;
        n
    }

    /// The number of records.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the log has no records.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The stored hashes, in stored-index order.
    pub fn stored_hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// The leaf hash of record `index`, if the log has it.
    pub fn leaf_hash(&self, index: u64) -> Option<Hash> {
        (index < self.size).then(|| self.hashes[to_usize(stored_hash_index(0, index))])
    }

    /// The root hash of the whole log.
    pub fn root(&self) -> Hash {
        let mut indexes = Vec::with_capacity(64);
        Range {
            lo: 0,
            hi: self.size,
        }
        .push_indexes(&mut indexes);
        let hashes: Vec<Hash> = indexes.iter().map(|&i| self.hashes[to_usize(i)]).collect();
        fold_range(&hashes)
    }

    /// The root hash of the first `n` records.
    pub fn tree_hash(&self, n: u64) -> Result<Hash, ReadError<HashNotStored>> {
        crate::tree_hash(n, self)
    }

    /// The inclusion proof of record `n` in the tree of size `t`.
    pub fn prove_record(&self, t: u64, n: u64) -> Result<Vec<Hash>, ReadError<HashNotStored>> {
        crate::prove_record(t, n, self)
    }

    /// The consistency proof from the tree of size `n` to the tree of size `t`.
    pub fn prove_tree(&self, t: u64, n: u64) -> Result<Vec<Hash>, ReadError<HashNotStored>> {
        crate::prove_tree(t, n, self)
    }
}

impl HashReader for MemoryLog {
    type Error = HashNotStored;

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, HashNotStored> {
        indexes
            .iter()
            .map(|&index| {
                usize::try_from(index)
                    .ok()
                    .and_then(|i| self.hashes.get(i).copied())
                    .ok_or(HashNotStored {
                        index,
                        stored: self.hashes.len() as u64,
                    })
            })
            .collect()
    }
}

/// Converts an index of a hash this log holds; such an index fits in memory, so in `usize`.
fn to_usize(index: u64) -> usize {
    index as usize
}
