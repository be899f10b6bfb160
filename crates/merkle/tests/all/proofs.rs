//! Proofs generated and checked for every tree size up to 300, for random sizes up to
//! 100,000, and forged proofs rejected.

use std::sync::LazyLock;

use proptest::prelude::*;

use cpis_merkle::{
    Error, Hash, HashReader, MemoryLog, RootBuilder, check_record, check_tree,
    consistency_proof_len, inclusion_proof_len, leaf_hash, prove_record_from, prove_record_indexes,
    prove_tree_from, prove_tree_indexes, tree_hash_from, tree_hash_indexes,
};

use crate::common::{data, log_of};
use crate::oracle::{ct_accepts_consistency, ct_accepts_inclusion};

const SMALL: u64 = 300;
const LARGE: u64 = 100_000;

/// Built once for all proptest cases.
static LARGE_LOG: LazyLock<MemoryLog> = LazyLock::new(|| log_of(LARGE));

/// The root of every prefix of `LARGE_LOG`, computed independently of the stored hashes.
static LARGE_ROOTS: LazyLock<Vec<Hash>> = LazyLock::new(|| {
    let mut builder = RootBuilder::new();
    let mut roots = vec![builder.root()];
    for i in 0..LARGE {
        builder.push(leaf_hash(&data(i)));
        roots.push(builder.root());
    }
    roots
});

/// Bits needed to write `size`: proofs and plans must stay within a small multiple of it.
fn bits(size: u64) -> usize {
    (64 - size.leading_zeros()) as usize
}

#[test]
fn every_inclusion_and_consistency_proof_up_to_300() {
    let log = log_of(SMALL);
    let mut roots = vec![];
    for size in 0..=SMALL {
        roots.push(log.tree_hash(size).expect("stored"));
    }
    for size in 1..=SMALL {
        let root = roots[size as usize];
        for index in 0..size {
            let indexes = prove_record_indexes(size, index).expect("in range");
            assert!(indexes.len() <= 2 * bits(size), "{size}: {indexes:?}");
            let hashes = log.read_hashes(&indexes).expect("stored");
            let proof = prove_record_from(size, index, &hashes).expect("planned");
            assert_eq!(log.prove_record(size, index).ok(), Some(proof.clone()));
            assert_eq!(inclusion_proof_len(size, index), Some(proof.len()));
            let leaf = leaf_hash(&data(index));
            assert_eq!(check_record(&proof, size, root, index, leaf), Ok(()));
        }
        for old in 1..=size {
            let indexes = prove_tree_indexes(size, old).expect("valid sizes");
            assert!(
                indexes.len() <= 2 * bits(size),
                "{old}->{size}: {indexes:?}"
            );
            let hashes = log.read_hashes(&indexes).expect("stored");
            let proof = prove_tree_from(size, old, &hashes).expect("planned");
            assert_eq!(log.prove_tree(size, old).ok(), Some(proof.clone()));
            assert_eq!(consistency_proof_len(size, old), Some(proof.len()));
            let old_root = roots[old as usize];
            assert_eq!(check_tree(&proof, size, root, old, old_root), Ok(()));
        }
        let indexes = tree_hash_indexes(size).expect("small");
        assert!(indexes.len() <= bits(size));
        let hashes = log.read_hashes(&indexes).expect("stored");
        assert_eq!(tree_hash_from(size, &hashes), Ok(root));
    }
}

/// Every way of spoiling an inclusion proof of `index` in a tree of `size`.
fn assert_inclusion_forgeries_rejected(log: &MemoryLog, size: u64, index: u64) {
    let root = log.tree_hash(size).expect("stored");
    let leaf = leaf_hash(&data(index));
    let proof = log.prove_record(size, index).expect("in range");
    let check = |p: &[Hash], t: u64, n: u64, l: Hash| check_record(p, t, root, n, l);
    for i in 0..proof.len() {
        for bit in [0, 77, 255] {
            let mut forged = proof.clone();
            forged[i].0[bit / 8] ^= 1 << (bit % 8);
            let err = check(&forged, size, index, leaf);
            assert!(
                matches!(err, Err(Error::InclusionMismatch { .. })),
                "bit {bit} of hash {i}: {err:?}"
            );
        }
    }
    if !proof.is_empty() {
        let err = check(&proof[..proof.len() - 1], size, index, leaf);
        assert!(matches!(err, Err(Error::InclusionProofLength { .. })));
        let err = check(&proof[1..], size, index, leaf);
        assert!(matches!(err, Err(Error::InclusionProofLength { .. })));
    }
    let mut longer = proof.clone();
    longer.push(root);
    assert!(matches!(
        check(&longer, size, index, leaf),
        Err(Error::InclusionProofLength { .. })
    ));
    let mut flipped_leaf = leaf;
    flipped_leaf.0[0] ^= 1;
    assert!(check(&proof, size, index, flipped_leaf).is_err());
    for other in [index.wrapping_sub(1), index + 1] {
        if other < size {
            assert!(check(&proof, size, other, leaf).is_err(), "index {other}");
            let other_leaf = leaf_hash(&data(other));
            assert!(
                check(&proof, size, other, other_leaf).is_err(),
                "index {other}"
            );
        }
    }
    // A proof does not carry its tree size: checked against another size's own root, it
    // must fail.
    for other_size in [size - 1, size + 1] {
        if index < other_size {
            let other_root = log.tree_hash(other_size).expect("stored");
            let err = check_record(&proof, other_size, other_root, index, leaf);
            assert!(err.is_err(), "size {other_size}");
        }
    }
    assert_eq!(
        check(&proof, size, size, leaf),
        Err(Error::IndexOutOfRange { index: size, size })
    );
}

