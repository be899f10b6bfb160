//! A small RFC 4180 reader: one record at a time from any `BufRead`, so a file of any size
//! is read in constant memory. Fields are separated by commas; a field may be quoted with
//! `"` (then it may hold commas, line breaks and doubled quotes `""`); records end with LF or
//! CRLF; a UTF-8 byte order mark at the start is skipped; blank lines are skipped. Every
//! problem names the line (and the field) where it is.

use std::fmt;
use std::io::BufRead;

/// One record: its fields and the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CsvRecord {
    /// The physical line the record starts on.
    pub(crate) line: u64,
    /// The fields, unquoted.
    pub(crate) fields: Vec<String>,
}

/// What is wrong with a file, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CsvError {
    /// The physical line (1-based).
    pub(crate) line: u64,
    /// The field (1-based), when one is to blame.
    pub(crate) column: Option<usize>,
    /// What is wrong.
    pub(crate) message: String,
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(column) => write!(f, "line {}, column {column}: {}", self.line, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

/// Reads records one by one.
#[derive(Debug)]
pub(crate) struct CsvReader<R> {
    input: R,
    /// Physical lines read so far.
    lines: u64,
    buffer: Vec<u8>,
}

/// Where the parser is within a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a field.
    FieldStart,
    /// Inside an unquoted field.
    Unquoted,
    /// Inside a quoted field.
    Quoted,
    /// Just after a quote inside a quoted field: the end of the field, or an escaped quote.
    QuoteInQuoted,
}

impl<R: BufRead> CsvReader<R> {
    /// A reader of `input`.
    pub(crate) fn new(input: R) -> Self {
        Self {
            input,
            lines: 0,
            buffer: Vec::new(),
        }
    }

    /// Reads the next physical line into the buffer (end of line kept); false at the end.
    fn read_line(&mut self) -> Result<bool, CsvError> {
        self.buffer.clear();
        let n = self
            .input
            .read_until(b'\n', &mut self.buffer)
            .map_err(|e| CsvError {
                line: self.lines + 1,
                column: None,
                message: format!("cannot be read: {e}"),
            })?;
        if n == 0 {
            return Ok(false);
        }
        self.lines += 1;
        if self.lines == 1 && self.buffer.starts_with(b"\xEF\xBB\xBF") {
            self.buffer.drain(..3);
        }
        Ok(true)
    }

    /// The next record, or `None` at the end of the input.
    pub(crate) fn next_record(&mut self) -> Result<Option<CsvRecord>, CsvError> {
        // Skip blank lines.
        loop {
            if !self.read_line()? {
                return Ok(None);
            }
            if !strip_eol(&self.buffer).is_empty() {
                break;
            }
        }
        let start = self.lines;
        let mut fields: Vec<String> = Vec::new();
        let mut field: Vec<u8> = Vec::new();
        let mut state = State::FieldStart;
        let error = |line: u64, column: usize, message: &str| CsvError {
            line,
            column: Some(column),
            message: message.to_owned(),
        };
        loop {
            let line = self.lines;
            let text = std::mem::take(&mut self.buffer);
            let body = strip_eol(&text);
            for &byte in body {
                let column = fields.len() + 1;
                state = match (state, byte) {
                    (State::FieldStart, b'"') => State::Quoted,
                    (State::FieldStart | State::Unquoted | State::QuoteInQuoted, b',') => {
                        fields.push(utf8(field, line, column)?);
                        field = Vec::new();
                        State::FieldStart
                    }
                    (State::Unquoted, b'"') => {
                        return Err(error(
                            line,
                            column,
                            "a quote inside an unquoted field (quote the whole field and \
                             double the quotes inside it)",
                        ));
                    }
                    (State::FieldStart | State::Unquoted, other) => {
                        field.push(other);
                        State::Unquoted
                    }
                    (State::Quoted, b'"') => State::QuoteInQuoted,
                    (State::Quoted, other) => {
                        field.push(other);
                        State::Quoted
                    }
                    (State::QuoteInQuoted, b'"') => {
                        field.push(b'"');
                        State::Quoted
                    }
                    (State::QuoteInQuoted, _) => {
                        return Err(error(
                            line,
                            column,
                            "text after the closing quote of a quoted field",
                        ));
                    }
                };
            }
            if state != State::Quoted {
                fields.push(utf8(field, line, fields.len() + 1)?);
                self.buffer = text;
                return Ok(Some(CsvRecord {
                    line: start,
                    fields,
                }));
            }
            // A line break inside a quoted field belongs to the field.
            field.extend_from_slice(&text[body.len()..]);
            self.buffer = text;
            if !self.read_line()? {
                return Err(error(
                    start,
                    fields.len() + 1,
                    "a quoted field is not closed before the end of the file",
                ));
            }
        }
    }
}

/// The line without its LF or CRLF.
fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn utf8(bytes: Vec<u8>, line: u64, column: usize) -> Result<String, CsvError> {
    String::from_utf8(bytes).map_err(|_| CsvError {
        line,
        column: Some(column),
        message: "is not UTF-8 text".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Result<Vec<CsvRecord>, CsvError> {
        let mut reader = CsvReader::new(text.as_bytes());
        let mut records = Vec::new();
        while let Some(record) = reader.next_record()? {
            records.push(record);
        }
        Ok(records)
    }

    fn fields(text: &str) -> Vec<Vec<String>> {
        all(text).unwrap().into_iter().map(|r| r.fields).collect()
    }

    #[test]
    fn plain_fields_and_line_endings() {
        assert_eq!(
            fields("a,b,c\n1,2,3\r\n4,,6"),
            [["a", "b", "c"], ["1", "2", "3"], ["4", "", "6"]]
        );
        assert_eq!(fields("a,b,\n"), [["a", "b", ""]]);
    }

    #[test]
    fn quoted_fields_hold_commas_quotes_and_line_breaks() {
        assert_eq!(
            fields("\"a,b\",\"say \"\"hi\"\"\",\"\"\n"),
            [["a,b", "say \"hi\"", ""]]
        );
        let records = all("x,\"two\r\nlines\"\r\nnext,row\r\n").unwrap();
        assert_eq!(records[0].fields, ["x", "two\r\nlines"]);
        assert_eq!(records[0].line, 1);
        assert_eq!(records[1].fields, ["next", "row"]);
        assert_eq!(records[1].line, 3);
    }

    #[test]
    fn a_byte_order_mark_and_blank_lines_are_skipped() {
        let records = all("\u{feff}a,b\n\n\r\n1,2\n").unwrap();
        assert_eq!(records[0].fields, ["a", "b"]);
        assert_eq!(records[1].fields, ["1", "2"]);
        assert_eq!(records[1].line, 4);
    }

    #[test]
    fn bad_quoting_names_the_line_and_column() {
        let e = all("a,b\n1,x\"y\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, Some(2)));
        assert!(
            e.to_string()
                .starts_with("line 2, column 2: a quote inside"),
            "{e}"
        );
        let e = all("a,b\n\"1\"x,2\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, Some(1)));
        assert!(e.message.contains("after the closing quote"));
        let e = all("a,b\n1,\"open\nstill open\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, Some(2)));
        assert!(e.message.contains("not closed"));
    }

    #[test]
    fn invalid_utf8_is_named() {
        let mut reader = CsvReader::new(&b"a,\xff\n"[..]);
        let e = reader.next_record().unwrap_err();
        assert_eq!((e.line, e.column), (1, Some(2)));
    }
}
