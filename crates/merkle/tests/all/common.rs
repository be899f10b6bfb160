//! Shared test data and a reference implementation written straight from RFC 6962 §2.1.

use cpis_merkle::{Hash, MemoryLog, leaf_hash, node_hash};

/// The synthetic record `i`.
pub(crate) fn data(i: u64) -> Vec<u8> {
    format!("audit event {i}").into_bytes()
}

/// A log of the synthetic records `0..n`.
pub(crate) fn log_of(n: u64) -> MemoryLog {
    let mut log = MemoryLog::new();
    for i in 0..n {
        log.append(&data(i));
    }
    log
}

/// Parses a hex hash, panicking on bad test data.
pub(crate) fn h(hex: &str) -> Hash {
    hex.parse().expect("test vector is 64 hex digits")
}

/// Parses a run of concatenated hex hashes.
pub(crate) fn hashes(hex: &str) -> Vec<Hash> {
    let hex: String = hex.split_whitespace().collect();
    (0..hex.len() / 64)
        .map(|i| h(&hex[64 * i..64 * (i + 1)]))
        .collect()
}

/// The largest power of two strictly smaller than `n` (n >= 2).
fn k(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// MTH(D[n]) over leaf hashes.
pub(crate) fn ref_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => cpis_merkle::EMPTY_TREE_HASH,
        1 => leaves[0],
        n => node_hash(&ref_root(&leaves[..k(n)]), &ref_root(&leaves[k(n)..])),
    }
}

/// PATH(m, D[n]).
pub(crate) fn ref_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = k(n);
    let (mut path, sibling) = if m < k {
        (ref_path(m, &leaves[..k]), ref_root(&leaves[k..]))
    } else {
        (ref_path(m - k, &leaves[k..]), ref_root(&leaves[..k]))
    };
    path.push(sibling);
    path
}

/// PROOF(m, D[n]) = SUBPROOF(m, D[n], true).
pub(crate) fn ref_consistency(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    fn subproof(m: usize, leaves: &[Hash], complete: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if complete {
                Vec::new()
            } else {
                vec![ref_root(leaves)]
            };
        }
        let k = k(n);
        let (mut proof, sibling) = if m <= k {
            (subproof(m, &leaves[..k], complete), ref_root(&leaves[k..]))
        } else {
            (subproof(m - k, &leaves[k..], false), ref_root(&leaves[..k]))
        };
        proof.push(sibling);
        proof
    }
    subproof(m, leaves, true)
}

/// The leaf hashes of the synthetic records `0..n`.
pub(crate) fn leaf_hashes(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&data(i))).collect()
}
