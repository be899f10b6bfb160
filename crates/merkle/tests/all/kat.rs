//! Known answers: RFC 6962 hashing and the Certificate Transparency test vectors as kept in
//! transparency-dev/merkle (`testonly/constants.go`, `testonly/reference_test.go`).

use cpis_merkle::{
    EMPTY_TREE_HASH, MemoryLog, check_record, check_tree, leaf_hash, node_hash, stored_hash_index,
};

use crate::common::{h, hashes};

/// The eight leaves of the CT test tree, hex-encoded.
const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// Roots of the trees of sizes 1..=8 over `LEAVES`.
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// Every complete subtree of the 8-leaf tree, by level then position.
const NODES: [&[&str]; 4] = [
    &[
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    &[
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    &[
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    &["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
];

/// (tree size, record, audit path).
const INCLUSION: [(u64, u64, &str); 7] = [
    (1, 0, ""),
    (
        2,
        0,
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    ),
    (
        2,
        1,
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    ),
    (
        3,
        2,
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    ),
    (
        5,
        1,
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d
         5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e
         bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ),
    (
        8,
        0,
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7
         5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e
         6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ),
    (
        8,
        5,
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b
         ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0
         d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ),
];

/// (old size, new size, consistency proof).
const CONSISTENCY: [(u64, u64, &str); 4] = [
    (1, 1, ""),
    (
        1,
        8,
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7
         5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e
         6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ),
    (
        2,
        5,
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e
         bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ),
    (
        6,
        8,
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a
         ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0
         d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ),
];

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

fn ct_log(n: usize) -> MemoryLog {
    let mut log = MemoryLog::new();
    for leaf in &LEAVES[..n] {
        log.append(&unhex(leaf));
    }
    log
}

#[test]
fn hash_definitions() {
    // SHA-256("") and SHA-256(0x00): the empty tree and the empty leaf.
    assert_eq!(
        EMPTY_TREE_HASH,
        h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    assert_eq!(
        leaf_hash(b""),
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    );
    // SHA-256(0x01 || leaf("") || leaf(0x00)).
    assert_eq!(node_hash(&leaf_hash(b""), &leaf_hash(&[0])), h(NODES[1][0]));
    // The prefixes matter: a leaf of 64 bytes is not the node of the same 64 bytes.
    let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
    let mut both = a.0.to_vec();
    both.extend_from_slice(&b.0);
    assert_ne!(leaf_hash(&both), node_hash(&a, &b));
}

#[test]
fn roots_of_the_ct_tree() {
    assert_eq!(MemoryLog::new().root(), EMPTY_TREE_HASH);
    let log = ct_log(8);
    for (size, root) in ROOTS.iter().enumerate() {
        let size = size + 1;
        assert_eq!(ct_log(size).root(), h(root), "root of size {size}");
        assert_eq!(
            log.tree_hash(size as u64).ok(),
            Some(h(root)),
            "tree_hash({size})"
        );
    }
}

#[test]
fn every_node_of_the_ct_tree_is_stored_where_the_layout_says() {
    let log = ct_log(8);
    assert_eq!(log.stored_hashes().len(), 15);
    for (level, nodes) in NODES.iter().enumerate() {
        for (n, node) in nodes.iter().enumerate() {
            let index = stored_hash_index(level as u32, n as u64) as usize;
            assert_eq!(log.stored_hashes()[index], h(node), "node ({level}, {n})");
        }
    }
}

#[test]
fn inclusion_vectors() {
    let log = ct_log(8);
    for (size, index, proof) in INCLUSION {
        let want = hashes(proof);
        let got = log.prove_record(size, index).expect("in range");
        assert_eq!(got, want, "inclusion of {index} in {size}");
        let root = h(ROOTS[size as usize - 1]);
        let leaf = leaf_hash(&unhex(LEAVES[index as usize]));
        assert_eq!(check_record(&want, size, root, index, leaf), Ok(()));
    }
}

#[test]
fn consistency_vectors() {
    let log = ct_log(8);
    for (old, new, proof) in CONSISTENCY {
        let want = hashes(proof);
        let got = log.prove_tree(new, old).expect("valid sizes");
        assert_eq!(got, want, "consistency {old} -> {new}");
        let (old_root, new_root) = (h(ROOTS[old as usize - 1]), h(ROOTS[new as usize - 1]));
        assert_eq!(check_tree(&want, new, new_root, old, old_root), Ok(()));
    }
}
