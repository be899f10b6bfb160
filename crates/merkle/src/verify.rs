//! Checking inclusion and consistency proofs against tree hashes (RFC 9162 §2.1.3.2 and
//! §2.1.4.2), as an outside auditor does. These need no stored hashes and accept any tree
//! size a server may claim.

use crate::error::Error;
use crate::tree::split_point;
use crate::{Hash, node_hash};

/// The path from the root of a tree of `size` leaves down to record `index`: one bit per
/// level, least significant bit for the level just above the leaf, set where the sibling is
/// on the left. At most 64 levels, since each step at least halves the remaining width.
fn inclusion_path(size: u64, index: u64) -> (u64, usize) {
    let (mut lo, mut hi) = (0, size);
    let (mut left_siblings, mut depth) = (0u64, 0usize);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        left_siblings <<= 1;
        if index < lo + k {
            hi = lo + k;
        } else {
            lo += k;
            left_siblings |= 1;
        }
        depth += 1;
    }
    (left_siblings, depth)
}

/// The path from the root of a tree of `new` leaves down to the deepest node ending at leaf
/// `old`, as in [`inclusion_path`], and whether that node is the old tree itself (it starts
/// at leaf 0), in which case the proof does not carry its hash.
fn consistency_path(new: u64, old: u64) -> (u64, usize, bool) {
    let (mut lo, mut hi) = (0, new);
    let (mut left_siblings, mut depth) = (0u64, 0usize);
    while old != hi {
        let k = split_point(hi - lo);
        left_siblings <<= 1;
        if old <= lo + k {
            hi = lo + k;
        } else {
            lo += k;
            left_siblings |= 1;
        }
        depth += 1;
    }
    (left_siblings, depth, lo == 0)
}

/// The number of hashes in the inclusion proof of record `n` in a tree of size `t`, or
/// `None` if `n >= t`.
pub fn inclusion_proof_len(t: u64, n: u64) -> Option<usize> {
    (n < t).then(|| inclusion_path(t, n).1)
}

/// The number of hashes in the consistency proof from size `n` to size `t`, or `None`
/// unless `1 <= n <= t`.
pub fn consistency_proof_len(t: u64, n: u64) -> Option<usize> {
    (n >= 1 && n <= t).then(|| {
        let (_, depth, old_is_node) = consistency_path(t, n);
        depth + usize::from(!old_is_node)
    })
}

/// Checks that `proof` shows that the tree of size `t` with root `tree_hash` has record `n`
/// with leaf hash `leaf`.
pub fn check_record(
    proof: &[Hash],
    t: u64,
    tree_hash: Hash,
    n: u64,
    leaf: Hash,
) -> Result<(), Error> {
    if n >= t {
        return Err(Error::IndexOutOfRange { index: n, size: t });
    }
    let (left_siblings, depth) = inclusion_path(t, n);
    if proof.len() != depth {
        return Err(Error::InclusionProofLength {
            index: n,
            size: t,
            expected: depth,
            actual: proof.len(),
        });
    }
    let mut h = leaf;
    for (level, sibling) in proof.iter().enumerate() {
        h = if (left_siblings >> level) & 1 == 1 {
            node_hash(sibling, &h)
        } else {
            node_hash(&h, sibling)
        };
    }
    if h != tree_hash {
        return Err(Error::InclusionMismatch {
            index: n,
            size: t,
            computed: h,
            expected: tree_hash,
        });
    }
    Ok(())
}

/// Checks that `proof` shows that the tree of size `t` with root `tree_hash_t` extends the
/// tree of size `n` with root `tree_hash_n` (`1 <= n <= t`).
pub fn check_tree(
    proof: &[Hash],
    t: u64,
    tree_hash_t: Hash,
    n: u64,
    tree_hash_n: Hash,
) -> Result<(), Error> {
    if n == 0 || n > t {
        return Err(Error::InvalidTreeSizes { old: n, new: t });
    }
    let (left_siblings, depth, old_is_node) = consistency_path(t, n);
    let expected = depth + usize::from(!old_is_node);
    if proof.len() != expected {
        return Err(Error::ConsistencyProofLength {
            old: n,
            new: t,
            expected,
            actual: proof.len(),
        });
    }
    // Rebuild both roots from the deepest node they share: the old tree's root only takes
    // the siblings on its left, the new tree's takes them all.
    let (start, path) = if old_is_node {
        (tree_hash_n, proof)
    } else {
        (proof[0], &proof[1..])
    };
    let (mut old_root, mut new_root) = (start, start);
    for (level, sibling) in path.iter().enumerate() {
        if (left_siblings >> level) & 1 == 1 {
            old_root = node_hash(sibling, &old_root);
            new_root = node_hash(sibling, &new_root);
        } else {
            new_root = node_hash(&new_root, sibling);
        }
    }
    if old_root != tree_hash_n {
        return Err(Error::ConsistencyOldRootMismatch {
            old: n,
            new: t,
            computed: old_root,
            expected: tree_hash_n,
        });
    }
    if new_root != tree_hash_t {
        return Err(Error::ConsistencyNewRootMismatch {
            old: n,
            new: t,
            computed: new_root,
            expected: tree_hash_t,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_lengths_for_small_trees() {
        assert_eq!(inclusion_proof_len(1, 0), Some(0));
        assert_eq!(inclusion_proof_len(8, 5), Some(3));
        assert_eq!(inclusion_proof_len(5, 4), Some(1));
        assert_eq!(inclusion_proof_len(5, 5), None);
        assert_eq!(consistency_proof_len(8, 8), Some(0));
        assert_eq!(consistency_proof_len(8, 4), Some(1));
        assert_eq!(consistency_proof_len(8, 6), Some(3));
        assert_eq!(consistency_proof_len(5, 2), Some(2));
        assert_eq!(consistency_proof_len(5, 0), None);
    }

    #[test]
    fn checks_accept_sizes_beyond_what_can_be_stored() {
        // A server may claim any size; the checker must answer, not overflow.
        let t = u64::MAX;
        let depth = inclusion_proof_len(t, t - 1).unwrap_or(0);
        assert!(depth <= 64);
        let err = check_record(&[], t, Hash::default(), t - 1, Hash::default());
        assert!(matches!(err, Err(Error::InclusionProofLength { .. })));
        let err = check_tree(&[], t, Hash::default(), t - 1, Hash::default());
        assert!(matches!(err, Err(Error::ConsistencyProofLength { .. })));
    }
}
