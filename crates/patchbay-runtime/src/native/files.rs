//! `sync_files`: records from a file on the Patchbay server.
//!
//! Credentials: `path`, `format` (`jsonl` or `csv`), `idField` (names the
//! record of a row that cannot be read) and, for CSV, `delimiter` (`,` by
//! default; `;`, `tab` or `|`). One stream, `records`, read in batches of
//! at most [`BATCH`] records and failures, about [`MAX_BATCH_BYTES`].
//!
//! * **JSON Lines**: one JSON object a line; blank lines are skipped. A line
//!   that is not a JSON object becomes a [`RecordFailure`] (its position and
//!   why, never its content) and the batch goes on.
//! * **CSV** (RFC 4180): the first record is the header (a UTF-8 byte-order
//!   mark is skipped; names are trimmed; a column without a name is ignored;
//!   a name twice is an error). Fields may be quoted, with `""` for a quote
//!   and line breaks inside; records end with CRLF or LF; blank lines are
//!   skipped. Values are strings (the stream's field mapping casts them). A
//!   row with another number of fields than the header, a stray character
//!   after a closing quote, or text that is not UTF-8 is a failure.
//! * A record longer than [`MAX_RECORD_BYTES`] is a failure.
//!
//! **The cursor** is the byte offset after the last complete record, with a
//! fingerprint of the bytes before it: `"<offset>:<16 hex digits>"` (a bare
//! offset is accepted too, unchecked). Files that grow by appending are
//! read incrementally; a file that no longer has the same bytes before the
//! offset (replaced, truncated, rewritten) is read again from the start —
//! the records store keeps one version per external id and counts the
//! records it already holds as unchanged. A CSV header is read again at
//! every call.
//!
//! **The last record without a line break** may still be being written. A
//! JSON line is taken once it is a whole JSON object (a cut object never
//! parses); a CSV record once the file has not been modified for
//! [`SETTLED_AFTER`] (many tools end a CSV file without a line break).
//!
//! **Writing** (`write`, the destination of an export) appends to the
//! file, creating it: a JSON Lines file gets one line per record; a CSV file
//! one row per record under its header — an empty or new file first gets a
//! header from the first record's fields, and a record with a field that is
//! not a column of the file is refused (a per-record failure, the others are
//! written). CSV values: strings as they are, `null` empty, numbers and
//! booleans as written in JSON, objects and arrays as JSON text; a field is
//! quoted when it holds the delimiter, a quote, a line break, or leading or
//! trailing spaces. A record that is not a JSON object is refused. The file
//! is synced to disk before `write` answers; the record's `idField` value
//! is reported as its external id.
//!
//! **No cursor field.** A byte offset already makes appended files
//! incremental, and a full re-read of a rewritten file is cheap for the store
//! (unchanged records are not written again); a "records updated after"
//! filter would add a setting without saving a read of the file.

use std::fs::File;
use std::io::{BufRead, BufReader, Read as _, Seek, SeekFrom};
use std::time::{Duration, SystemTime};

use patchbay_core::LogLevel;
use serde_json::{Map, Value};

use crate::contract::{
    Batch, CallContext, CallLog, Connector, ConnectorError, Health, RecordFailure, WriteOutcome,
    WrittenRecord,
};

/// The file-sync connector.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileSync;

/// Records (and failures) per batch.
pub const BATCH: usize = 5_000;
/// A longer record is a failure (and is not held in memory).
pub const MAX_RECORD_BYTES: usize = 8 << 20;
/// A batch ends after the record that crosses this many bytes of the file.
pub const MAX_BATCH_BYTES: u64 = 32 << 20;
/// A CSV file's last record without a line break is taken once the file is
/// this old.
pub const SETTLED_AFTER: Duration = Duration::from_secs(10);
/// How many bytes before the offset a cursor's fingerprint covers.
const FINGERPRINT_BYTES: u64 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    JsonLines,
    Csv { delimiter: u8 },
}

fn path(ctx: &CallContext) -> Result<String, ConnectorError> {
    ctx.credentials
        .text("path")
        .map(str::to_owned)
        .ok_or_else(|| ConnectorError::invalid("no path is configured"))
}