/// Every way of spoiling a consistency proof from `old` to `size`.
fn assert_consistency_forgeries_rejected(log: &MemoryLog, size: u64, old: u64) {
    let (root, old_root) = (log.tree_hash(size).unwrap(), log.tree_hash(old).unwrap());
    let proof = log.prove_tree(size, old).expect("valid sizes");
    let check = |p: &[Hash], t: u64, n: u64| check_tree(p, t, root, n, old_root);
    for i in 0..proof.len() {
        for bit in [0, 100, 255] {
            let mut forged = proof.clone();
            forged[i].0[bit / 8] ^= 1 << (bit % 8);
            assert!(check(&forged, size, old).is_err(), "bit {bit} of hash {i}");
        }
    }
    if !proof.is_empty() {
        let err = check(&proof[..proof.len() - 1], size, old);
        assert!(matches!(err, Err(Error::ConsistencyProofLength { .. })));
    }
    let mut longer = proof.clone();
    longer.insert(0, old_root);
    assert!(matches!(
        check(&longer, size, old),
        Err(Error::ConsistencyProofLength { .. })
    ));
    // Checked between other sizes, with those sizes' own roots, it must fail.
    for (n, t) in [
        (old - 1, size),
        (old + 1, size),
        (old, size + 1),
        (old, size - 1),
    ] {
        if n >= 1 && n <= t && (n, t) != (old, size) {
            let (n_root, t_root) = (log.tree_hash(n).unwrap(), log.tree_hash(t).unwrap());
            let err = check_tree(&proof, t, t_root, n, n_root);
            assert!(err.is_err(), "sizes {n} -> {t}");
        }
    }
    // The same proof against a root that is not the tree's.
    let mut wrong = root;
    wrong.0[31] ^= 0x80;
    assert!(check_tree(&proof, size, wrong, old, old_root).is_err());
    if old < size {
        let mut wrong_old = old_root;
        wrong_old.0[0] ^= 1;
        assert!(check_tree(&proof, size, root, old, wrong_old).is_err());
    }
}

#[test]
fn forged_proofs_are_rejected() {
    let log = log_of(71);
    for size in 1..=70 {
        for index in 0..size {
            assert_inclusion_forgeries_rejected(&log, size, index);
        }
        for old in 1..=size {
            assert_consistency_forgeries_rejected(&log, size, old);
        }
    }
}

#[test]
fn error_messages_name_the_record_and_sizes() {
    let log = log_of(8);
    let (root, leaf) = (log.root(), leaf_hash(&data(5)));
    let mut proof = log.prove_record(8, 5).unwrap();
    let err = check_record(&proof[..2], 8, root, 5, leaf).unwrap_err();
    assert_eq!(
        err.to_string(),
        "inclusion proof for record 5 in a tree of size 8 must have 3 hashes, got 2"
    );
    proof[1].0[0] ^= 1;
    let err = check_record(&proof, 8, root, 5, leaf)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("inclusion proof for record 5 leads to root "),
        "{err}"
    );
    assert!(
        err.ends_with(&format!("but the tree of size 8 has root {root}")),
        "{err}"
    );
    let err = check_tree(&[], 8, root, 9, root).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no consistency proof from tree size 9 to tree size 8: need 1 <= old <= new"
    );
}

#[test]
fn equal_sizes_need_equal_roots() {
    let log = log_of(5);
    let root = log.root();
    assert_eq!(log.prove_tree(5, 5).ok(), Some(vec![]));
    assert_eq!(check_tree(&[], 5, root, 5, root), Ok(()));
    let other = log.tree_hash(4).unwrap();
    assert!(matches!(
        check_tree(&[], 5, root, 5, other),
        Err(Error::ConsistencyNewRootMismatch { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn inclusion_at_random_sizes((size, index) in (1..=LARGE).prop_flat_map(|t| (Just(t), 0..t))) {
        let root = LARGE_ROOTS[size as usize];
        prop_assert_eq!(LARGE_LOG.tree_hash(size).ok(), Some(root));
        let proof = LARGE_LOG.prove_record(size, index).expect("in range");
        prop_assert!(proof.len() <= bits(size));
        prop_assert_eq!(check_record(&proof, size, root, index, leaf_hash(&data(index))), Ok(()));
        prop_assert!(ct_accepts_inclusion(root, size, index, &proof));
    }

    #[test]
    fn consistency_at_random_sizes((size, old) in (1..=LARGE).prop_flat_map(|t| (Just(t), 1..=t))) {
        let (root, old_root) = (LARGE_ROOTS[size as usize], LARGE_ROOTS[old as usize]);
        let proof = LARGE_LOG.prove_tree(size, old).expect("valid sizes");
        prop_assert!(proof.len() <= 2 * bits(size));
        prop_assert_eq!(check_tree(&proof, size, root, old, old_root), Ok(()));
        prop_assert!(ct_accepts_consistency((old, old_root), (size, root), &proof));
    }
}
