//! Field violations: what is wrong with which input field, all problems at once.
//!
//! The gRPC layer turns these into `google.rpc.BadRequest` field violations, so a caller
//! learns every problem of a request in one answer.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One problem with one input field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldViolation {
    /// The field's path, in snake case, nested parts joined by dots
    /// (`contacts.emergency_duty_phone`).
    pub field: String,
    /// What is wrong, in words a caller's developer can act on.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }

    /// The same violation with its field nested under `prefix` (`prefix.field`), for when the
    /// validated value sits inside a larger message.
    pub fn prefixed(self, prefix: &str) -> Self {
        Self {
            field: format!("{prefix}.{}", self.field),
            description: self.description,
        }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// Every problem found in one input: never empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldViolations(Vec<FieldViolation>);

impl FieldViolations {
    /// The violations as a list, in the order the fields were checked.
    pub fn as_slice(&self) -> &[FieldViolation] {
        &self.0
    }

    /// The violations as a list, owned.
    pub fn into_vec(self) -> Vec<FieldViolation> {
        self.0
    }

    /// The first violation (there always is one).
    pub fn first(&self) -> Option<&FieldViolation> {
        self.0.first()
    }

    /// Whether one of the violations is about `field`.
    pub fn concerns(&self, field: &str) -> bool {
        self.0.iter().any(|violation| violation.field == field)
    }
}

impl fmt::Display for FieldViolations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid input: ")?;
        for (index, violation) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{violation}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldViolations {}

impl IntoIterator for FieldViolations {
    type Item = FieldViolation;
    type IntoIter = std::vec::IntoIter<FieldViolation>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a FieldViolations {
    type Item = &'a FieldViolation;
    type IntoIter = std::slice::Iter<'a, FieldViolation>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl From<FieldViolation> for FieldViolations {
    fn from(violation: FieldViolation) -> Self {
        Self(vec![violation])
    }
}

/// Collects violations while a validator walks the fields, so every problem is reported at
/// once rather than only the first.
#[derive(Debug, Default)]
pub struct ViolationCollector(Vec<FieldViolation>);

impl ViolationCollector {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a violation of `field`.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Keeps the value of a successful check, or records its error against `field` and gives
    /// `None`.
    pub fn check<T, E: fmt::Display>(&mut self, field: &str, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.add(field, error.to_string());
                None
            }
        }
    }

    /// Keeps the value of a successful nested validation, or records all its violations (with
    /// their own field names) and gives `None`.
    pub fn check_all<T>(&mut self, result: Result<T, FieldViolations>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(violations) => {
                self.0.extend(violations);
                None
            }
        }
    }

    /// Whether nothing was recorded so far.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was recorded, else every recorded violation.
    ///
    /// Validators build `value` only from the fields that passed, so it is `None` exactly when
    /// something was recorded. Should it be `None` with nothing recorded (a bug in the
    /// validator), the answer is still an error: a violation of the empty field path, the
    /// whole input.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, FieldViolations> {
        match value {
            Some(value) if self.0.is_empty() => Ok(value),
            _ if !self.0.is_empty() => Err(FieldViolations(self.0)),
            _ => Err(FieldViolation::new("", "is invalid").into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_violation_in_order() {
        let mut collector = ViolationCollector::new();
        let kept = collector.check::<u8, String>("a", Ok(1));
        assert_eq!(kept, Some(1));
        assert!(collector.is_empty());
        collector.check::<u8, _>("b", Err("is wrong"));
        collector.add("c", "is missing");
        let nested: Result<u8, _> = Err(FieldViolation::new("d", "is odd").into());
        assert_eq!(collector.check_all(nested), None);
        assert_eq!(collector.check_all::<u8>(Ok(2)), Some(2));
        let violations = collector.finish(Some(())).unwrap_err();
        assert_eq!(
            violations.as_slice(),
            [
                FieldViolation::new("b", "is wrong"),
                FieldViolation::new("c", "is missing"),
                FieldViolation::new("d", "is odd"),
            ]
        );
        assert!(violations.concerns("c"));
        assert_eq!(
            violations.to_string(),
            "invalid input: b: is wrong; c: is missing; d: is odd"
        );
    }

    #[test]
    fn finishes_with_the_value_when_clean() {
        assert_eq!(ViolationCollector::new().finish(Some(7)), Ok(7));
        let missing = ViolationCollector::new().finish::<u8>(None).unwrap_err();
        assert_eq!(missing.as_slice(), [FieldViolation::new("", "is invalid")]);
    }

    #[test]
    fn prefixes_nested_fields() {
        let violation = FieldViolation::new("start", "is missing").prefixed("flag");
        assert_eq!(violation.field, "flag.start");
    }
}
