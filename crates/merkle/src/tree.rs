//! Tree hashes and proofs computed from stored hashes (RFC 9162 §2.1.2–2.1.4).
//!
//! Every operation comes in three forms: `*_indexes` lists the stored hashes it needs,
//! `*_from` computes from those hashes, and the plain form does both over a [`HashReader`].
//! The split lets an async store fetch everything in one round trip and then compute without
//! holding a reader across an await. Each needs O(log n) hashes.

use crate::error::{Error, ReadError, check_count, check_size};
use crate::stored::{HashReader, read, stored_hash_index};
use crate::{EMPTY_TREE_HASH, Hash, node_hash};

/// The largest power of two strictly smaller than `size`: RFC 6962's split point `k`.
/// `size` must be at least 2.
pub(crate) fn split_point(size: u64) -> u64 {
    debug_assert!(size >= 2);
    1 << (63 - (size - 1).leading_zeros())
}

/// A range of leaves `[lo, hi)` that is a node of some RFC 6962 tree, so that `lo` is a
/// multiple of every power of two not larger than `hi - lo`. Its hash is the right-to-left
/// fold of its maximal complete subtrees, each of which is stored.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Range {
    pub(crate) lo: u64,
    pub(crate) hi: u64,
}

impl Range {
    /// How many stored hashes make up this range: one per set bit of its width.
    pub(crate) fn hash_count(self) -> usize {
        (self.hi - self.lo).count_ones() as usize
    }

    /// Appends the stored indexes of this range's maximal complete subtrees, left to right.
    pub(crate) fn push_indexes(self, out: &mut Vec<u64>) {
        let mut lo = self.lo;
        while lo < self.hi {
            // Largest power of two that fits in what is left.
            let level = 63 - (self.hi - lo).leading_zeros();
            debug_assert_eq!(lo % (1 << level), 0, "range {self:?} is not a tree node");
            out.push(stored_hash_index(level, lo >> level));
            lo += 1 << level;
        }
    }
}

/// The hash of a range from its maximal complete subtrees (left to right): RFC 6962 splits
/// off the largest power of two on the left, so the tree is these subtrees folded from the
/// right. The empty range is the empty tree.
pub(crate) fn fold_range(hashes: &[Hash]) -> Hash {
    let mut rest = hashes.iter().rev();
    let Some(&last) = rest.next() else {
        return EMPTY_TREE_HASH;
    };
    rest.fold(last, |right, left| node_hash(left, &right))
}

/// Stored indexes for [`tree_hash_from`]: at most one per bit of `n`.
pub fn tree_hash_indexes(n: u64) -> Result<Vec<u64>, Error> {
    check_size(n)?;
    let mut out = Vec::with_capacity(n.count_ones() as usize);
    Range { lo: 0, hi: n }.push_indexes(&mut out);
    Ok(out)
}

/// The root hash of the first `n` records, from the hashes at [`tree_hash_indexes`]`(n)`.
pub fn tree_hash_from(n: u64, hashes: &[Hash]) -> Result<Hash, Error> {
    check_size(n)?;
    check_count(n.count_ones() as usize, hashes.len())?;
    Ok(fold_range(hashes))
}

/// The root hash of the first `n` records (the empty tree's is [`EMPTY_TREE_HASH`]).
pub fn tree_hash<R: HashReader>(n: u64, reader: &R) -> Result<Hash, ReadError<R::Error>> {
    let hashes = read(reader, &tree_hash_indexes(n)?)?;
    Ok(tree_hash_from(n, &hashes)?)
}

/// The subtrees whose hashes form the inclusion proof of record `n` in a tree of size `t`,
/// in proof order (the audit path, leaf to root).
fn inclusion_ranges(t: u64, n: u64) -> Result<Vec<Range>, Error> {
    check_size(t)?;
    if n >= t {
        return Err(Error::IndexOutOfRange { index: n, size: t });
    }
    let (mut lo, mut hi) = (0, t);
    let mut siblings = Vec::with_capacity(64);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if n < lo + k {
            siblings.push(Range { lo: lo + k, hi });
            hi = lo + k;
        } else {
            siblings.push(Range { lo, hi: lo + k });
            lo += k;
        }
    }
    siblings.reverse();
    Ok(siblings)
}

