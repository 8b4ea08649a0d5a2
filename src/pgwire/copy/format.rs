//! COPY's two text formats, decoded record by record as the client's data arrives:
//! PostgreSQL's text format (delimited lines, backslash escapes, `\N` for NULL) and
//! CSV (the `csv-core` push parser, the `csv` crate's own, which keeps its state
//! between chunks, so a record may span any number of `CopyData` messages).
//!
//! No crate parses the text format (the `postgres` crates read only the binary
//! one), so it is done here: a line is split at unescaped delimiters, and a field is
//! unescaped only when it holds a backslash.

use csv_core::{ReadRecordResult, Reader, ReaderBuilder, Terminator};

use super::CopyError;

/// The longest record COPY takes, in bytes: beyond it the statement fails (54000),
/// so a client that never sends a line end cannot make the server hold its stream.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Csv,
}

/// The options of one COPY, checked (see `statement.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub format: Format,
    pub delimiter: u8,
    /// The text that stands for NULL: `\N` in text format, an unquoted empty field in CSV.
    pub null: Vec<u8>,
    /// Whether the first line is a header, skipped.
    pub header: bool,
    /// CSV only.
    pub quote: u8,
    /// CSV only: the character before a quote inside a quoted field (the quote itself by default).
    pub escape: u8,
}

impl Options {
    pub fn defaults(format: Format) -> Options {
        match format {
            Format::Text => {
                Options { format, delimiter: b'\t', null: b"\\N".to_vec(), header: false, quote: b'"', escape: b'"' }
            }
            Format::Csv => {
                Options { format, delimiter: b',', null: Vec::new(), header: false, quote: b'"', escape: b'"' }
            }
        }
    }
}

/// One decoded record: its fields' bytes, `None` for NULL.
pub struct Record<'a> {
    /// The line it started on, 1-based, the header included (PostgreSQL's `line N`).
    pub line: u64,
    bytes: &'a [u8],
    fields: &'a [Option<(usize, usize)>],
}

impl<'a> Record<'a> {
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn field(&self, i: usize) -> Option<&'a [u8]> {
        self.fields[i].map(|(start, end)| &self.bytes[start..end])
    }
}

/// Turns a stream of bytes into records, pushed to a callback as each completes.
pub struct Decoder {
    options: Options,
    /// Records seen so far (the header included).
    lines: u64,
    /// After the end-of-data marker `\.`: the rest is ignored, as PostgreSQL does.
    ended: bool,
    /// The decoded fields of the record being built, and where each one is.
    bytes: Vec<u8>,
    fields: Vec<Option<(usize, usize)>>,
    kind: Kind,
}

enum Kind {
    Text {
        /// The start of a line whose end has not arrived yet.
        partial: Vec<u8>,
    },
    Csv {
        reader: Box<Reader>,
        /// Field bytes and field ends as csv-core writes them.
        out: Vec<u8>,
        out_len: usize,
        ends: Vec<usize>,
        ends_len: usize,
        /// The record's bytes as sent: a field equal to the NULL text is NULL only if it
        /// was not quoted, which only the raw bytes tell.
        raw: Vec<u8>,
    },
}

impl Decoder {
    pub fn new(options: Options) -> Decoder {
        let kind = match options.format {
            Format::Text => Kind::Text { partial: Vec::new() },
            Format::Csv => {
                let mut builder = ReaderBuilder::new();
                builder
                    .delimiter(options.delimiter)
                    .quote(options.quote)
                    .terminator(Terminator::CRLF)
                    .double_quote(options.escape == options.quote)
                    .escape((options.escape != options.quote).then_some(options.escape));
                Kind::Csv {
                    reader: Box::new(builder.build()),
                    out: vec![0; 4096],
                    out_len: 0,
                    ends: vec![0; 64],
                    ends_len: 0,
                    raw: Vec::new(),
                }
            }
        };
        Decoder { options, lines: 0, ended: false, bytes: Vec::new(), fields: Vec::new(), kind }
    }

