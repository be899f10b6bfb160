//! How a command answers: human-readable lines and tables by default, one JSON document with
//! `--json` for scripts.

use std::io::Write;

/// The output mode chosen by `--json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Output {
    /// One JSON document on standard output instead of text.
    pub(crate) json: bool,
}

impl Output {
    /// Prints `value` as pretty JSON (only in JSON mode).
    pub(crate) fn json(&self, value: &serde_json::Value) {
        if let Ok(text) = serde_json::to_string_pretty(value) {
            crate::say(&text);
        }
    }

    /// Prints a line of text (only in text mode).
    pub(crate) fn line(&self, line: &str) {
        if !self.json {
            crate::say(line);
        }
    }
}

/// A plain-text table with aligned columns.
#[derive(Debug, Default)]
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub(crate) fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (as many cells as columns).
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, columns padded to their widest cell.
    pub(crate) fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        let mut line = |cells: &[String]| {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let width = widths.get(i).copied().unwrap_or(0);
                if i + 1 == cells.len() {
                    text.push_str(cell);
                } else {
                    text.push_str(&format!("{cell:<width$}  "));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&self.header);
        for row in &self.rows {
            line(row);
        }
        out
    }

    /// Prints the table.
    pub(crate) fn print(&self) {
        let _ = write!(std::io::stdout(), "{}", self.render());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_to_the_widest_cell() {
        let mut t = Table::new(&["when", "where"]);
        t.row(vec!["2026-11-25 07:00".into(), "RJ1 ED".into()]);
        t.row(vec!["today".into(), "GP".into()]);
        assert_eq!(
            t.render(),
            "when              where\n2026-11-25 07:00  RJ1 ED\ntoday             GP\n"
        );
    }
}
