//! The stored-hash layout, the reader plumbing and the streaming root.

use std::cell::Cell;

use proptest::prelude::*;

use cpis_merkle::{
    EMPTY_TREE_HASH, Error, Hash, HashReader, LeafMismatch, MAX_TREE_SIZE, MemoryLog, ReadError,
    RootBuilder, first_leaf_mismatch, leaf_hash, prove_record, root_of_leaf_hashes,
    split_stored_hash_index, stored_hash_count, stored_hash_index, stored_hashes_for_record,
    stored_hashes_for_record_from, stored_hashes_for_record_indexes,
    stored_hashes_for_records_from, stored_hashes_for_records_indexes, tree_hash,
};

use crate::common::{data, leaf_hashes, log_of};

#[test]
fn index_round_trips() {
    for index in 0..200_000 {
        let (level, n) = split_stored_hash_index(index);
        assert_eq!(stored_hash_index(level, n), index, "index {index}");
    }
    for level in 0..40 {
        for n in 0..300 {
            assert_eq!(
                split_stored_hash_index(stored_hash_index(level, n)),
                (level, n)
            );
        }
    }
}

proptest! {
    #[test]
    fn index_round_trips_up_to_the_largest_tree(index in 0..2 * MAX_TREE_SIZE - 64) {
        let (level, n) = split_stored_hash_index(index);
        prop_assert_eq!(stored_hash_index(level, n), index);
    }

    #[test]
    fn coordinates_round_trip(level in 0u32..62, n in 0u64..1 << 20) {
        // The node must lie in a tree of at most MAX_TREE_SIZE = 2^62 leaves.
        prop_assume!(u64::BITS - (n + 1).leading_zeros() + level <= 62);
        prop_assert_eq!(split_stored_hash_index(stored_hash_index(level, n)), (level, n));
    }
}

#[test]
fn count_formula_matches_what_a_log_stores() {
    let mut log = MemoryLog::new();
    for n in 0..5000u64 {
        assert_eq!(
            stored_hash_count(n),
            log.stored_hashes().len() as u64,
            "n = {n}"
        );
        // Go's formula: the index of the last leaf, plus one, plus its completed subtrees.
        if n > 0 {
            let go = stored_hash_index(0, n - 1) + 1 + u64::from((n - 1).trailing_ones());
            assert_eq!(stored_hash_count(n), go);
        }
        log.append(&data(n));
    }
    assert_eq!(stored_hash_count(0), 0);
    assert_eq!(stored_hash_count(1 << 40), (1 << 41) - 1);
}

/// Counts the hashes read, to show each operation is O(log n).
struct CountingReader<'a> {
    log: &'a MemoryLog,
    reads: Cell<usize>,
    calls: Cell<usize>,
}

impl HashReader for CountingReader<'_> {
    type Error = cpis_merkle::HashNotStored;

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, Self::Error> {
        self.reads.set(self.reads.get() + indexes.len());
        self.calls.set(self.calls.get() + 1);
        self.log.read_hashes(indexes)
    }
}

#[test]
fn appending_through_a_reader_stores_what_the_log_stores() {
    let full = log_of(1100);
    let mut log = MemoryLog::new();
    for n in 0..1100u64 {
        let reader = CountingReader {
            log: &log,
            reads: Cell::new(0),
            calls: Cell::new(0),
        };
        let new = stored_hashes_for_record(n, &data(n), &reader).expect("stored");
        assert!(reader.reads.get() <= 11 && reader.calls.get() <= 1);
        let start = stored_hash_index(0, n) as usize;
        assert_eq!(
            new,
            full.stored_hashes()[start..start + new.len()],
            "record {n}"
        );
        assert_eq!(new.len(), 1 + (n + 1).trailing_zeros() as usize);
        log.append(&data(n));
    }
    assert_eq!(log, full);
}

#[test]
fn batches_append_with_one_read() {
    let full = log_of(600);
    let leaves = leaf_hashes(600);
    // Every split of the first 600 records into a prefix and a batch, for batch lengths
    // that cross many subtree boundaries.
    for n in 0..=600u64 {
        for len in [0u64, 1, 2, 3, 7, 64, 129] {
            let end = (n + len).min(600);
            let reader = CountingReader {
                log: &full,
                reads: Cell::new(0),
                calls: Cell::new(0),
            };
            let indexes = stored_hashes_for_records_indexes(n).expect("small");
            assert!(indexes.len() <= 10);
            let hashes = reader.read_hashes(&indexes).expect("stored");
            let batch = &leaves[n as usize..end as usize];
            let new = stored_hashes_for_records_from(n, batch, &hashes).expect("planned");
            let (from, to) = (
                stored_hash_count(n) as usize,
                stored_hash_count(end) as usize,
            );
            assert_eq!(new, full.stored_hashes()[from..to], "records {n}..{end}");
        }
    }
    assert_eq!(
        stored_hashes_for_records_from(3, &leaves[..1], &[]),
        Err(Error::HashCount {
            expected: 2,
            actual: 0
        })
    );
}