fn format(ctx: &CallContext) -> Result<Format, ConnectorError> {
    match ctx.credentials.text("format") {
        Some("jsonl") => Ok(Format::JsonLines),
        Some("csv") => {
            let delimiter = match ctx.credentials.text("delimiter") {
                None | Some("" | ",") => b',',
                Some(";") => b';',
                Some("tab" | "\t") => b'\t',
                Some("|") => b'|',
                Some(_) => {
                    return Err(ConnectorError::invalid(
                        "the delimiter is not one of `,`, `;`, `tab` or `|`",
                    ));
                }
            };
            Ok(Format::Csv { delimiter })
        }
        Some(other) => Err(ConnectorError::unsupported(format!(
            "reading `{other}` files (JSON Lines and CSV only)"
        ))),
        None => Err(ConnectorError::invalid("no format is configured")),
    }
}

fn check_path(path: &str) -> Result<String, ConnectorError> {
    let p = std::path::Path::new(path);
    let meta = std::fs::metadata(p)
        .map_err(|e| ConnectorError::fatal(format!("the path is unusable: {e}")))?;
    if meta.is_dir() {
        std::fs::read_dir(p)
            .map_err(|e| ConnectorError::fatal(format!("cannot list the directory: {e}")))?;
        Ok("the directory is readable".to_owned())
    } else {
        File::open(p).map_err(|e| ConnectorError::fatal(format!("cannot open the file: {e}")))?;
        Ok("the file is readable".to_owned())
    }
}

#[allow(clippy::needless_pass_by_value)] // Used as `map_err(read_error)`.
fn read_error(e: std::io::Error) -> ConnectorError {
    ConnectorError::transient(format!("cannot read the file: {e}"))
}

// ---------------------------------------------------------------------------
// Cursors.

/// A position in the file, and a fingerprint of the bytes before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    offset: u64,
    fingerprint: Option<u64>,
}

impl Cursor {
    fn parse(text: &str) -> Result<Cursor, ConnectorError> {
        let bad = || ConnectorError::invalid("the cursor is not a byte offset");
        let (offset, fingerprint) = match text.split_once(':') {
            Some((o, f)) => (o, Some(f)),
            None => (text, None),
        };
        if offset.is_empty() || !offset.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let offset = offset.parse::<u64>().map_err(|_| bad())?;
        let fingerprint = match fingerprint {
            None => None,
            Some(f) if f.len() == 16 => Some(u64::from_str_radix(f, 16).map_err(|_| bad())?),
            Some(_) => return Err(bad()),
        };
        Ok(Cursor {
            offset,
            fingerprint,
        })
    }
}

/// FNV-1a, 64 bits: stable across builds and platforms.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The fingerprint of the bytes before `offset` (which is within the file).
fn fingerprint_at(file: &mut File, offset: u64) -> std::io::Result<u64> {
    let n = offset.min(FINGERPRINT_BYTES);
    file.seek(SeekFrom::Start(offset - n))?;
    let mut buf = [0u8; 64];
    #[allow(clippy::cast_possible_truncation)] // At most 64.
    let buf = &mut buf[..n as usize];
    file.read_exact(buf)?;
    Ok(fnv1a(buf))
}

/// Where to read from: the cursor's offset, or the start when the file no
/// longer is the one the cursor was taken in.
fn resume_at(
    file: &mut File,
    len: u64,
    cursor: Option<Cursor>,
    log: &CallLog,
) -> std::io::Result<u64> {
    let Some(c) = cursor else {
        return Ok(0);
    };
    let same = c.offset <= len
        && match c.fingerprint {
            None => true,
            Some(f) => fingerprint_at(file, c.offset)? == f,
        };
    if same {
        Ok(c.offset)
    } else {
        log.push(
            LogLevel::Warning,
            "the file is not the one the cursor was taken in (replaced, truncated or \
             rewritten): reading it again from the start",
        );
        Ok(0)
    }
}

/// Sets the batch's cursor when the read moved past `start`.
fn finish(mut file: File, start: u64, position: u64, mut batch: Batch) -> std::io::Result<Batch> {
    if position > start {
        let fingerprint = fingerprint_at(&mut file, position)?;
        batch.next_cursor = Some(format!("{position}:{fingerprint:016x}"));
    }
    Ok(batch)
}

