//! Cross-checks against two independent implementations used only as oracles: the
//! `ct-merkle` crate, and the RFC 6962 definitions transcribed in `common`.

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use sha2::Sha256;

use cpis_merkle::{EMPTY_TREE_HASH, Hash, MemoryLog};

use crate::common::{data, leaf_hashes, ref_consistency, ref_path, ref_root};

/// Sizes checked exhaustively: every record and every pair of sizes.
const SIZES: u64 = 300;

fn concat(hashes: &[Hash]) -> Vec<u8> {
    hashes.iter().flat_map(|h| h.0).collect()
}

/// `ct-merkle`'s view of our root.
pub(crate) fn ct_root(root: Hash, size: u64) -> RootHash<Sha256> {
    RootHash::new(ct_merkle::array::Array::from(root.0), size)
}

/// Checks our inclusion proof with `ct-merkle`'s verifier.
pub(crate) fn ct_accepts_inclusion(root: Hash, size: u64, index: u64, proof: &[Hash]) -> bool {
    let proof = InclusionProof::<Sha256>::from_bytes(concat(proof));
    ct_root(root, size)
        .verify_inclusion(&data(index), index, &proof)
        .is_ok()
}

/// Checks our consistency proof with `ct-merkle`'s verifier.
pub(crate) fn ct_accepts_consistency(old: (u64, Hash), new: (u64, Hash), proof: &[Hash]) -> bool {
    let proof = ConsistencyProof::<Sha256>::try_from_bytes(concat(proof)).expect("whole hashes");
    ct_root(new.1, new.0)
        .verify_consistency(&ct_root(old.1, old.0), &proof)
        .is_ok()
}

#[test]
fn roots_and_proofs_match_ct_merkle_byte_for_byte() {
    let mut ours = MemoryLog::new();
    let mut theirs = MemoryBackedTree::<Sha256, Vec<u8>>::new();
    assert_eq!(ours.root(), EMPTY_TREE_HASH);
    for size in 1..=SIZES {
        ours.append(&data(size - 1));
        theirs.push(data(size - 1));
        assert_eq!(
            ours.root().0.as_slice(),
            theirs.root().as_bytes().as_slice(),
            "root of size {size}"
        );
        for index in 0..size {
            let proof = ours.prove_record(size, index).expect("in range");
            assert_eq!(
                concat(&proof),
                theirs.prove_inclusion(index as usize).as_bytes(),
                "inclusion of {index} in {size}"
            );
        }
        for old in 1..=size {
            let proof = ours.prove_tree(size, old).expect("valid sizes");
            assert_eq!(
                concat(&proof),
                theirs.prove_consistency((size - old) as usize).as_bytes(),
                "consistency {old} -> {size}"
            );
        }
    }
}

#[test]
fn ct_merkle_verifies_our_proofs() {
    let log = crate::common::log_of(SIZES);
    for size in (1..=SIZES).step_by(7) {
        let root = log.tree_hash(size).expect("stored");
        for index in 0..size {
            let proof = log.prove_record(size, index).expect("in range");
            assert!(ct_accepts_inclusion(root, size, index, &proof));
        }
        for old in 1..=size {
            let old_root = log.tree_hash(old).expect("stored");
            let proof = log.prove_tree(size, old).expect("valid sizes");
            assert!(ct_accepts_consistency(
                (old, old_root),
                (size, root),
                &proof
            ));
        }
    }
}

#[test]
fn roots_and_proofs_match_the_rfc_definitions() {
    let leaves = leaf_hashes(100);
    let log = crate::common::log_of(100);
    for size in 1..=100usize {
        let prefix = &leaves[..size];
        assert_eq!(log.tree_hash(size as u64).ok(), Some(ref_root(prefix)));
        for index in 0..size {
            assert_eq!(
                log.prove_record(size as u64, index as u64).ok(),
                Some(ref_path(index, prefix)),
                "PATH({index}, D[{size}])"
            );
        }
        for old in 1..=size {
            assert_eq!(
                log.prove_tree(size as u64, old as u64).ok(),
                Some(ref_consistency(old, prefix)),
                "PROOF({old}, D[{size}])"
            );
        }
    }
}