#[test]
fn reads_per_operation_are_logarithmic() {
    let log = log_of(1 << 14);
    let size = log.size();
    let reader = CountingReader {
        log: &log,
        reads: Cell::new(0),
        calls: Cell::new(0),
    };
    for n in [1, 2, 3, 1000, 8191, 12345, size - 1] {
        reader.reads.set(0);
        reader.calls.set(0);
        tree_hash(n + 1, &reader).expect("stored");
        prove_record(size, n, &reader).expect("stored");
        assert!(
            reader.reads.get() <= 3 * 15,
            "{n}: {} reads",
            reader.reads.get()
        );
        assert_eq!(reader.calls.get(), 2, "one round trip each");
    }
}

/// A reader whose store is broken.
struct BrokenReader(Option<usize>);

impl HashReader for BrokenReader {
    type Error = &'static str;

    fn read_hashes(&self, _: &[u64]) -> Result<Vec<Hash>, &'static str> {
        self.0
            .map(|n| vec![EMPTY_TREE_HASH; n])
            .ok_or("database unreachable")
    }
}

#[test]
fn reader_failures_surface() {
    assert!(matches!(
        tree_hash(3, &BrokenReader(None)),
        Err(ReadError::Read("database unreachable"))
    ));
    assert!(matches!(
        tree_hash(3, &BrokenReader(Some(1))),
        Err(ReadError::Tree(Error::HashCount {
            expected: 2,
            actual: 1
        }))
    ));
    let err = tree_hash(3, &BrokenReader(Some(5))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected 2 stored hashes for this computation, got 5"
    );
    // No hashes needed, no read: the empty tree and the first record.
    assert_eq!(
        tree_hash(0, &BrokenReader(None)).ok(),
        Some(EMPTY_TREE_HASH)
    );
    assert!(stored_hashes_for_record(0, b"x", &BrokenReader(None)).is_ok());
    assert_eq!(
        stored_hashes_for_record_from(3, leaf_hash(b"x"), &[]),
        Err(Error::HashCount {
            expected: 2,
            actual: 0
        })
    );
    // Record 3 completes (1, 1) from leaf 2 (index 3) and (2, 0) from (1, 0) (index 2).
    assert_eq!(stored_hashes_for_record_indexes(3), Ok(vec![2, 3]));
    let err = MemoryLog::new().tree_hash(1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "stored hash 0 is not in the log, which holds 0 hashes"
    );
}

#[test]
fn streaming_root_matches_stored_roots() {
    let log = log_of(1025);
    let mut builder = RootBuilder::new();
    assert_eq!(builder.root(), EMPTY_TREE_HASH);
    for n in 0..1025 {
        builder.push_data(&data(n));
        assert_eq!(builder.size(), n + 1);
        assert_eq!(
            Some(builder.root()),
            log.tree_hash(n + 1).ok(),
            "size {}",
            n + 1
        );
    }
    assert_eq!(root_of_leaf_hashes(leaf_hashes(1025)), (1025, log.root()));
    assert_eq!(root_of_leaf_hashes([]), (0, EMPTY_TREE_HASH));
    assert_eq!(log.leaf_hash(7), Some(leaf_hash(&data(7))));
    assert_eq!(log.leaf_hash(1025), None);
}

#[test]
fn first_leaf_mismatch_names_the_first_bad_index() {
    let stored = leaf_hashes(50);
    assert_eq!(first_leaf_mismatch(stored.clone(), stored.clone()), None);

    // An altered event.
    let mut altered = stored.clone();
    altered[17] = leaf_hash(b"altered");
    altered[30] = leaf_hash(b"also altered");
    let m = first_leaf_mismatch(stored.clone(), altered).expect("differs");
    assert_eq!(
        m,
        LeafMismatch {
            index: 17,
            expected: Some(stored[17]),
            actual: Some(leaf_hash(b"altered"))
        }
    );
    assert!(m.to_string().starts_with("record 17: expected leaf hash "));

    // A deleted event shifts the rest: the first index is the deleted one.
    let mut deleted = stored.clone();
    deleted.remove(20);
    assert_eq!(
        first_leaf_mismatch(stored.clone(), deleted).map(|m| m.index),
        Some(20)
    );

    // Missing at the end, or one too many.
    let m = first_leaf_mismatch(stored.clone(), stored[..49].to_vec()).expect("shorter");
    assert_eq!((m.index, m.actual), (49, None));
    assert!(m.to_string().ends_with("found nothing"));
    let mut extra = stored.clone();
    extra.push(leaf_hash(b"extra"));
    let m = first_leaf_mismatch(stored, extra).expect("longer");
    assert_eq!((m.index, m.expected), (50, None));
}
