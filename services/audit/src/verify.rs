//! Verifying the log from outside, as `cpis audit verify` and `cpis audit prove` do: trust
//! nothing the service says that its signed checkpoints do not prove.
//!
//! - [`Verifier::latest`]: the latest checkpoint's signature, and its consistency with the
//!   last checkpoint this verifier accepted (so history cannot be rewritten unnoticed);
//! - [`Verifier::full`]: every event fetched and hashed again; the recomputed tree must be the
//!   one the signed checkpoints commit to. On a mismatch, consistency proofs of prefixes find
//!   the first index that differs, in O(log n) requests;
//! - [`Verifier::prove`]: one event's inclusion proof, against a signed checkpoint, with the
//!   leaf hash computed from the event itself when its data can be read.

use cpis_merkle::{Checkpoint, Hash, MemoryLog, NoteVerifier, check_record, check_tree, leaf_hash};
use cpis_mesh::client::MeshChannel;
use cpis_proto::audit::audit_service_client::AuditServiceClient;
use cpis_proto::audit::{
    GetCheckpointRequest, GetConsistencyProofRequest, GetInclusionProofRequest, QueryEventsRequest,
    get_inclusion_proof_request,
};
use tonic::Code;

use crate::store::leaf_data;

/// What verification found wrong.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The service could not be asked.
    #[error("audit service: {0}")]
    Service(String),
    /// A checkpoint's signature or format is bad.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The latest checkpoint does not extend the one accepted before: history was rewritten.
    #[error(
        "the checkpoint of size {new} is not consistent with the accepted checkpoint of size {old}: the log's history was changed"
    )]
    Inconsistent {
        /// The accepted (earlier) size.
        old: u64,
        /// The new size.
        new: u64,
    },
    /// The checkpoint is smaller than one accepted before: the log shrank.
    #[error("the log shrank from {old} to {new} events")]
    Shrunk {
        /// The accepted size.
        old: u64,
        /// The new size.
        new: u64,
    },
    /// An event is missing, altered or out of place.
    #[error("event index {index}: {what}")]
    BadIndex {
        /// The first index that fails.
        index: u64,
        /// What is wrong there.
        what: String,
    },
    /// An inclusion proof does not verify.
    #[error("inclusion proof of index {index} in the tree of size {size} does not verify: {what}")]
    BadProof {
        /// The event's index.
        index: u64,
        /// The tree size.
        size: u64,
        /// Why.
        what: String,
    },
}

fn service(status: tonic::Status) -> VerifyError {
    VerifyError::Service(format!("{:?}: {}", status.code(), status.message()))
}

fn hashes(raw: &[Vec<u8>]) -> Result<Vec<Hash>, VerifyError> {
    raw.iter()
        .map(|h| {
            Hash::from_slice(h).map_err(|e| VerifyError::Service(format!("a proof hash: {e}")))
        })
        .collect()
}

/// A checkpoint this verifier accepted: what it keeps between runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The signed note, exactly as received.
    pub signed_note: String,
    /// Its parsed body.
    pub checkpoint: Checkpoint,
}

/// A verifier of one log, trusting one checkpoint key.
#[derive(Debug, Clone)]
pub struct Verifier {
    client: AuditServiceClient<MeshChannel>,
    key: NoteVerifier,
    token: Option<String>,
}

impl Verifier {
    /// A verifier asking the service behind `channel`, trusting `key`; `token` (a session token
    /// with `audit.read`) lets it read events for [`full`](Self::full) and [`prove`](Self::prove).
    pub fn new(channel: MeshChannel, key: NoteVerifier, token: Option<String>) -> Self {
        Self {
            client: AuditServiceClient::new(channel),
            key,
            token,
        }
    }

    fn open(&self, note: &str) -> Result<Accepted, VerifyError> {
        let checkpoint = cpis_merkle::checkpoint::open(note, &self.key)
            .map_err(|e| VerifyError::Checkpoint(e.to_string()))?;
        Ok(Accepted {
            signed_note: note.to_owned(),
            checkpoint,
        })
    }