fn failure(at: u64, external_id: Option<String>, message: String) -> RecordFailure {
    RecordFailure {
        position: format!("byte {at}"),
        external_id,
        message,
    }
}

/// Skips a UTF-8 byte-order mark; its length.
fn skip_bom(reader: &mut impl BufRead) -> std::io::Result<u64> {
    if reader.fill_buf()?.starts_with(b"\xEF\xBB\xBF") {
        reader.consume(3);
        Ok(3)
    } else {
        Ok(0)
    }
}

fn open(path: &str) -> Result<(File, std::fs::Metadata), ConnectorError> {
    let file = File::open(path)
        .map_err(|e| ConnectorError::fatal(format!("cannot open the file: {e}")))?;
    let meta = file.metadata().map_err(read_error)?;
    Ok((file, meta))
}

// ---------------------------------------------------------------------------
// JSON Lines.

/// Reads one line into `line` (at most `cap` bytes of it kept): the bytes
/// consumed, and whether the line ended with a line break.
fn read_line_capped(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<(usize, bool)> {
    let mut total = 0;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok((total, false));
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        let room = cap.saturating_sub(line.len());
        line.extend_from_slice(&available[..take.min(room)]);
        reader.consume(take);
        total += take;
        if done {
            return Ok((total, true));
        }
    }
}

fn json_problem(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "it ends early",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "invalid data",
        serde_json::error::Category::Io => "read error",
    };
    format!(
        "the line is not valid JSON ({what} at column {})",
        e.column()
    )
}

/// Reads JSON Lines from the cursor.
fn read_jsonl(path: &str, cursor: Option<Cursor>, log: &CallLog) -> Result<Batch, ConnectorError> {
    let (mut file, meta) = open(path)?;
    let start = resume_at(&mut file, meta.len(), cursor, log).map_err(read_error)?;
    file.seek(SeekFrom::Start(start)).map_err(read_error)?;
    let mut reader = BufReader::with_capacity(64 << 10, file);
    let mut position = start;
    if start == 0 {
        position += skip_bom(&mut reader).map_err(read_error)?;
    }
    let mut batch = Batch::default();
    let mut line = Vec::new();
    while batch.records.len() + batch.failures.len() < BATCH && position - start < MAX_BATCH_BYTES {
        line.clear();
        let (n, terminated) =
            read_line_capped(&mut reader, &mut line, MAX_RECORD_BYTES).map_err(read_error)?;
        if n == 0 {
            break;
        }
        let oversize = n > line.len();
        if !terminated {
            // The last line has no line break yet: it is complete when it
            // is a whole JSON object (a cut one never parses).
            if !oversize
                && let Ok(record @ Value::Object(_)) = serde_json::from_slice::<Value>(&line)
            {
                batch.records.push(record);
                position += n as u64;
            }
            break;
        }
        let at = position;
        position += n as u64;
        if oversize {
            batch.failures.push(failure(
                at,
                None,
                format!("the line is longer than {} MiB", MAX_RECORD_BYTES >> 20),
            ));
            continue;
        }
        let body = line.strip_suffix(b"\n").unwrap_or(&line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if body.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(record @ Value::Object(_)) => batch.records.push(record),
            Ok(_) => batch.failures.push(failure(
                at,
                None,
                "the line is JSON but not an object".to_owned(),
            )),
            Err(e) => batch.failures.push(failure(at, None, json_problem(&e))),
        }
    }
    finish(reader.into_inner(), start, position, batch).map_err(read_error)
}

// ---------------------------------------------------------------------------
// CSV.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a field.
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: the closing one, or the first of `""`.
    QuoteInQuoted,
}

/// How a call of [`RowParser::next`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// A record and its line break.
    Record,
    /// A record cut by the end of the file.
    Unterminated,
    /// Nothing left.
    Eof,
}

/// An RFC 4180 record reader: the fields of one record, unescaped, in one
/// buffer.
#[derive(Debug)]
struct RowParser {
    delimiter: u8,
    state: State,
    /// The fields' bytes, one after the other.
    data: Vec<u8>,
    /// Where each field ends in `data`.
    ends: Vec<usize>,
    /// The current field started with a quote.
    quoted: bool,
    /// Any field was quoted.
    saw_quote: bool,
    /// The record's bytes in the file.
    raw: usize,
    /// Longer than [`MAX_RECORD_BYTES`]: not all kept.
    oversize: bool,
    /// The first reason the record is malformed.
    problem: Option<String>,
}

