//! The stored-hash layout: every leaf hash and every complete-subtree hash, stored once, at
//! an index computable from its tree coordinates.
//!
//! A node at `(level, n)` covers the leaves `[n << level, (n + 1) << level)`. Hashes are
//! numbered in the order an append-only log completes them (Crosby and Wallach, "Efficient
//! Data Structures for Tamper-Evident Logging", §3.3; Go's `sumdb/tlog`): appending record
//! `n` writes its leaf hash and then one hash per subtree it completes, so the stored hashes
//! are themselves append-only and a database can keep them in one insert-only table keyed by
//! index. Any root or proof then needs only O(log n) of them.

use crate::error::{Error, ReadError, check_count, check_size};
use crate::stream::RootBuilder;
use crate::{Hash, leaf_hash, node_hash};

/// Reads stored hashes by index (see [`stored_hash_index`]).
///
/// Implementations must return exactly one hash per index, in the order asked; they may be
/// faster when the indexes are sorted, but callers here do not promise that. An async store
/// should instead use the `*_indexes` / `*_from` pairs (e.g. [`crate::tree_hash_indexes`] and
/// [`crate::tree_hash_from`]): fetch the listed indexes in one round trip, then compute.
pub trait HashReader {
    /// The reader's error, e.g. a database error.
    type Error;

    /// Returns the hashes stored at `indexes`, in the same order.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, Self::Error>;
}

impl<R: HashReader + ?Sized> HashReader for &R {
    type Error = R::Error;

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, Self::Error> {
        (**self).read_hashes(indexes)
    }
}

/// Maps the tree coordinates `(level, n)` to the node's stored-hash index.
///
/// Valid for every node of a tree of at most [`MAX_TREE_SIZE`](crate::MAX_TREE_SIZE) leaves.
pub fn stored_hash_index(level: u32, n: u64) -> u64 {
    // The node (level, n) is stored right after the leaf that completes it, the last leaf of
    // its range, followed by the `level` hashes that leaf completes (lowest level first).
    let last_leaf = ((n + 1) << level) - 1;
    leaf_stored_index(last_leaf) + u64::from(level)
}

/// The stored index of leaf `n`: `n + n/2 + n/4 + ...`, because the leaves before it
/// completed `n/2` subtrees of level 1, `n/4` of level 2, and so on.
fn leaf_stored_index(n: u64) -> u64 {
    // n + n/2 + n/4 + ... = 2n - popcount(n).
    2 * n - u64::from(n.count_ones())
}

/// The inverse of [`stored_hash_index`]: the `(level, n)` of the node stored at `index`.
///
/// Valid for the indexes of trees of at most [`MAX_TREE_SIZE`](crate::MAX_TREE_SIZE) leaves,
/// that is below [`stored_hash_count`]`(MAX_TREE_SIZE)`.
pub fn split_stored_hash_index(index: u64) -> (u32, u64) {
    // Find the last leaf stored at or before `index`. leaf_stored_index(n) lies in
    // [2n - 64, 2n], so that leaf is at most 64 steps above index / 2.
    let mut leaf = index / 2;
    let mut leaf_index = leaf_stored_index(leaf);
    debug_assert!(leaf_index <= index);
    loop {
        // Leaf `leaf` is followed by one hash per subtree it completes.
        let next = leaf_index + 1 + u64::from((leaf + 1).trailing_zeros());
        if next > index {
            break;
        }
        leaf += 1;
        leaf_index = next;
    }
    // The hashes after a leaf number at most 63 (its trailing ones), so this cannot truncate.
    let level = (index - leaf_index) as u32;
    (level, leaf >> level)
}

/// How many hashes are stored for a tree of `n` records.
pub fn stored_hash_count(n: u64) -> u64 {
    // Exactly the hashes stored before record n's leaf would be.
    leaf_stored_index(n)
}

/// The stored indexes [`stored_hashes_for_record_from`] needs to append record `n`: the
/// roots of the subtrees that record `n`'s new subtrees complete, in increasing order.
pub fn stored_hashes_for_record_indexes(n: u64) -> Result<Vec<u64>, Error> {
    check_size(n.saturating_add(1))?;
    // Each trailing 1 bit of n means record n completes a subtree of that level, whose left
    // half (already stored) is read to compute the new hash.
    let completed = (n + 1).trailing_zeros();
    Ok((0..completed)
        .rev()
        .map(|level| stored_hash_index(level, (n >> level) - 1))
        .collect())
}

