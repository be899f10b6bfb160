//! Credentials: stored only as argon2id hashes (PHC strings), verified in constant time per
//! hash, and verified against a decoy hash when the username is unknown, so that the answer
//! and its timing never tell whether a username exists.

use argon2::{ARGON2ID_IDENT, Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use ring::rand::{SecureRandom, SystemRandom};

/// The longest credential accepted (argon2 takes any length; this bounds the work a caller
/// can ask for).
pub const MAX_CREDENTIAL_BYTES: usize = 1024;

/// A credential that could not be hashed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("credential hashing failed: {0}")]
pub struct HashError(String);

/// Hashes and verifies credentials with argon2id and its recommended parameters.
#[derive(Clone)]
pub struct CredentialHasher {
    decoy: String,
}

impl std::fmt::Debug for CredentialHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialHasher(argon2id)")
    }
}

impl CredentialHasher {
    /// A hasher, with its decoy hash for unknown usernames.
    pub fn new() -> Result<Self, HashError> {
        let mut decoy_secret = [0u8; 32];
        SystemRandom::new()
            .fill(&mut decoy_secret)
            .map_err(|_| HashError("no randomness".to_owned()))?;
        let decoy = hash_with_random_salt(&decoy_secret)?;
        Ok(Self { decoy })
    }

    /// The PHC string of `credential`'s argon2id hash with a fresh random salt.
    pub fn hash(&self, credential: &str) -> Result<String, HashError> {
        hash_with_random_salt(credential.as_bytes())
    }

    /// Whether `credential` matches `hash`; `None` for the hash means an unknown user, checked
    /// against the decoy so that it costs the same and always fails.
    pub fn verify(&self, credential: &str, hash: Option<&str>) -> bool {
        let (hash, known) = match hash {
            Some(hash) => (hash, true),
            None => (self.decoy.as_str(), false),
        };
        let matches = PasswordHash::new(hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(credential.as_bytes(), &parsed)
                .is_ok()
        });
        matches && known
    }
}

fn hash_with_random_salt(secret: &[u8]) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| HashError("no randomness".to_owned()))?;
    Argon2::default()
        .hash_password_with_salt(secret, &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Checks that `hash` is an argon2id PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
pub fn check_hash(hash: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(hash.trim())
        .map_err(|e| format!("is not a PHC password hash string: {e}"))?;
    if parsed.algorithm.as_str() != ARGON2ID_IDENT.as_str() {
        return Err(format!(
            "must be an argon2id hash, not {}",
            parsed.algorithm.as_str()
        ));
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err("must carry a salt and a hash".to_owned());
    }
    argon2::Params::try_from(&parsed)
        .map(|_| ())
        .map_err(|e| format!("has unusable argon2 parameters: {e}"))
}

/// Checks a new credential against the policy: at least `min_length` characters, at most
/// [`MAX_CREDENTIAL_BYTES`] bytes, not only whitespace.
pub fn check_policy(credential: &str, min_length: u32) -> Result<(), String> {
    if credential.trim().is_empty() {
        return Err("is required".to_owned());
    }
    let length = credential.chars().count();
    if length < min_length as usize {
        return Err(format!(
            "must be at least {min_length} characters; it has {length}"
        ));
    }
    if credential.len() > MAX_CREDENTIAL_BYTES {
        return Err(format!("must be at most {MAX_CREDENTIAL_BYTES} bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_credential_only() {
        let hasher = CredentialHasher::new().unwrap();
        let hash = hasher.hash("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(check_hash(&hash).is_ok());
        assert!(hasher.verify("correct horse battery", Some(&hash)));
        assert!(!hasher.verify("wrong horse battery", Some(&hash)));
        assert!(!hasher.verify("correct horse battery", None));
        assert_ne!(hash, hasher.hash("correct horse battery").unwrap());
    }

    #[test]
    fn only_argon2id_hashes_are_accepted() {
        assert!(check_hash("plain text").is_err());
        let argon2i = "$argon2i$v=19$m=16,t=2,p=1$c29tZXNhbHQ$Tm90QVJlYWxIYXNoVmFsdWU";
        assert!(check_hash(argon2i).unwrap_err().contains("argon2id"));
    }

    #[test]
    fn the_policy_bounds_length() {
        assert!(check_policy("short", 12).is_err());
        assert!(check_policy("            ", 12).is_err());
        assert!(check_policy("long enough now", 12).is_ok());
        assert!(check_policy(&"x".repeat(2000), 12).is_err());
    }
}
