//! Plain aligned text tables for human output (no box drawing, so output pastes cleanly).

use std::io::{self, Write};

/// Rows of cells under a header, written with each column as wide as its widest cell.
#[derive(Debug, Default, Clone)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with this header.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row. Control characters in a cell are escaped (see [`crate::escape_control`]):
    /// a cell is one line, whatever a process or interface calls itself.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) -> &mut Self {
        self.rows.push(
            cells
                .into_iter()
                .map(|cell| {
                    let cell: String = cell.into();
                    match crate::escape_control(&cell) {
                        std::borrow::Cow::Borrowed(_) => cell,
                        std::borrow::Cow::Owned(escaped) => escaped,
                    }
                })
                .collect(),
        );
        self
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Writes the table; the last column is not padded so long findings do not force wrapping.
    pub fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.header.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0usize; columns];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (index, cell) in row.iter().enumerate() {
                widths[index] = widths[index].max(cell.chars().count());
            }
        }
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (index, cell) in row.iter().enumerate() {
                if index + 1 < row.len() {
                    line.push_str(cell);
                    let pad = widths[index] - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                } else {
                    line.push_str(cell);
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_to_the_widest_cell() {
        let mut table = Table::new(["CHECK", "STATUS", "FINDING"]);
        table
            .row(["lo_up", "PASS", "lo is UP"])
            .row(["ipv6_loopback", "FAIL", "::1 missing"]);
        let mut out = Vec::new();
        table.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "CHECK          STATUS  FINDING\nlo_up          PASS    lo is UP\nipv6_loopback  FAIL    ::1 missing\n"
        );
    }

    #[test]
    fn a_cell_stays_on_its_line() {
        let mut table = Table::new(["PROCESS", "PID"]);
        table.row(["evil\nforged row", "1"]);
        let mut out = Vec::new();
        table.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "PROCESS           PID\nevil\\nforged row  1\n"
        );
    }
}
