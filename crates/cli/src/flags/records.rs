//! The flags CSV file (format in `docs/flags-csv.md`): its columns, and each row as the
//! `FlagRecord` it sends. What cannot be put on the wire (a wrong header, a row with the
//! wrong number of fields, bad quoting, a date not written `YYYY-MM-DD`, an unknown kind or
//! legal basis) is refused here, naming the line and the column; what the registry decides
//! (a bad NHS number, a start date in the future, a missing required value) is its
//! per-record outcome.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use cpis_domain::{FlagKind, LookedAfterLegalBasis};
use cpis_proto::common;
use cpis_proto::flags::FlagRecord;

use super::csv::{CsvError, CsvReader};
use crate::failure::Failure;

/// A column of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Column {
    CaseReference,
    NhsNumber,
    DateOfBirth,
    Kind,
    LegalBasis,
    ExpectedDeliveryDate,
    StartDate,
    EndDate,
    DeleteDate,
}

impl Column {
    /// Every column, in the documented order.
    pub(crate) const ALL: [Self; 9] = [
        Self::CaseReference,
        Self::NhsNumber,
        Self::DateOfBirth,
        Self::Kind,
        Self::LegalBasis,
        Self::ExpectedDeliveryDate,
        Self::StartDate,
        Self::EndDate,
        Self::DeleteDate,
    ];

    /// The name in the header row.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::CaseReference => "case_reference",
            Self::NhsNumber => "nhs_number",
            Self::DateOfBirth => "date_of_birth",
            Self::Kind => "kind",
            Self::LegalBasis => "legal_basis",
            Self::ExpectedDeliveryDate => "expected_delivery_date",
            Self::StartDate => "start_date",
            Self::EndDate => "end_date",
            Self::DeleteDate => "delete_date",
        }
    }

    /// Whether the header must name it.
    fn required(self) -> bool {
        matches!(
            self,
            Self::CaseReference | Self::NhsNumber | Self::Kind | Self::StartDate
        )
    }
}

/// The header row: which column each field is.
#[derive(Debug, Clone)]
pub(crate) struct Header(Vec<Column>);

impl Header {
    /// Reads the header row: known names (any letter case, any order), each at most once,
    /// the required ones present.
    fn parse(line: u64, fields: &[String]) -> Result<Self, CsvError> {
        let mut columns = Vec::with_capacity(fields.len());
        for (i, name) in fields.iter().enumerate() {
            let at = |message: String| CsvError {
                line,
                column: Some(i + 1),
                message,
            };
            let column = Column::ALL
                .into_iter()
                .find(|c| c.name().eq_ignore_ascii_case(name.trim()))
                .ok_or_else(|| {
                    at(format!(
                        "`{name}` is not a column of the flags file (the columns are {})",
                        names()
                    ))
                })?;
            if columns.contains(&column) {
                return Err(at(format!("column `{}` appears twice", column.name())));
            }
            columns.push(column);
        }
        let missing: Vec<&str> = Column::ALL
            .into_iter()
            .filter(|c| c.required() && !columns.contains(c))
            .map(Column::name)
            .collect();
        if !missing.is_empty() {
            return Err(CsvError {
                line,
                column: None,
                message: format!(
                    "the header row lacks the required column(s) {}",
                    missing.join(", ")
                ),
            });
        }
        Ok(Self(columns))
    }
}

fn names() -> String {
    Column::ALL.map(Column::name).join(", ")
}

/// One row of the file, ready to send.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// The line it starts on.
    pub(crate) line: u64,
    /// The record.
    pub(crate) record: FlagRecord,
}

/// A flags file read row by row.
#[derive(Debug)]
pub(crate) struct FlagsFile {
    path: PathBuf,
    reader: CsvReader<BufReader<File>>,
    header: Header,
}

