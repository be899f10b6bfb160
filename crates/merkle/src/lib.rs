//! The CP-IS audit log's tamper-evident core: an RFC 6962 (RFC 9162 §2.1) Merkle tree over
//! the audit events, kept as "stored hashes" so that roots and proofs cost O(log n) reads,
//! and C2SP checkpoints (tlog-checkpoint in a signed note) that outside tools can verify.
//!
//! Pure and synchronous: the audit service supplies the hashes from its database, through a
//! [`HashReader`] or through the plan-then-compute functions (`*_indexes`, then `*_from`),
//! and `cpis audit verify` checks what the service hands out with [`check_record`],
//! [`check_tree`] and [`checkpoint::open`].
//!
//! # The log format
//! - Leaf `i` is the `i`-th event's canonical bytes; its hash is SHA-256(0x00 || bytes), an
//!   interior node's is SHA-256(0x01 || left || right), and a tree of `n > 1` leaves splits at
//!   the largest power of two below `n`. The empty tree's root is SHA-256("").
//! - Proofs are RFC 9162 audit paths and consistency proofs (lists of 32-byte hashes,
//!   leaf-side first), so any RFC 6962/9162 verifier accepts them.
//! - Stored hashes follow Go's `sumdb/tlog` numbering ([`stored_hash_index`]).
//!
//! # Appending, with a database
//! To append the events `n, n + 1, ...` (one sequencer at a time): read the stored hashes at
//! [`stored_hashes_for_records_indexes`]`(n)` (at most 62), compute
//! [`stored_hashes_for_records_from`]`(n, &leaf_hashes, &hashes)`, and insert the result at
//! the indexes from [`stored_hash_count`]`(n)` on, in the same transaction as the events.
//! Roots and proofs then read only O(log n) rows each.
//!
//! Modelled on Go's `golang.org/x/mod/sumdb/tlog` and `sumdb/note`.

pub mod checkpoint;
mod error;
mod hash;
mod memory;
pub mod note;
mod stored;
mod stream;
mod tree;
mod verify;

pub use checkpoint::{Checkpoint, CheckpointError, CheckpointSigner};
pub use error::{Error, MAX_TREE_SIZE, ReadError};
pub use hash::{EMPTY_TREE_HASH, HASH_SIZE, Hash, ParseHashError, leaf_hash, node_hash};
pub use memory::{HashNotStored, MemoryLog};
pub use note::{KeyError, NoteError, NoteSigner, NoteVerifier};
pub use stored::{
    HashReader, split_stored_hash_index, stored_hash_count, stored_hash_index,
    stored_hashes_for_leaf_hash, stored_hashes_for_record, stored_hashes_for_record_from,
    stored_hashes_for_record_indexes, stored_hashes_for_records_from,
    stored_hashes_for_records_indexes,
};
pub use stream::{LeafMismatch, RootBuilder, first_leaf_mismatch, root_of_leaf_hashes};
pub use tree::{
    prove_record, prove_record_from, prove_record_indexes, prove_tree, prove_tree_from,
    prove_tree_indexes, tree_hash, tree_hash_from, tree_hash_indexes,
};
pub use verify::{check_record, check_tree, consistency_proof_len, inclusion_proof_len};