    /// The latest signed checkpoint, checked to extend `previous` (the last one accepted).
    pub async fn latest(&self, previous: Option<&Accepted>) -> Result<Accepted, VerifyError> {
        let answer = self
            .client
            .clone()
            .get_checkpoint(GetCheckpointRequest { tree_size: 0 })
            .await
            .map_err(service)?
            .into_inner();
        let note = answer.checkpoint.map(|c| c.signed_note).unwrap_or_default();
        let latest = self.open(&note)?;
        if let Some(previous) = previous {
            self.check_consistent(previous, &latest).await?;
        }
        Ok(latest)
    }

    async fn check_consistent(&self, old: &Accepted, new: &Accepted) -> Result<(), VerifyError> {
        let (m, n) = (old.checkpoint.size(), new.checkpoint.size());
        if n < m {
            return Err(VerifyError::Shrunk { old: m, new: n });
        }
        if m == 0 || m == n {
            return if m == n && old.checkpoint.root() != new.checkpoint.root() {
                Err(VerifyError::Inconsistent { old: m, new: n })
            } else {
                Ok(())
            };
        }
        let proof = self.consistency_proof(m, n).await?;
        check_tree(&proof, n, new.checkpoint.root(), m, old.checkpoint.root())
            .map_err(|_| VerifyError::Inconsistent { old: m, new: n })
    }

    async fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, VerifyError> {
        let answer = self
            .client
            .clone()
            .get_consistency_proof(GetConsistencyProofRequest {
                first_tree_size: i64::try_from(first).unwrap_or(i64::MAX),
                second_tree_size: i64::try_from(second).unwrap_or(i64::MAX),
            })
            .await
            .map_err(service)?
            .into_inner();
        hashes(&answer.hashes)
    }