impl FlagsFile {
    /// Opens `path` and reads its header row.
    pub(crate) fn open(path: &Path) -> Result<Self, Failure> {
        let file = File::open(path).map_err(|e| Failure::io(path, e))?;
        let mut reader = CsvReader::new(BufReader::with_capacity(64 * 1024, file));
        let header = match reader.next_record() {
            Ok(Some(record)) => Header::parse(record.line, &record.fields),
            Ok(None) => Err(CsvError {
                line: 1,
                column: None,
                message: format!(
                    "the file is empty: the first row names the columns ({})",
                    names()
                ),
            }),
            Err(e) => Err(e),
        }
        .map_err(|e| malformed(path, &e))?;
        Ok(Self {
            path: path.to_owned(),
            reader,
            header,
        })
    }

    /// The next row, or `None` at the end; a malformed row is a usage failure naming the
    /// file, line and column.
    pub(crate) fn next_row(&mut self) -> Result<Option<Row>, Failure> {
        let record = match self.reader.next_record() {
            Ok(Some(record)) => record,
            Ok(None) => return Ok(None),
            Err(e) => return Err(malformed(&self.path, &e)),
        };
        row(&self.header, record.line, &record.fields)
            .map_err(|e| malformed(&self.path, &e))
            .map(Some)
    }
}

/// The failure of a malformed file (exit code 2): nothing was sent.
fn malformed(path: &Path, error: &CsvError) -> Failure {
    Failure::usage(format!(
        "{}: {error}; nothing was sent (the format is in docs/flags-csv.md)",
        path.display()
    ))
}

/// A row as a record.
fn row(header: &Header, line: u64, fields: &[String]) -> Result<Row, CsvError> {
    if fields.len() != header.0.len() {
        return Err(CsvError {
            line,
            column: None,
            message: format!(
                "{} fields, but the header row has {} columns",
                fields.len(),
                header.0.len()
            ),
        });
    }
    let mut record = FlagRecord::default();
    for (i, (column, value)) in header.0.iter().zip(fields).enumerate() {
        let at = |message: String| CsvError {
            line,
            column: Some(i + 1),
            message: format!("{} {message}", column.name()),
        };
        let value = value.trim();
        match column {
            Column::CaseReference => record.case_reference = value.to_owned(),
            Column::NhsNumber => {
                record.nhs_number = Some(common::NhsNumber {
                    value: value.to_owned(),
                });
            }
            Column::Kind => record.kind = kind(value).map_err(at)? as i32,
            Column::LegalBasis => {
                record.looked_after_legal_basis = legal_basis(value).map_err(at)? as i32;
            }
            Column::DateOfBirth => record.date_of_birth = date(value).map_err(at)?,
            Column::ExpectedDeliveryDate => {
                record.expected_delivery_date = date(value).map_err(at)?;
            }
            Column::StartDate => record.start_date = date(value).map_err(at)?,
            Column::EndDate => record.end_date = date(value).map_err(at)?,
            Column::DeleteDate => record.delete_date = date(value).map_err(at)?,
        }
    }
    Ok(Row { line, record })
}

/// A kind code (`CPP`, `LAC`, `UCPP`; empty: unset, which the registry refuses).
pub(crate) fn kind(value: &str) -> Result<common::FlagKind, String> {
    if value.is_empty() {
        return Ok(common::FlagKind::Unspecified);
    }
    let kind: FlagKind = value
        .parse()
        .map_err(|_| format!("`{value}` is not a flag kind (CPP, LAC or UCPP)"))?;
    Ok(match kind {
        FlagKind::ChildProtectionPlan => common::FlagKind::ChildProtectionPlan,
        FlagKind::LookedAfterChild => common::FlagKind::LookedAfterChild,
        FlagKind::UnbornChildProtectionPlan => common::FlagKind::UnbornChildProtectionPlan,
    })
}

/// The code of a wire kind.
pub(crate) fn kind_code(kind: i32) -> &'static str {
    match common::FlagKind::try_from(kind) {
        Ok(common::FlagKind::ChildProtectionPlan) => "CPP",
        Ok(common::FlagKind::LookedAfterChild) => "LAC",
        Ok(common::FlagKind::UnbornChildProtectionPlan) => "UCPP",
        _ => "",
    }
}