impl RowParser {
    fn new(delimiter: u8) -> RowParser {
        RowParser {
            delimiter,
            state: State::FieldStart,
            data: Vec::new(),
            ends: Vec::new(),
            quoted: false,
            saw_quote: false,
            raw: 0,
            oversize: false,
            problem: None,
        }
    }

    /// Reads the next record.
    fn next(&mut self, reader: &mut impl BufRead) -> std::io::Result<End> {
        self.state = State::FieldStart;
        self.data.clear();
        self.ends.clear();
        self.quoted = false;
        self.saw_quote = false;
        self.raw = 0;
        self.oversize = false;
        self.problem = None;
        loop {
            let available = reader.fill_buf()?;
            if available.is_empty() {
                if self.raw == 0 {
                    return Ok(End::Eof);
                }
                if self.state == State::Quoted {
                    self.fail("a quoted field is not closed at the end of the file");
                }
                self.end_record();
                return Ok(End::Unterminated);
            }
            let (used, done) = self.feed(available);
            reader.consume(used);
            self.raw += used;
            if done {
                return Ok(End::Record);
            }
        }
    }

    /// Parses bytes up to the end of the record: how many were used, and
    /// whether the record ended.
    fn feed(&mut self, bytes: &[u8]) -> (usize, bool) {
        let d = self.delimiter;
        for (i, &b) in bytes.iter().enumerate() {
            match self.state {
                State::FieldStart | State::Unquoted => {
                    if b == d {
                        self.end_field();
                    } else if b == b'\n' {
                        self.end_record();
                        return (i + 1, true);
                    } else if b == b'"' && self.state == State::FieldStart {
                        self.quoted = true;
                        self.saw_quote = true;
                        self.state = State::Quoted;
                    } else {
                        // A quote inside an unquoted field is taken as is.
                        self.push(b);
                        self.state = State::Unquoted;
                    }
                }
                State::Quoted => {
                    if b == b'"' {
                        self.state = State::QuoteInQuoted;
                    } else {
                        self.push(b);
                    }
                }
                State::QuoteInQuoted => {
                    if b == b'"' {
                        self.push(b'"');
                        self.state = State::Quoted;
                    } else if b == d {
                        self.end_field();
                    } else if b == b'\n' {
                        self.end_record();
                        return (i + 1, true);
                    } else if b != b'\r' {
                        self.fail(
                            "a closing quote is followed by other characters (a quote \
                             inside a quoted field is written twice)",
                        );
                        self.push(b);
                        self.state = State::Unquoted;
                    }
                }
            }
        }
        (bytes.len(), false)
    }

    fn push(&mut self, b: u8) {
        if self.data.len() < MAX_RECORD_BYTES {
            self.data.push(b);
        } else {
            self.oversize = true;
        }
    }

    fn fail(&mut self, why: &str) {
        if self.problem.is_none() {
            self.problem = Some(format!("field {}: {why}", self.ends.len() + 1));
        }
    }

    fn end_field(&mut self) {
        self.ends.push(self.data.len());
        self.quoted = false;
        self.state = State::FieldStart;
    }

    fn end_record(&mut self) {
        // The CR of a CRLF ending an unquoted field.
        let start = self.ends.last().copied().unwrap_or(0);
        if !self.quoted && self.data.len() > start && self.data.last() == Some(&b'\r') {
            self.data.pop();
        }
        self.end_field();
    }

    fn field(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.data.get(start..end)
    }

    /// A line with nothing on it.
    fn is_blank(&self) -> bool {
        self.ends.len() == 1 && self.data.is_empty() && !self.saw_quote
    }