    fn authorised<T>(&self, message: T) -> Result<tonic::Request<T>, VerifyError> {
        let mut request = tonic::Request::new(message);
        let token = self.token.as_deref().ok_or_else(|| {
            VerifyError::Service("reading events needs a session token with audit.read".to_owned())
        })?;
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| VerifyError::Service("the token is not valid header text".to_owned()))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }

    /// Reads every event of the tree `against` commits to, hashes each again, and checks the
    /// recomputed tree against it (and against `earlier`, an older accepted checkpoint).
    pub async fn full(
        &self,
        against: &Accepted,
        earlier: Option<&Accepted>,
    ) -> Result<u64, VerifyError> {
        let size = against.checkpoint.size();
        let mut log = MemoryLog::with_capacity(size);
        let mut next: u64 = 0;
        let mut token = String::new();
        while next < size {
            let request = self.authorised(QueryEventsRequest {
                start_index: i64::try_from(next).unwrap_or(i64::MAX),
                include_leaf_data: true,
                page_size: 1000,
                page_token: std::mem::take(&mut token),
                ..Default::default()
            })?;
            let page = match self.client.clone().query_events(request).await {
                Ok(page) => page.into_inner(),
                Err(status) if status.code() == Code::DataLoss => {
                    return Err(VerifyError::BadIndex {
                        index: data_loss_index(status.message()).unwrap_or(next),
                        what: status.message().to_owned(),
                    });
                }
                Err(status) => return Err(service(status)),
            };
            if page.entries.is_empty() {
                break;
            }
            for entry in page.entries {
                let index = u64::try_from(entry.index).unwrap_or(u64::MAX);
                if index >= size {
                    break;
                }
                if index != next {
                    return Err(VerifyError::BadIndex {
                        index: next,
                        what: format!("missing (the next event served is index {index})"),
                    });
                }
                if leaf_data(&entry) != entry.leaf_data {
                    return Err(VerifyError::BadIndex {
                        index,
                        what: "the event served differs from the bytes that were hashed".to_owned(),
                    });
                }
                log.append(&entry.leaf_data);
                next += 1;
            }
            token = page.next_page_token;
            if token.is_empty() && next < size {
                break;
            }
        }
        if next < size {
            return Err(VerifyError::BadIndex {
                index: next,
                what: format!(
                    "missing (the log serves {next} events, the checkpoint commits to {size})"
                ),
            });
        }
        for reference in std::iter::once(against).chain(earlier) {
            self.check_prefix(&log, reference).await?;
        }
        Ok(size)
    }

    /// The recomputed tree's prefix must have `reference`'s root; if not, find the first
    /// index where it stops being so.
    async fn check_prefix(&self, log: &MemoryLog, reference: &Accepted) -> Result<(), VerifyError> {
        let (m, root) = (reference.checkpoint.size(), reference.checkpoint.root());
        if m > log.size() {
            return Err(VerifyError::Shrunk {
                old: m,
                new: log.size(),
            });
        }
        let recomputed = log
            .tree_hash(m)
            .map_err(|e| VerifyError::Service(e.to_string()))?;
        if recomputed == root {
            return Ok(());
        }
        // P(k): the first k recomputed leaves are a prefix of the reference tree. P(0) holds,
        // P(m) does not; the largest k with P(k) is the first bad index.
        let (mut good, mut bad) = (0u64, m);
        while bad - good > 1 {
            let k = good + (bad - good) / 2;
            let prefix = log
                .tree_hash(k)
                .map_err(|e| VerifyError::Service(e.to_string()))?;
            // The service's stored hashes give the proof; if they too were changed, no proof
            // verifies and the search ends at index 0, which still reports the tampering.
            let proof = self.consistency_proof(k, m).await?;
            let consistent = check_tree(&proof, m, root, k, prefix).is_ok();
            if consistent {
                good = k;
            } else {
                bad = k;
            }
        }
        Err(VerifyError::BadIndex {
            index: good,
            what: format!("its hash is not the one the checkpoint of size {m} commits to"),
        })
    }

    /// Checks the inclusion of one event (by index or UUID) in the latest checkpoint.
    pub async fn prove(&self, event: &str) -> Result<(u64, Accepted), VerifyError> {
        let leaf = match event.parse::<u64>() {
            Ok(index) => {
                get_inclusion_proof_request::Leaf::Index(i64::try_from(index).unwrap_or(i64::MAX))
            }
            Err(_) => get_inclusion_proof_request::Leaf::EventId(event.to_owned()),
        };
        let answer = self
            .client
            .clone()
            .get_inclusion_proof(GetInclusionProofRequest {
                leaf: Some(leaf),
                tree_size: 0,
            })
            .await
            .map_err(service)?
            .into_inner();
        let accepted = self.open(&answer.checkpoint.map(|c| c.signed_note).unwrap_or_default())?;
        let index = u64::try_from(answer.index).unwrap_or(u64::MAX);
        let size = accepted.checkpoint.size();
        let mut leaf =
            Hash::from_slice(&answer.leaf_hash).map_err(|e| VerifyError::Service(e.to_string()))?;
        if self.token.is_some() {
            // Hash the event itself rather than trusting the service's leaf hash.
            let request = self.authorised(QueryEventsRequest {
                start_index: answer.index,
                include_leaf_data: true,
                page_size: 1,
                ..Default::default()
            })?;
            let page = self
                .client
                .clone()
                .query_events(request)
                .await
                .map_err(service)?
                .into_inner();
            let entry = page
                .entries
                .into_iter()
                .find(|e| e.index == answer.index)
                .ok_or_else(|| VerifyError::BadIndex {
                    index,
                    what: "missing".to_owned(),
                })?;
            leaf = leaf_hash(&entry.leaf_data);
        }
        check_record(
            &hashes(&answer.hashes)?,
            size,
            accepted.checkpoint.root(),
            index,
            leaf,
        )
        .map_err(|e| VerifyError::BadProof {
            index,
            size,
            what: e.to_string(),
        })?;
        Ok((index, accepted))
    }
}

/// The index named in a DATA_LOSS message ("the event at index N does not match ...").
fn data_loss_index(message: &str) -> Option<u64> {
    let rest = message.split("index ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}