    /// Decodes `chunk`, calling `each` with every record it completes (not the header).
    pub fn feed(
        &mut self,
        chunk: &[u8],
        each: &mut dyn FnMut(Record<'_>) -> Result<(), CopyError>,
    ) -> Result<(), CopyError> {
        if self.ended {
            return Ok(());
        }
        match self.options.format {
            Format::Text => self.feed_text(chunk, each),
            Format::Csv => self.feed_csv(chunk, each),
        }
    }

    /// The end of the data: decodes a last record that had no line end.
    pub fn finish(&mut self, each: &mut dyn FnMut(Record<'_>) -> Result<(), CopyError>) -> Result<(), CopyError> {
        if self.ended {
            return Ok(());
        }
        match self.options.format {
            Format::Text => {
                let Kind::Text { partial } = &mut self.kind else { unreachable!() };
                let line = std::mem::take(partial);
                if !line.is_empty() {
                    self.text_line(&line, each)?;
                }
                Ok(())
            }
            Format::Csv => self.feed_csv(&[], each),
        }
    }

    fn feed_text(
        &mut self,
        mut chunk: &[u8],
        each: &mut dyn FnMut(Record<'_>) -> Result<(), CopyError>,
    ) -> Result<(), CopyError> {
        let Kind::Text { partial } = &mut self.kind else { unreachable!() };
        if !partial.is_empty() {
            match chunk.iter().position(|&b| b == b'\n') {
                None => {
                    partial.extend_from_slice(chunk);
                    return check_record_size(partial.len());
                }
                Some(end) => {
                    let mut line = std::mem::take(partial);
                    line.extend_from_slice(&chunk[..end]);
                    chunk = &chunk[end + 1..];
                    self.text_line(&line, each)?;
                }
            }
        }
        while !chunk.is_empty() && !self.ended {
            match chunk.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.text_line(&chunk[..end], each)?;
                    chunk = &chunk[end + 1..];
                }
                None => {
                    let Kind::Text { partial } = &mut self.kind else { unreachable!() };
                    partial.extend_from_slice(chunk);
                    return check_record_size(partial.len());
                }
            }
        }
        Ok(())
    }

    /// One line of the text format, without its `\n`.
    fn text_line(
        &mut self,
        line: &[u8],
        each: &mut dyn FnMut(Record<'_>) -> Result<(), CopyError>,
    ) -> Result<(), CopyError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line == b"\\." {
            self.ended = true;
            return Ok(());
        }
        self.lines += 1;
        if self.lines == 1 && self.options.header {
            return Ok(());
        }
        self.bytes.clear();
        self.fields.clear();
        let delimiter = self.options.delimiter;
        let mut start = 0;
        let mut i = 0;
        let mut escaped = false;
        while i <= line.len() {
            if i == line.len() || line[i] == delimiter {
                let raw = &line[start..i];
                if raw == self.options.null.as_slice() {
                    self.fields.push(None);
                } else {
                    let from = self.bytes.len();
                    if escaped {
                        unescape_text(raw, &mut self.bytes);
                    } else {
                        self.bytes.extend_from_slice(raw);
                    }
                    self.fields.push(Some((from, self.bytes.len())));
                }
                start = i + 1;
                escaped = false;
            } else if line[i] == b'\\' {
                // The next byte is escaped, a delimiter too; a last backslash stays in its field.
                escaped = true;
                i = (i + 2).min(line.len());
                continue;
            }
            i += 1;
        }
        each(Record { line: self.lines, bytes: &self.bytes, fields: &self.fields })
    }

    fn feed_csv(
        &mut self,
        mut input: &[u8],
        each: &mut dyn FnMut(Record<'_>) -> Result<(), CopyError>,
    ) -> Result<(), CopyError> {
        let finishing = input.is_empty();
        loop {
            let Kind::Csv { reader, out, out_len, ends, ends_len, raw } = &mut self.kind else { unreachable!() };
            let (result, read, written, ended) =
                reader.read_record(input, &mut out[*out_len..], &mut ends[*ends_len..]);
            raw.extend_from_slice(&input[..read]);
            input = &input[read..];
            *out_len += written;
            *ends_len += ended;
            match result {
                ReadRecordResult::InputEmpty => {
                    check_record_size(raw.len())?;
                    if input.is_empty() && !finishing {
                        return Ok(());
                    }
                }
                ReadRecordResult::OutputFull => {
                    check_record_size(out.len())?;
                    out.resize(out.len() * 2, 0);
                }
                ReadRecordResult::OutputEndsFull => ends.resize(ends.len() * 2, 0),
                ReadRecordResult::Record => {
                    self.csv_record(each)?;
                    if self.ended {
                        return Ok(());
                    }
                }
                ReadRecordResult::End => return Ok(()),
            }
        }
    }

    /// The record csv-core has just completed.
    fn csv_record(&mut self, each: &mut dyn FnMut(Record<'_>) -> Result<(), CopyError>) -> Result<(), CopyError> {
        let Kind::Csv { out, out_len, ends, ends_len, raw, .. } = &mut self.kind else { unreachable!() };
        let record_raw = std::mem::take(raw);
        let field_count = std::mem::take(ends_len);
        *out_len = 0;
        self.lines += 1;
        let trimmed = trim_line_ends(&record_raw);
        if trimmed == b"\\." {
            self.ended = true;
            return Ok(());
        }
        if self.lines == 1 && self.options.header {
            return Ok(());
        }
        self.fields.clear();
        let mut quoted: Option<Vec<bool>> = None;
        let mut start = 0;
        for (index, &end) in ends[..field_count].iter().enumerate() {
            let value = &out[start..end];
            let is_null = value == self.options.null.as_slice() && {
                let quoted = quoted.get_or_insert_with(|| quoted_fields(trimmed, &self.options));
                !quoted.get(index).copied().unwrap_or(false)
            };
            self.fields.push((!is_null).then_some((start, end)));
            start = end;
        }
        each(Record { line: self.lines, bytes: out, fields: &self.fields })
    }
}

fn check_record_size(len: usize) -> Result<(), CopyError> {
    if len > MAX_RECORD_BYTES {
        return Err(CopyError::new(
            "54000",
            format!("a COPY line is longer than {} MiB; nothing was written", MAX_RECORD_BYTES >> 20),
        ));
    }
    Ok(())
}

/// A record as sent without line ends: csv-core takes the `\n` of a `\r\n` as the
/// start of the next record.
fn trim_line_ends(raw: &[u8]) -> &[u8] {
    let is_end = |b: &u8| matches!(b, b'\n' | b'\r');
    let start = raw.iter().position(|b| !is_end(b)).unwrap_or(raw.len());
    let end = raw.iter().rposition(|b| !is_end(b)).map_or(start, |i| i + 1);
    &raw[start..end]
}

/// Which fields of a CSV record (as sent, without its line end) began with a quote.
fn quoted_fields(raw: &[u8], options: &Options) -> Vec<bool> {
    let mut quoted = vec![false];
    let (mut in_quotes, mut at_start) = (false, true);
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if in_quotes {
            if b == options.escape && options.escape != options.quote && raw.get(i + 1) == Some(&options.quote) {
                i += 1;
            } else if b == options.quote {
                in_quotes = false;
            }
        } else if b == options.quote {
            in_quotes = true;
            if at_start {
                *quoted.last_mut().expect("one entry per field") = true;
            }
        } else if b == options.delimiter {
            quoted.push(false);
            at_start = true;
            i += 1;
            continue;
        }
        at_start = false;
        i += 1;
    }
    quoted
}

/// The text format's backslash sequences: `\b \f \n \r \t \v`, octal `\NNN`, hex
/// `\xHH`, and a backslash before any other character stands for that character.
fn unescape_text(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\\' || i + 1 == raw.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let next = raw[i + 1];
        i += 2;
        match next {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut value = u32::from(next - b'0');
                let mut digits = 1;
                while digits < 3 && i < raw.len() && (b'0'..=b'7').contains(&raw[i]) {
                    value = value * 8 + u32::from(raw[i] - b'0');
                    i += 1;
                    digits += 1;
                }
                out.push(value as u8);
            }
            b'x' if i < raw.len() && raw[i].is_ascii_hexdigit() => {
                let mut value = 0u32;
                let mut digits = 0;
                while digits < 2 && i < raw.len() && raw[i].is_ascii_hexdigit() {
                    value = value * 16 + (raw[i] as char).to_digit(16).expect("a hex digit");
                    i += 1;
                    digits += 1;
                }
                out.push(value as u8);
            }
            other => out.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Decoded = Vec<(u64, Vec<Option<String>>)>;

    /// Decodes `input` fed in chunks of `chunk` bytes.
    fn decode(options: Options, input: &str, chunk: usize) -> Decoded {
        let mut decoder = Decoder::new(options);
        let mut records = Vec::new();
        let mut each = |record: Record<'_>| {
            let fields =
                (0..record.len()).map(|i| record.field(i).map(|b| String::from_utf8(b.to_vec()).unwrap())).collect();
            records.push((record.line, fields));
            Ok(())
        };
        for piece in input.as_bytes().chunks(chunk) {
            decoder.feed(piece, &mut each).unwrap();
        }
        decoder.finish(&mut each).unwrap();
        records
    }

    fn s(text: &str) -> Option<String> {
        Some(text.to_string())
    }

    #[test]
    fn text_format_escapes_nulls_and_end_marker_in_any_chunking() {
        let input = "1\ta\\tb\t\\N\n2\t\\\\x\\101\\x41\t\r\n\\.\nignored\n";
        let expected = vec![(1, vec![s("1"), s("a\tb"), None]), (2, vec![s("2"), s("\\xAA"), s("")])];
        for chunk in [1, 2, 3, 7, 100] {
            assert_eq!(decode(Options::defaults(Format::Text), input, chunk), expected, "chunks of {chunk}");
        }
    }

    #[test]
    fn text_format_escaped_delimiter_and_last_line_without_newline() {
        let mut options = Options::defaults(Format::Text);
        options.delimiter = b'|';
        options.header = true;
        let records = decode(options, "a|b\nx\\|y|z\\\nw|\\", 4);
        assert_eq!(records, vec![(2, vec![s("x|y"), s("z\\")]), (3, vec![s("w"), s("\\")])]);
    }

    #[test]
    fn csv_quotes_nulls_and_newlines_inside_quotes() {
        let mut options = Options::defaults(Format::Csv);
        options.header = true;
        let input = "id,name,note\n1,\"a,b\",\n2,\"\",\"line\none\"\n3,\"say \"\"hi\"\"\",x\r\n4,,\"\"";
        let expected = vec![
            (2, vec![s("1"), s("a,b"), None]),
            (3, vec![s("2"), s(""), s("line\none")]),
            (4, vec![s("3"), s("say \"hi\""), s("x")]),
            (5, vec![s("4"), None, s("")]),
        ];
        for chunk in [1, 2, 5, 1000] {
            assert_eq!(decode(options.clone(), input, chunk), expected, "chunks of {chunk}");
        }
    }

    #[test]
    fn csv_null_string_and_escape_character() {
        let mut options = Options::defaults(Format::Csv);
        options.null = b"NA".to_vec();
        options.escape = b'\\';
        options.delimiter = b';';
        let records = decode(options, "NA;\"NA\";\"a\\\"b\";\n\\.\n1;2\n", 3);
        assert_eq!(records, vec![(1, vec![None, s("NA"), s("a\"b"), s("")])]);
    }

    #[test]
    fn a_line_without_end_is_bounded() {
        let mut decoder = Decoder::new(Options::defaults(Format::Text));
        let chunk = vec![b'x'; 1 << 20];
        let mut each = |_: Record<'_>| Ok(());
        let mut result = Ok(());
        for _ in 0..=(MAX_RECORD_BYTES >> 20) {
            result = decoder.feed(&chunk, &mut each);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result.unwrap_err().sqlstate, "54000");
    }
}