/// The subtrees whose hashes form the consistency proof from size `n` to size `t`, in proof
/// order (RFC 6962 `SUBPROOF`: the deepest common node unless it is the old root itself,
/// then the siblings on the way up).
fn consistency_ranges(t: u64, n: u64) -> Result<Vec<Range>, Error> {
    check_size(t)?;
    if n == 0 || n > t {
        return Err(Error::InvalidTreeSizes { old: n, new: t });
    }
    let (mut lo, mut hi) = (0, t);
    let mut siblings = Vec::with_capacity(64);
    while n != hi {
        let k = split_point(hi - lo);
        if n <= lo + k {
            siblings.push(Range { lo: lo + k, hi });
            hi = lo + k;
        } else {
            siblings.push(Range { lo, hi: lo + k });
            lo += k;
        }
    }
    // [lo, n) is a node of both trees; the verifier knows it already when it is the old root.
    if lo != 0 {
        siblings.push(Range { lo, hi });
    }
    siblings.reverse();
    Ok(siblings)
}

fn ranges_indexes(ranges: &[Range]) -> Vec<u64> {
    let mut out = Vec::with_capacity(ranges.iter().map(|r| r.hash_count()).sum());
    for range in ranges {
        range.push_indexes(&mut out);
    }
    out
}

fn ranges_hashes(ranges: &[Range], hashes: &[Hash]) -> Result<Vec<Hash>, Error> {
    check_count(ranges.iter().map(|r| r.hash_count()).sum(), hashes.len())?;
    let mut rest = hashes;
    let mut proof = Vec::with_capacity(ranges.len());
    for range in ranges {
        let (these, tail) = rest.split_at(range.hash_count());
        proof.push(fold_range(these));
        rest = tail;
    }
    Ok(proof)
}

/// Stored indexes for [`prove_record_from`].
pub fn prove_record_indexes(t: u64, n: u64) -> Result<Vec<u64>, Error> {
    Ok(ranges_indexes(&inclusion_ranges(t, n)?))
}

/// The inclusion proof (RFC 9162 audit path) of record `n` in the tree of size `t`, from the
/// hashes at [`prove_record_indexes`]`(t, n)`.
pub fn prove_record_from(t: u64, n: u64, hashes: &[Hash]) -> Result<Vec<Hash>, Error> {
    ranges_hashes(&inclusion_ranges(t, n)?, hashes)
}

/// The inclusion proof of record `n` in the tree of size `t`; check it with
/// [`check_record`](crate::check_record).
pub fn prove_record<R: HashReader>(
    t: u64,
    n: u64,
    reader: &R,
) -> Result<Vec<Hash>, ReadError<R::Error>> {
    let hashes = read(reader, &prove_record_indexes(t, n)?)?;
    Ok(prove_record_from(t, n, &hashes)?)
}

/// Stored indexes for [`prove_tree_from`].
pub fn prove_tree_indexes(t: u64, n: u64) -> Result<Vec<u64>, Error> {
    Ok(ranges_indexes(&consistency_ranges(t, n)?))
}

/// The consistency proof (RFC 9162 §2.1.4) that the tree of size `t` extends the tree of
/// size `n`, from the hashes at [`prove_tree_indexes`]`(t, n)`.
pub fn prove_tree_from(t: u64, n: u64, hashes: &[Hash]) -> Result<Vec<Hash>, Error> {
    ranges_hashes(&consistency_ranges(t, n)?, hashes)
}

/// The consistency proof that the tree of size `t` extends the tree of size `n`
/// (`1 <= n <= t`); check it with [`check_tree`](crate::check_tree).
pub fn prove_tree<R: HashReader>(
    t: u64,
    n: u64,
    reader: &R,
) -> Result<Vec<Hash>, ReadError<R::Error>> {
    let hashes = read(reader, &prove_tree_indexes(t, n)?)?;
    Ok(prove_tree_from(t, n, &hashes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        for (size, k) in [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (7, 4),
            (8, 4),
            (9, 8),
            (63, 32),
        ] {
            assert_eq!(split_point(size), k, "size {size}");
        }
        assert_eq!(split_point(28937), 16384);
        assert_eq!(split_point(u64::MAX), 1 << 63);
    }

    #[test]
    fn plans_and_computations_reject_bad_inputs() {
        assert_eq!(
            prove_record_indexes(5, 5),
            Err(Error::IndexOutOfRange { index: 5, size: 5 })
        );
        assert_eq!(
            prove_tree_indexes(5, 0),
            Err(Error::InvalidTreeSizes { old: 0, new: 5 })
        );
        assert_eq!(
            prove_tree_indexes(5, 6),
            Err(Error::InvalidTreeSizes { old: 6, new: 5 })
        );
        let too_big = crate::MAX_TREE_SIZE + 1;
        assert_eq!(
            tree_hash_indexes(too_big),
            Err(Error::TreeTooLarge { size: too_big })
        );
        assert_eq!(
            tree_hash_from(3, &[EMPTY_TREE_HASH]),
            Err(Error::HashCount {
                expected: 2,
                actual: 1
            })
        );
        assert_eq!(tree_hash_from(0, &[]), Ok(EMPTY_TREE_HASH));
    }
}
