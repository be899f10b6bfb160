//! The person register (the national demographics stand-in): its records, the trace of NHS
//! numbers against it, and the two ways to fill it: a CSV file and a synthetic generator.

use std::collections::HashMap;

use cpis_domain::{NhsNumber, PersonStatus};
use time::{Date, Month};

use cpis_proto::audit::AuditOutcome;

use crate::audit::{self, AuditActor};
use crate::store::{IdentityStore, StoreError};

/// The longest chain of superseded numbers followed; longer chains are cut there (the last
/// number reached is reported).
const MAX_CHAIN: usize = 8;

/// A record of the register.
#[derive(Clone, PartialEq, Eq)]
pub struct Person {
    /// The person's NHS number.
    pub nhs_number: NhsNumber,
    /// Date of birth.
    pub date_of_birth: Date,
    /// Active, superseded by another number, or inactive.
    pub status: PersonStatus,
    /// Whether the record is sensitive.
    pub sensitive: bool,
}

impl std::fmt::Debug for Person {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The NHS number's own Debug is redacted; so is the date of birth here.
        f.debug_struct("Person")
            .field("nhs_number", &self.nhs_number)
            .field("sensitive", &self.sensitive)
            .finish_non_exhaustive()
    }
}

/// What a trace of one number found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trace {
    /// An active record (and the date of birth, when given, matches).
    Matched,
    /// No record.
    NoMatch,
    /// A sensitive record (or one whose chain of replacements reaches a sensitive one).
    Sensitive,
    /// Replaced; the current number at the end of the chain.
    Superseded(NhsNumber),
    /// An inactive record.
    Inactive,
    /// The date of birth given does not match the record.
    NotVerified,
}

impl Trace {
    /// The outcome's name, for audit reasons and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Matched => "matched",
            Self::NoMatch => "no match",
            Self::Sensitive => "sensitive",
            Self::Superseded(_) => "superseded",
            Self::Inactive => "inactive",
            Self::NotVerified => "not verified",
        }
    }
}

/// Traces each `(number, date of birth)` against the register, in order.
///
/// The outcome is the first that applies of: no match, sensitive, inactive, not verified,
/// superseded, matched (the contract's order, invalid numbers being refused before).
pub async fn trace(
    store: &dyn IdentityStore,
    queries: &[(NhsNumber, Option<Date>)],
) -> Result<Vec<Trace>, StoreError> {
    let mut known: HashMap<NhsNumber, Person> = HashMap::new();
    let mut wanted: Vec<NhsNumber> = queries.iter().map(|(n, _)| *n).collect();
    for _ in 0..=MAX_CHAIN {
        wanted.sort_unstable();
        wanted.dedup();
        wanted.retain(|n| !known.contains_key(n));
        if wanted.is_empty() {
            break;
        }
        let found = store.persons(&wanted).await?;
        let next: Vec<NhsNumber> = found
            .iter()
            .filter_map(|p| match p.status {
                PersonStatus::Superseded { by } => Some(by),
                _ => None,
            })
            .collect();
        // Numbers asked for and not found are remembered as absent by not being in `known`;
        // they are never asked for again because `next` only holds replacements.
        known.extend(found.into_iter().map(|p| (p.nhs_number, p)));
        wanted = next;
    }
    Ok(queries
        .iter()
        .map(|(number, dob)| outcome(&known, *number, *dob))
        .collect())
}

fn outcome(known: &HashMap<NhsNumber, Person>, number: NhsNumber, dob: Option<Date>) -> Trace {
    let Some(person) = known.get(&number) else {
        return Trace::NoMatch;
    };
    // Follow the chain once, to know both its end and whether it touches a sensitive record.
    let mut current = person;
    let mut sensitive = person.sensitive;
    let mut end = number;
    for _ in 0..MAX_CHAIN {
        let PersonStatus::Superseded { by } = current.status else {
            break;
        };
        end = by;
        match known.get(&by) {
            Some(next) if next.nhs_number != current.nhs_number => {
                sensitive |= next.sensitive;
                current = next;
            }
            _ => break,
        }
    }
    if sensitive {
        return Trace::Sensitive;
    }
    match person.status {
        PersonStatus::Inactive => Trace::Inactive,
        _ if dob.is_some_and(|d| d != person.date_of_birth) => Trace::NotVerified,
        PersonStatus::Superseded { .. } => Trace::Superseded(end),
        PersonStatus::Active => Trace::Matched,
    }
}