/// The hashes to store when appending record `n` whose leaf hash is `leaf`: the leaf hash,
/// then the hashes of the subtrees it completes, lowest first. Store them at consecutive
/// indexes starting at `stored_hash_index(0, n)`.
///
/// `hashes` are the stored hashes at [`stored_hashes_for_record_indexes`]`(n)`, in order.
pub fn stored_hashes_for_record_from(
    n: u64,
    leaf: Hash,
    hashes: &[Hash],
) -> Result<Vec<Hash>, Error> {
    check_size(n.saturating_add(1))?;
    let completed = (n + 1).trailing_zeros() as usize;
    check_count(completed, hashes.len())?;
    let mut out = Vec::with_capacity(1 + completed);
    let mut h = leaf;
    out.push(h);
    // `hashes` lists the left siblings highest level first, so walk it from the end.
    for left in hashes.iter().rev() {
        h = node_hash(left, &h);
        out.push(h);
    }
    Ok(out)
}

/// The hashes to store when appending record `n` with `data`, reading the few earlier hashes
/// needed (at most log2 n) from `reader`. See [`stored_hashes_for_record_from`].
pub fn stored_hashes_for_record<R: HashReader>(
    n: u64,
    data: &[u8],
    reader: &R,
) -> Result<Vec<Hash>, ReadError<R::Error>> {
    stored_hashes_for_leaf_hash(n, leaf_hash(data), reader)
}

/// Like [`stored_hashes_for_record`], for a record whose leaf hash is already known.
pub fn stored_hashes_for_leaf_hash<R: HashReader>(
    n: u64,
    leaf: Hash,
    reader: &R,
) -> Result<Vec<Hash>, ReadError<R::Error>> {
    let indexes = stored_hashes_for_record_indexes(n)?;
    let hashes = read(reader, &indexes)?;
    Ok(stored_hashes_for_record_from(n, leaf, &hashes)?)
}

/// Stored indexes for [`stored_hashes_for_records_from`]: whatever the batch's length, only
/// the maximal complete subtrees of the first `n` records (those of [`crate::tree_hash_indexes`]),
/// at most one per bit of `n`.
pub fn stored_hashes_for_records_indexes(n: u64) -> Result<Vec<u64>, Error> {
    crate::tree_hash_indexes(n)
}

/// The hashes to store when appending a batch of records `n, n + 1, ...` with these leaf
/// hashes, in one go: store them at consecutive indexes from [`stored_hash_count`]`(n)`.
///
/// `hashes` are the stored hashes at [`stored_hashes_for_records_indexes`]`(n)`: one read
/// for the whole batch, which is what lets the audit service append a batch of events in a
/// single database round trip.
pub fn stored_hashes_for_records_from(
    n: u64,
    leaves: &[Hash],
    hashes: &[Hash],
) -> Result<Vec<Hash>, Error> {
    check_size(n.saturating_add(leaves.len() as u64))?;
    let mut builder = RootBuilder::resume(n, hashes)?;
    // Two stored hashes per record on average, plus the tail of the last one's completions.
    let mut out = Vec::with_capacity(2 * leaves.len() + 64);
    for &leaf in leaves {
        builder.push_with(leaf, |h| out.push(h));
    }
    Ok(out)
}

/// Reads `indexes` (skipping the reader when there are none) and checks the count.
pub(crate) fn read<R: HashReader>(
    reader: &R,
    indexes: &[u64],
) -> Result<Vec<Hash>, ReadError<R::Error>> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = reader.read_hashes(indexes).map_err(ReadError::Read)?;
    check_count(indexes.len(), hashes.len())?;
    Ok(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go's `StoredHashIndex`, transcribed literally, as an oracle for the closed form.
    fn go_stored_hash_index(level: u32, mut n: u64) -> u64 {
        for _ in 0..level {
            n = 2 * n + 1;
        }
        let mut i = 0;
        while n > 0 {
            i += n;
            n >>= 1;
        }
        i + u64::from(level)
    }

    #[test]
    fn closed_form_matches_go_loop() {
        for level in 0..12 {
            for n in 0..2000 {
                assert_eq!(
                    stored_hash_index(level, n),
                    go_stored_hash_index(level, n),
                    "({level}, {n})"
                );
            }
        }
        let big = MAX / 2;
        assert_eq!(stored_hash_index(0, big), go_stored_hash_index(0, big));
        assert_eq!(stored_hash_index(61, 1), go_stored_hash_index(61, 1));
    }

    const MAX: u64 = crate::MAX_TREE_SIZE;

    #[test]
    fn index_order_is_the_append_order() {
        // Indexes 0..13 for 8 records: 0 1 (1,0) 2 3 (1,1) (2,0) 4 5 (1,2) 6 7 (1,3) (2,1) (3,0).
        let expected = [
            (0, 0),
            (0, 1),
            (1, 0),
            (0, 2),
            (0, 3),
            (1, 1),
            (2, 0),
            (0, 4),
            (0, 5),
            (1, 2),
            (0, 6),
            (0, 7),
            (1, 3),
            (2, 1),
            (3, 0),
        ];
        for (index, &(level, n)) in expected.iter().enumerate() {
            assert_eq!(stored_hash_index(level, n), index as u64);
            assert_eq!(split_stored_hash_index(index as u64), (level, n));
        }
        assert_eq!(stored_hash_count(8), 15);
    }
}