    /// The column names of a header record (`None`: a column without one).
    fn header(&self) -> Result<Vec<Option<String>>, ConnectorError> {
        if self.oversize {
            return Err(ConnectorError::invalid(format!(
                "the header row is longer than {} MiB",
                MAX_RECORD_BYTES >> 20
            )));
        }
        if let Some(problem) = &self.problem {
            return Err(ConnectorError::invalid(format!(
                "the header row is not valid CSV: {problem}"
            )));
        }
        let mut names: Vec<Option<String>> = Vec::with_capacity(self.ends.len());
        for i in 0..self.ends.len() {
            let name = std::str::from_utf8(self.field(i).unwrap_or_default())
                .map_err(|_| ConnectorError::invalid("the header row is not valid UTF-8"))?
                .trim();
            if name.is_empty() {
                names.push(None);
            } else if names.iter().flatten().any(|n| n == name) {
                return Err(ConnectorError::invalid(format!(
                    "the header names the column `{name}` twice"
                )));
            } else {
                names.push(Some(name.to_owned()));
            }
        }
        if names.iter().all(Option::is_none) {
            return Err(ConnectorError::invalid(
                "the header row has no column names",
            ));
        }
        Ok(names)
    }

    /// The record as an object of strings, or why not (and its id, when
    /// the id column could be read).
    fn record(
        &self,
        columns: &[Option<String>],
        id_column: Option<usize>,
    ) -> Result<Value, (Option<String>, String)> {
        let external_id = id_column
            .and_then(|i| self.field(i))
            .and_then(|b| std::str::from_utf8(b).ok())
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned);
        if self.oversize {
            return Err((
                external_id,
                format!("the record is longer than {} MiB", MAX_RECORD_BYTES >> 20),
            ));
        }
        if let Some(problem) = &self.problem {
            return Err((external_id, problem.clone()));
        }
        if self.ends.len() != columns.len() {
            return Err((
                external_id,
                format!(
                    "the row has {} field(s) and the header {}",
                    self.ends.len(),
                    columns.len()
                ),
            ));
        }
        let mut record = Map::new();
        for (i, name) in columns.iter().enumerate() {
            let Some(name) = name else { continue };
            let Ok(text) = std::str::from_utf8(self.field(i).unwrap_or_default()) else {
                return Err((external_id, format!("field {} is not valid UTF-8", i + 1)));
            };
            record.insert(name.clone(), Value::String(text.to_owned()));
        }
        Ok(Value::Object(record))
    }
}

/// Reads CSV records from the cursor.
fn read_csv(
    path: &str,
    delimiter: u8,
    id_field: Option<&str>,
    cursor: Option<Cursor>,
    log: &CallLog,
) -> Result<Batch, ConnectorError> {
    let (mut file, meta) = open(path)?;
    let settled = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_some_and(|age| age >= SETTLED_AFTER);
    let resume = resume_at(&mut file, meta.len(), cursor, log).map_err(read_error)?;
    file.seek(SeekFrom::Start(0)).map_err(read_error)?;
    let mut reader = BufReader::with_capacity(64 << 10, file);
    let mut parser = RowParser::new(delimiter);
    let bom = skip_bom(&mut reader).map_err(read_error)?;
    if parser.next(&mut reader).map_err(read_error)? != End::Record {
        // No complete header: no rows either.
        return Ok(Batch::default());
    }
    let header_end = bom + parser.raw as u64;
    let columns = parser.header()?;
    let id_column = id_field.and_then(|f| columns.iter().position(|c| c.as_deref() == Some(f)));
    let start = resume.max(header_end);
    if start != header_end {
        reader.seek(SeekFrom::Start(start)).map_err(read_error)?;
    }
    let mut position = start;
    let mut batch = Batch::default();
    while batch.records.len() + batch.failures.len() < BATCH && position - start < MAX_BATCH_BYTES {
        let end = parser.next(&mut reader).map_err(read_error)?;
        if end == End::Eof || (end == End::Unterminated && !settled) {
            break;
        }
        let at = position;
        position += parser.raw as u64;
        if parser.is_blank() {
            continue;
        }
        match parser.record(&columns, id_column) {
            Ok(record) => batch.records.push(record),
            Err((external_id, message)) => batch.failures.push(failure(at, external_id, message)),
        }
        if end == End::Unterminated {
            break;
        }
    }
    finish(reader.into_inner(), start, position, batch).map_err(read_error)
}

/// The text of one CSV field.
fn csv_field(value: &Value, delimiter: u8, out: &mut String) {
    let text = match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let quote = text
        .bytes()
        .any(|b| b == delimiter || matches!(b, b'"' | b'\r' | b'\n'))
        || text.starts_with(' ')
        || text.ends_with(' ');
    if quote {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(&text);
    }
}