/// Counts of an import of persons.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PersonCounts {
    /// Records added.
    pub created: u64,
    /// Records changed.
    pub updated: u64,
    /// Records already as imported.
    pub unchanged: u64,
}

impl std::ops::AddAssign for PersonCounts {
    fn add_assign(&mut self, other: Self) {
        self.created += other.created;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
    }
}

/// Upserts one batch of persons in one transaction, audited as one event (which names no
/// NHS number).
pub async fn import(
    store: &dyn IdentityStore,
    actor: &AuditActor,
    persons: &[Person],
) -> Result<PersonCounts, StoreError> {
    let event = actor
        .event(audit::IMPORT_PERSONS, AuditOutcome::Success)
        .target("person_register")
        .reason(format!("{} persons upserted", persons.len()))
        .build();
    store.upsert_persons(persons, &[event]).await
}

/// The header line of the CSV format.
pub const CSV_HEADER: &str = "nhs_number,date_of_birth,status,superseded_by,sensitive";

/// Reads one CSV line (not the header) of the format
/// `nhs_number,date_of_birth,status,superseded_by,sensitive`; blank status means active,
/// blank sensitive means no.
pub fn parse_csv_line(line: &str) -> Result<Person, String> {
    let fields: Vec<&str> = line
        .split(',')
        .map(|f| f.trim().trim_matches('"').trim())
        .collect();
    let [number, dob, status, superseded_by, sensitive] = fields.as_slice() else {
        return Err(format!(
            "expected 5 fields ({CSV_HEADER}), found {}",
            fields.len()
        ));
    };
    let nhs_number: NhsNumber = number.parse().map_err(|e| format!("nhs_number: {e}"))?;
    let date_of_birth = parse_date(dob).ok_or("date_of_birth: expected YYYY-MM-DD")?;
    let replacement = || -> Result<NhsNumber, String> {
        superseded_by
            .parse()
            .map_err(|e| format!("superseded_by: {e}"))
    };
    let status = match status.to_ascii_lowercase().as_str() {
        "" | "active" => PersonStatus::Active,
        "inactive" => PersonStatus::Inactive,
        "superseded" => PersonStatus::Superseded { by: replacement()? },
        other => {
            return Err(format!(
                "status: `{other}` is not active, superseded or inactive"
            ));
        }
    };
    if !matches!(status, PersonStatus::Superseded { .. }) && !superseded_by.is_empty() {
        return Err("superseded_by: only a superseded record names its replacement".to_owned());
    }
    if matches!(status, PersonStatus::Superseded { by } if by == nhs_number) {
        return Err("superseded_by: a number cannot replace itself".to_owned());
    }
    let sensitive = match sensitive.to_ascii_lowercase().as_str() {
        "" | "false" | "no" | "0" => false,
        "true" | "yes" | "1" => true,
        other => return Err(format!("sensitive: `{other}` is not true or false")),
    };
    Ok(Person {
        nhs_number,
        date_of_birth,
        status,
        sensitive,
    })
}

/// The CSV line of a person (the inverse of [`parse_csv_line`]).
pub fn to_csv_line(person: &Person) -> String {
    let (status, by) = match person.status {
        PersonStatus::Active => ("active", String::new()),
        PersonStatus::Inactive => ("inactive", String::new()),
        PersonStatus::Superseded { by } => ("superseded", by.as_str().to_owned()),
    };
    format!(
        "{},{},{status},{by},{}",
        person.nhs_number.as_str(),
        format_date(person.date_of_birth),
        person.sensitive
    )
}

/// `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Option<Date> {
    let mut parts = text.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let month = Month::try_from(m.parse::<u8>().ok()?).ok()?;
    Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()
}