/// A legal basis code (`S31`, `S38`, `S20`; empty: none).
pub(crate) fn legal_basis(value: &str) -> Result<common::LookedAfterLegalBasis, String> {
    use common::LookedAfterLegalBasis as Wire;
    if value.is_empty() {
        return Ok(Wire::Unspecified);
    }
    let basis: LookedAfterLegalBasis = value
        .parse()
        .map_err(|_| format!("`{value}` is not a legal basis (S31, S38 or S20)"))?;
    Ok(match basis {
        LookedAfterLegalBasis::Section31CareOrder => Wire::Section31CareOrder,
        LookedAfterLegalBasis::Section38InterimCareOrder => Wire::Section38InterimCareOrder,
        LookedAfterLegalBasis::Section20VoluntaryAgreement => Wire::Section20VoluntaryAgreement,
    })
}

/// A date written `YYYY-MM-DD` (empty: unset). Whether it is a calendar date is the
/// registry's to say, per record.
pub(crate) fn date(value: &str) -> Result<Option<common::Date>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    let bytes = value.as_bytes();
    let shaped = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
    if !shaped {
        return Err(format!("`{value}` is not a date written YYYY-MM-DD"));
    }
    let number = |range: std::ops::Range<usize>| value[range].parse::<i32>().unwrap_or_default();
    Ok(Some(common::Date {
        year: number(0..4),
        month: number(5..7),
        day: number(8..10),
    }))
}

/// A wire date as `YYYY-MM-DD`.
pub(crate) fn date_text(date: Option<&common::Date>) -> String {
    date.map(|d| format!("{:04}-{:02}-{:02}", d.year, d.month, d.day))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(fields: &[&str]) -> Vec<String> {
        fields.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_header_names_known_columns_in_any_order() {
        let header = Header::parse(
            1,
            &strings(&["Kind", "case_reference", "start_date", "nhs_number"]),
        )
        .unwrap();
        let row = row(
            &header,
            2,
            &strings(&["lac", "C-1", "2026-03-01", "999 000 0018"]),
        )
        .unwrap();
        assert_eq!(row.record.kind, common::FlagKind::LookedAfterChild as i32);
        assert_eq!(row.record.case_reference, "C-1");
        assert_eq!(
            row.record.start_date,
            Some(common::Date {
                year: 2026,
                month: 3,
                day: 1
            })
        );
    }

    #[test]
    fn a_wrong_header_is_named() {
        let e = Header::parse(1, &strings(&["case_reference", "nhs", "kind"])).unwrap_err();
        assert_eq!((e.line, e.column), (1, Some(2)));
        assert!(e.message.contains("`nhs` is not a column"), "{e}");
        let e = Header::parse(1, &strings(&["case_reference", "kind"])).unwrap_err();
        assert!(e.message.contains("nhs_number, start_date"), "{e}");
        let e = Header::parse(1, &strings(&["kind", "KIND"])).unwrap_err();
        assert!(e.message.contains("twice"), "{e}");
    }

    #[test]
    fn rows_with_bad_values_name_the_column() {
        let header = Header::parse(
            1,
            &strings(&["case_reference", "nhs_number", "kind", "start_date"]),
        )
        .unwrap();
        let e = row(&header, 3, &strings(&["C", "1", "CPP"])).unwrap_err();
        assert_eq!((e.line, e.column), (3, None));
        assert!(e.message.contains("3 fields"), "{e}");
        let e = row(&header, 4, &strings(&["C", "1", "XYZ", "2026-01-01"])).unwrap_err();
        assert_eq!(e.column, Some(3));
        assert!(e.message.starts_with("kind `XYZ`"), "{e}");
        let e = row(&header, 5, &strings(&["C", "1", "CPP", "01/02/2026"])).unwrap_err();
        assert_eq!(e.column, Some(4));
        assert!(e.message.contains("YYYY-MM-DD"), "{e}");
    }

    #[test]
    fn dates_are_shaped_not_judged() {
        assert_eq!(date(""), Ok(None));
        assert_eq!(
            date("2026-02-30"),
            Ok(Some(common::Date {
                year: 2026,
                month: 2,
                day: 30
            }))
        );
        assert!(date("2026-2-3").is_err());
        assert!(date("2026-+2-03").is_err());
        assert_eq!(
            date_text(date("2026-02-03").unwrap().as_ref()),
            "2026-02-03"
        );
    }
}