/// A CSV file's columns, and whether the file ends with a line break.
type CsvHeader = (Vec<Option<String>>, bool);

/// The header of an existing CSV file, and whether the file ends with a line
/// break; `None` for a missing or empty file.
fn csv_header(path: &str, delimiter: u8) -> Result<Option<CsvHeader>, ConnectorError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_error(e)),
    };
    let len = file.metadata().map_err(read_error)?.len();
    if len == 0 {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(len - 1)).map_err(read_error)?;
    let mut last = [0_u8; 1];
    file.read_exact(&mut last).map_err(read_error)?;
    file.seek(SeekFrom::Start(0)).map_err(read_error)?;
    let mut reader = BufReader::with_capacity(64 << 10, file);
    skip_bom(&mut reader).map_err(read_error)?;
    let mut parser = RowParser::new(delimiter);
    if parser.next(&mut reader).map_err(read_error)? == End::Eof {
        return Ok(None);
    }
    Ok(Some((parser.header()?, last[0] == b'\n')))
}

/// Appends `records` to the file (see the module documentation).
fn write_records(
    path: &str,
    format: Format,
    id_field: Option<&str>,
    records: &[Value],
) -> Result<WriteOutcome, ConnectorError> {
    use std::io::Write as _;
    let mut outcome = WriteOutcome::default();
    let mut text = String::new();
    let mut header: Option<Vec<Option<String>>> = None;
    if let Format::Csv { delimiter } = format {
        if let Some((columns, ends_with_break)) = csv_header(path, delimiter)? {
            if !ends_with_break {
                text.push('\n');
            }
            header = Some(columns);
        } else {
            let Some(first) = records.iter().find_map(Value::as_object) else {
                for i in 0..records.len() {
                    outcome
                        .failed
                        .push((i, "the record is not a JSON object".to_owned()));
                }
                return Ok(outcome);
            };
            let columns: Vec<Option<String>> = first.keys().cloned().map(Some).collect();
            for (n, c) in columns.iter().flatten().enumerate() {
                if n > 0 {
                    text.push(char::from(delimiter));
                }
                csv_field(&Value::String(c.clone()), delimiter, &mut text);
            }
            text.push('\n');
            header = Some(columns);
        }
    }
    for (i, record) in records.iter().enumerate() {
        let Some(object) = record.as_object() else {
            outcome
                .failed
                .push((i, "the record is not a JSON object".to_owned()));
            continue;
        };
        if let (Format::Csv { delimiter }, Some(columns)) = (&format, &header) {
            if let Some(extra) = object
                .keys()
                .find(|k| !columns.iter().any(|c| c.as_deref() == Some(k.as_str())))
            {
                outcome
                    .failed
                    .push((i, format!("field `{extra}` is not a column of the file")));
                continue;
            }
            for (n, column) in columns.iter().enumerate() {
                if n > 0 {
                    text.push(char::from(*delimiter));
                }
                if let Some(v) = column.as_ref().and_then(|c| object.get(c)) {
                    csv_field(v, *delimiter, &mut text);
                }
            }
            text.push('\n');
        } else {
            text.push_str(&record.to_string());
            text.push('\n');
        }
        outcome.written += 1;
        outcome.results.push(WrittenRecord {
            index: i,
            external_id: id_field.and_then(|f| match object.get(f) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            }),
            created: None,
        });
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| ConnectorError::fatal(format!("cannot open the file for writing: {e}")))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_data())
        .map_err(|e| ConnectorError::transient(format!("cannot write the file: {e}")))?;
    Ok(outcome)
}

#[async_trait::async_trait]
impl Connector for FileSync {
    async fn write(
        &self,
        ctx: &CallContext,
        stream: &str,
        records: Vec<Value>,
    ) -> Result<WriteOutcome, ConnectorError> {
        if stream != "records" {
            return Err(ConnectorError::unsupported(format!("stream `{stream}`")));
        }
        let format = format(ctx)?;
        let path = path(ctx)?;
        let id_field = ctx.credentials.text("idField").map(str::to_owned);
        tokio::task::spawn_blocking(move || {
            write_records(&path, format, id_field.as_deref(), &records)
        })
        .await
        .map_err(|e| ConnectorError::fatal(format!("the write failed: {e}")))?
    }

