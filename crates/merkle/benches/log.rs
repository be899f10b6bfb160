//! Benchmark of the audit log's Merkle tree over an in-memory log of synthetic events.
//!
//! `cargo bench -p cpis-merkle` runs 1 M events; `CPIS_BENCH_LARGE=1` adds 10 M (about
//! 700 MB of stored hashes). Figures are printed; nothing is asserted, so that a slow
//! machine never fails a build. The counts of hashes read show that proofs and roots cost
//! O(log n) reads, which is what a database-backed store pays in rows.

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::cell::Cell;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use cpis_merkle::checkpoint::open;
use cpis_merkle::{
    Checkpoint, CheckpointSigner, Hash, HashNotStored, HashReader, MemoryLog, check_record,
    check_tree, leaf_hash, prove_record, prove_tree, tree_hash,
};

const SAMPLES: usize = 1000;

/// A reader that counts the hashes asked of it, as a store would count rows.
struct CountingReader<'a> {
    log: &'a MemoryLog,
    reads: Cell<u64>,
}

impl HashReader for CountingReader<'_> {
    type Error = HashNotStored;

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, HashNotStored> {
        self.reads.set(self.reads.get() + indexes.len() as u64);
        self.log.read_hashes(indexes)
    }
}

/// A synthetic audit event of about 200 bytes, like the canonical bytes of a real one.
fn event(i: u64, buf: &mut String) {
    buf.clear();
    let _ = write!(
        buf,
        "{{\"id\":\"0190a1b2-c3d4-7e5f-8a9b-{i:012x}\",\"actor\":\"user-{}\",\"action\":\"flag.check\",\
         \"subject\":\"{:010}\",\"outcome\":\"allowed\",\"setting\":\"emergency\",\"time\":\"2026-11-{:02}T12:00:00Z\"}}",
        i % 9973,
        (i * 7919) % 10_000_000_000,
        1 + i % 28
    );
}

/// xorshift64*: reproducible samples without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Median and 99th percentile.
fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn run(n: u64) {
    println!("== {n} events");
    let mut buf = String::new();

    let start = Instant::now();
    let mut log = MemoryLog::with_capacity(n);
    for i in 0..n {
        event(i, &mut buf);
        log.append(buf.as_bytes());
    }
    let elapsed = start.elapsed();
    println!(
        "append: {:.2} s, {:.0} events/s ({} stored hashes, {} MB)",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        log.stored_hashes().len(),
        log.stored_hashes().len() * 32 / 1_000_000
    );

    let reader = CountingReader {
        log: &log,
        reads: Cell::new(0),
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    // Root of the whole log and of random earlier sizes.
    let mut times = Vec::with_capacity(SAMPLES);
    let mut max_reads = 0;
    for _ in 0..SAMPLES {
        let size = 1 + rng.below(n);
        reader.reads.set(0);
        let t = Instant::now();
        let root = tree_hash(size, &reader);
        times.push(t.elapsed());
        assert!(root.is_ok());
        max_reads = max_reads.max(reader.reads.get());
    }
    let (median, p99) = percentiles(times);
    println!(
        "tree_hash: median {:.1} µs, p99 {:.1} µs, at most {max_reads} hashes read",
        micros(median),
        micros(p99)
    );
    let root = log.root();

    // Inclusion proof of a random event in the latest tree, generated and checked.
    let mut times = Vec::with_capacity(SAMPLES);
    let (mut max_reads, mut total_reads) = (0, 0);
    for _ in 0..SAMPLES {
        let index = rng.below(n);
        event(index, &mut buf);
        let leaf = leaf_hash(buf.as_bytes());
        reader.reads.set(0);
        let t = Instant::now();
        let proof = prove_record(n, index, &reader).unwrap_or_default();
        let checked = check_record(&proof, n, root, index, leaf);
        times.push(t.elapsed());
        assert!(checked.is_ok(), "{checked:?}");
        max_reads = max_reads.max(reader.reads.get());
        total_reads += reader.reads.get();
    }
    let (median, p99) = percentiles(times);
    println!(
        "inclusion proof (prove + check): median {:.1} µs, p99 {:.1} µs, hashes read: mean {:.1}, max {max_reads}",
        micros(median),
        micros(p99),
        total_reads as f64 / SAMPLES as f64
    );

    // Consistency proof from a random earlier size to the latest tree.
    let mut times = Vec::with_capacity(SAMPLES);
    let (mut max_reads, mut total_reads) = (0, 0);
    for _ in 0..SAMPLES {
        let old = 1 + rng.below(n);
        let old_root = log.tree_hash(old).unwrap_or_default();
        reader.reads.set(0);
        let t = Instant::now();
        let proof = prove_tree(n, old, &reader).unwrap_or_default();
        let checked = check_tree(&proof, n, root, old, old_root);
        times.push(t.elapsed());
        assert!(checked.is_ok(), "{checked:?}");
        max_reads = max_reads.max(reader.reads.get());
        total_reads += reader.reads.get();
    }
    let (median, p99) = percentiles(times);
    println!(
        "consistency proof (prove + check): median {:.1} µs, p99 {:.1} µs, hashes read: mean {:.1}, max {max_reads}",
        micros(median),
        micros(p99),
        total_reads as f64 / SAMPLES as f64
    );

    // A checkpoint: root, sign, and an auditor's open.
    let Ok(signer) = CheckpointSigner::from_ed25519_seed("cpis.example/audit", &[0x42; 32]) else {
        return;
    };
    let verifier = signer.verifier();
    let mut times = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let t = Instant::now();
        let signed = tree_hash(n, &reader)
            .ok()
            .and_then(|root| Checkpoint::new("cpis.example/audit", n, root).ok())
            .map(|c| signer.sign(&c));
        let opened = signed.map(|s| open(&s, &verifier));
        times.push(t.elapsed());
        assert!(matches!(opened, Some(Ok(_))));
    }
    let (median, p99) = percentiles(times);
    println!(
        "checkpoint (root + sign + open): median {:.1} µs, p99 {:.1} µs",
        micros(median),
        micros(p99)
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this as a smoke test.
    let smoke = !std::env::args().any(|a| a == "--bench");
    if smoke {
        run(10_000);
        return;
    }
    run(1_000_000);
    if std::env::var("CPIS_BENCH_LARGE").is_ok_and(|v| v == "1") {
        run(10_000_000);
    } else {
        println!("(set CPIS_BENCH_LARGE=1 for 10 M events)");
    }
}