/// `YYYY-MM-DD`.
pub fn format_date(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// The synthetic persons `start..start + count`: valid NHS numbers of the test range (999),
/// children born 2009 to 2025, about 1% superseded (by the next synthetic number), 1%
/// inactive and 0.5% sensitive. The same index always gives the same person, so seeding twice
/// changes nothing. `None` beyond the range's capacity.
pub fn synthetic(start: u64, count: u64) -> Option<Vec<Person>> {
    let numbers = synthetic_numbers(start, count + 1)?;
    let base = Date::from_calendar_date(2009, Month::January, 1).ok()?;
    let mut persons = Vec::with_capacity(usize::try_from(count).ok()?);
    for (offset, pair) in numbers.windows(2).enumerate() {
        let index = start + offset as u64;
        let h = splitmix(index);
        let dob = base.checked_add(time::Duration::days((h % (17 * 365)) as i64))?;
        let status = match (h >> 20) % 1000 {
            0..10 => PersonStatus::Inactive,
            10..20 => PersonStatus::Superseded { by: pair[1] },
            _ => PersonStatus::Active,
        };
        persons.push(Person {
            nhs_number: pair[0],
            date_of_birth: dob,
            status,
            sensitive: (h >> 40) % 1000 < 5,
        });
    }
    Some(persons)
}

/// The valid synthetic numbers `start..start + count` (in the order of their prefixes).
fn synthetic_numbers(start: u64, count: u64) -> Option<Vec<NhsNumber>> {
    // About 10 in 11 prefixes give a number; skip ahead roughly, then walk.
    let mut numbers = Vec::new();
    let mut seen = 0u64;
    let mut prefix = 999_000_000u64;
    while (numbers.len() as u64) < count {
        if prefix > 999_999_999 {
            return None;
        }
        let digits = digits9(prefix);
        if let Some(number) = NhsNumber::from_prefix(&digits) {
            if seen >= start {
                numbers.push(number);
            }
            seen += 1;
        }
        prefix += 1;
    }
    Some(numbers)
}

fn digits9(mut n: u64) -> [u8; 9] {
    let mut out = [0u8; 9];
    for slot in out.iter_mut().rev() {
        *slot = (n % 10) as u8;
        n /= 10;
    }
    out
}

/// A well-mixed 64-bit hash of an index (SplitMix64).
fn splitmix(index: u64) -> u64 {
    let mut z = index.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_persons_are_valid_stable_and_in_the_test_range() {
        let a = synthetic(0, 500).unwrap();
        assert_eq!(a.len(), 500);
        assert!(a.iter().all(|p| p.nhs_number.is_synthetic()));
        assert_eq!(a, synthetic(0, 500).unwrap());
        let later = synthetic(100, 10).unwrap();
        assert_eq!(later[..], a[100..110]);
        let mut numbers: Vec<_> = a.iter().map(|p| p.nhs_number).collect();
        numbers.dedup();
        assert_eq!(numbers.len(), 500);
        assert!(
            a.iter()
                .any(|p| matches!(p.status, PersonStatus::Superseded { .. }))
        );
        assert!(synthetic(2_000_000, 1).is_none());
    }

    #[test]
    fn csv_lines_round_trip_and_errors_name_the_field() {
        for person in synthetic(0, 300).unwrap() {
            assert_eq!(parse_csv_line(&to_csv_line(&person)).unwrap(), person);
        }
        let line = "9434765919,2015-06-01,,,";
        assert_eq!(parse_csv_line(line).unwrap().status, PersonStatus::Active);
        assert!(
            parse_csv_line("9434765918,2015-06-01,,,")
                .unwrap_err()
                .starts_with("nhs_number")
        );
        assert!(
            parse_csv_line("9434765919,2015-13-01,,,")
                .unwrap_err()
                .starts_with("date_of_birth")
        );
        assert!(
            parse_csv_line("9434765919,2015-06-01,superseded,,")
                .unwrap_err()
                .starts_with("superseded_by")
        );
        assert!(parse_csv_line("9434765919,2015-06-01").is_err());
    }
}