    async fn check(&self, ctx: &CallContext) -> Result<Health, ConnectorError> {
        let path = path(ctx)?;
        let message = tokio::task::spawn_blocking(move || check_path(&path))
            .await
            .map_err(|e| ConnectorError::fatal(format!("the check failed: {e}")))??;
        Ok(Health { ok: true, message })
    }

    async fn read(
        &self,
        ctx: &CallContext,
        stream: &str,
        cursor: Option<&str>,
    ) -> Result<Batch, ConnectorError> {
        if stream != "records" {
            return Err(ConnectorError::unsupported(format!("stream `{stream}`")));
        }
        let format = format(ctx)?;
        let cursor = cursor.map(Cursor::parse).transpose()?;
        let path = path(ctx)?;
        let id_field = ctx.credentials.text("idField").map(str::to_owned);
        let log = ctx.log.clone();
        tokio::task::spawn_blocking(move || match format {
            Format::JsonLines => read_jsonl(&path, cursor, &log),
            Format::Csv { delimiter } => {
                read_csv(&path, delimiter, id_field.as_deref(), cursor, &log)
            }
        })
        .await
        .map_err(|e| ConnectorError::fatal(format!("the read failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record of `text`, as (end, fields) pairs.
    fn records(text: &[u8], delimiter: u8) -> Vec<(End, Vec<String>, Option<String>)> {
        // A tiny buffer so records cross buffer boundaries.
        let mut reader = BufReader::with_capacity(3, text);
        let mut p = RowParser::new(delimiter);
        let mut out = Vec::new();
        loop {
            let end = p.next(&mut reader).unwrap();
            if end == End::Eof {
                return out;
            }
            let fields = (0..p.ends.len())
                .map(|i| String::from_utf8(p.field(i).unwrap().to_vec()).unwrap())
                .collect();
            out.push((end, fields, p.problem.clone()));
        }
    }

    fn ok(fields: &[&str]) -> (End, Vec<String>, Option<String>) {
        (
            End::Record,
            fields.iter().map(|s| (*s).to_owned()).collect(),
            None,
        )
    }

    #[test]
    fn csv_records_follow_rfc_4180() {
        let text = b"a,b,c\r\n1,\"x, y\",\"say \"\"hi\"\"\"\n\"multi\r\nline\",,\"\"\n5\" tall,q\"q,\n\nlast,\"\",x";
        assert_eq!(
            records(text, b','),
            [
                ok(&["a", "b", "c"]),
                ok(&["1", "x, y", "say \"hi\""]),
                ok(&["multi\r\nline", "", ""]),
                ok(&["5\" tall", "q\"q", ""]),
                ok(&[""]),
                (
                    End::Unterminated,
                    vec!["last".to_owned(), String::new(), "x".to_owned()],
                    None
                ),
            ]
        );
        assert_eq!(
            records(b"a;b\t c\n\"1;2\";3\n", b';'),
            [ok(&["a", "b\t c"]), ok(&["1;2", "3"])]
        );
        assert_eq!(records(b"a\tb\r\n", b'\t'), [ok(&["a", "b"])]);
    }

    #[test]
    fn malformed_csv_records_say_why() {
        let got = records(b"\"ab\"c,d\n\"open,e\n", b',');
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].2.as_deref(),
            Some(
                "field 1: a closing quote is followed by other characters (a quote inside a \
                 quoted field is written twice)"
            )
        );
        assert_eq!(got[0].1, ["abc", "d"]);
        assert_eq!(got[1].0, End::Unterminated);
        assert_eq!(
            got[1].2.as_deref(),
            Some("field 1: a quoted field is not closed at the end of the file")
        );
    }

    #[test]
    fn cursors_parse_and_fingerprints_are_stable() {
        assert_eq!(
            Cursor::parse("12").unwrap(),
            Cursor {
                offset: 12,
                fingerprint: None
            }
        );
        assert_eq!(
            Cursor::parse("12:00000000000000ff").unwrap(),
            Cursor {
                offset: 12,
                fingerprint: Some(255)
            }
        );
        for bad in [
            "",
            "nope",
            "-1",
            "+1",
            "1:",
            "1:xyz",
            "1:00000000000000fg",
            ":1",
        ] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
        // The published FNV-1a test vectors.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
