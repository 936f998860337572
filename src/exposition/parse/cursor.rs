//! Reading the tokens of one line: names, quoted label values, HELP text,
//! and whatever follows a value. Knows nothing of families; see the parent
//! module for the state that spans lines.

use std::fmt::Write as _;

use super::{ParseErrorKind, Step};
use crate::exposition::same_bytes;

/// A position in one line.
pub(super) struct Cursor<'a> {
    pub line: &'a [u8],
    /// The longest prefix of `line` known to be UTF-8: the parser checks the
    /// whole input once, so most lines are all text and their names and
    /// label values need no check of their own.
    pub text: &'a str,
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    /// `line[start..end]` as text, if it is UTF-8.
    pub(super) fn str_at(&self, start: usize, end: usize) -> Option<&'a str> {
        self.text
            .get(start..end)
            .or_else(|| std::str::from_utf8(&self.line[start..end]).ok())
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.line.get(self.pos).copied()
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.line.len()
    }

    pub(super) fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// Takes the bytes from the cursor up to the first outside `class` (a
    /// bit of [`CLASSES`]).
    fn take_class(&mut self, class: u8) -> &'a [u8] {
        let start = self.pos;
        let rest = &self.line[start..];
        self.pos += rest
            .iter()
            .position(|&b| CLASSES[usize::from(b)] & class == 0)
            .unwrap_or(rest.len());
        &self.line[start..self.pos]
    }

    pub(super) fn take_until_blank(&mut self) -> &'a [u8] {
        self.take_class(NOT_BLANK)
    }

    /// A name whose first byte is in `first` and the rest in `rest`, or ""
    /// (with the cursor unmoved) when the first byte is not.
    ///
    /// `likely` is a name of the same kind read before, or "": most lines
    /// repeat the names of the line before, in the same places, and when
    /// the line continues with `likely` and the name ends there, its bytes
    /// are compared at once instead of looked up one by one.
    fn take_name(&mut self, first: u8, rest: u8, likely: &str) -> &'a str {
        let start = self.pos;
        let ahead = &self.line[start..];
        if !likely.is_empty()
            && ahead
                .get(..likely.len())
                .is_some_and(|head| same_bytes(head, likely.as_bytes()))
            && ahead
                .get(likely.len())
                .is_none_or(|&b| CLASSES[usize::from(b)] & rest == 0)
        {
            debug_assert!(is_name(likely.as_bytes(), first, rest));
            self.pos += likely.len();
            return self.ascii_at(start);
        }
        if self
            .peek()
            .is_none_or(|b| CLASSES[usize::from(b)] & first == 0)
        {
            return "";
        }
        self.take_class(rest);
        self.ascii_at(start)
    }

    /// A metric name, or "": see [`Cursor::take_name`] for `likely`.
    pub(super) fn take_metric_name(&mut self, likely: &str) -> &'a str {
        self.take_name(METRIC_START, METRIC, likely)
    }

    /// A label name, or "": see [`Cursor::take_name`] for `likely`.
    pub(super) fn take_label_name(&mut self, likely: &str) -> &'a str {
        self.take_name(LABEL_START, LABEL, likely)
    }

    /// The name from `start` to the cursor, which was checked against an
    /// ASCII charset.
    fn ascii_at(&self, start: usize) -> &'a str {
        self.str_at(start, self.pos).unwrap_or_default()
    }

    /// How the byte at the cursor reads in a message: a quoted character, or
    /// "end of line".
    pub(super) fn found(&self) -> String {
        match self
            .line
            .get(self.pos..)
            .and_then(|rest| rest.utf8_chunks().next())
        {
            None => "end of line".to_owned(),
            Some(chunk) => match chunk.valid().chars().next() {
                Some(c) => format!("{c:?}"),
                None => format!("byte 0x{:02x}", self.line[self.pos]),
            },
        }
    }
}

/// Whether `name` is a name whose first byte is in `first` and the rest in
/// `rest`.
fn is_name(name: &[u8], first: u8, rest: u8) -> bool {
    name.split_first().is_some_and(|(&head, tail)| {
        CLASSES[usize::from(head)] & first != 0
            && tail.iter().all(|&b| CLASSES[usize::from(b)] & rest != 0)
    })
}

/// What each byte may be, as bits: [`METRIC_START`] and [`METRIC`] for
/// metric names (`[a-zA-Z_:][a-zA-Z0-9_:]*`), [`LABEL_START`] and [`LABEL`]
/// for label names (`[a-zA-Z_][a-zA-Z0-9_]*`), and [`NOT_BLANK`].
static CLASSES: [u8; 256] = classes();

const METRIC_START: u8 = 1;
const METRIC: u8 = 2;
const LABEL_START: u8 = 4;
const LABEL: u8 = 8;
const NOT_BLANK: u8 = 16;

const fn classes() -> [u8; 256] {
    let mut classes = [0; 256];
    let mut b: u8 = 0;
    loop {
        let letter = b.is_ascii_alphabetic() || b == b'_';
        let digit = b.is_ascii_digit();
        let mut class = 0;
        if letter || b == b':' {
            class |= METRIC_START | METRIC;
        }
        if digit {
            class |= METRIC | LABEL;
        }
        if letter {
            class |= LABEL_START | LABEL;
        }
        if b != b' ' && b != b'\t' {
            class |= NOT_BLANK;
        }
        classes[b as usize] = class;
        if b == u8::MAX {
            return classes;
        }
        b += 1;
    }
}

/// Text for messages: valid UTF-8 as is, other bytes as `\xNN`.
pub(super) fn lossy(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Go's `strconv.ParseInt(s, 10, 64)`.
pub(super) fn is_int64(token: &[u8]) -> bool {
    std::str::from_utf8(token).is_ok_and(|t| {
        let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && t.parse::<i64>().is_ok()
    })
}

/// The Go parser drops backslashes from the rest of a TYPE line and from
/// what follows a timestamp; mirror that.
pub(super) fn without_backslashes(bytes: &[u8]) -> String {
    lossy(
        &bytes
            .iter()
            .copied()
            .filter(|&b| b != b'\\')
            .collect::<Vec<_>>(),
    )
}

/// Reads a label value after its opening quote, through the closing quote;
/// returns the raw (still escaped) text, which is already canonical.
pub(super) fn read_label_value<'a>(c: &mut Cursor<'a>) -> Step<&'a str> {
    let start = c.pos;
    loop {
        let rest = &c.line[c.pos..];
        let Some(at) = find_quote_or_backslash(rest) else {
            c.pos = c.line.len();
            let value = lossy(&c.line[start..]);
            return Err((c.pos, ParseErrorKind::UnescapedNewline { value }));
        };
        c.pos += at;
        if rest[at] == b'"' {
            break;
        }
        match c.line.get(c.pos + 1) {
            Some(b'"' | b'\\' | b'n') => c.pos += 2,
            _ => return Err(invalid_escape(c, "a label value", "\\\\, \\\" and \\n")),
        }
    }
    let end = c.pos;
    c.pos += 1;
    c.str_at(start, end).ok_or_else(|| {
        let value = lossy(&c.line[start..end]);
        (start, ParseErrorKind::InvalidLabelValue { value })
    })
}

/// The offset of the first `"` or `\` in `haystack`: memchr's SSE2 search
/// on x86-64, as in `find_newline` (which says why not its default one).
pub(super) fn find_quote_or_backslash(haystack: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(sse2) = memchr::arch::x86_64::sse2::memchr::Two::new(b'"', b'\\') {
        return sse2.find(haystack);
    }
    memchr::memchr2(b'"', b'\\', haystack)
}

/// The error for the backslash at the cursor: it starts no allowed escape.
pub(super) fn invalid_escape(
    c: &Cursor<'_>,
    context: &'static str,
    allowed: &'static str,
) -> (usize, ParseErrorKind) {
    let (pos, sequence) = match c
        .line
        .get(c.pos + 1..)
        .and_then(|rest| lossy(rest).chars().next())
    {
        Some(next) => (c.pos + 1, format!("\\{next}")),
        None => (c.pos, "\\\n".to_owned()),
    };
    (
        pos,
        ParseErrorKind::InvalidEscape {
            sequence,
            context,
            allowed,
        },
    )
}

/// Reads a HELP text to the end of the line, decoding `\\` and `\n`.
pub(super) fn read_help(c: &mut Cursor<'_>, metric: &str) -> Step<String> {
    let start = c.pos;
    let mut out = Vec::with_capacity(c.line.len() - c.pos);
    while let Some(b) = c.peek() {
        if b == b'\\' {
            match c.line.get(c.pos + 1) {
                Some(b'\\') => out.push(b'\\'),
                Some(b'n') => out.push(b'\n'),
                _ => return Err(invalid_escape(c, "a HELP text", "\\\\ and \\n")),
            }
            c.pos += 2;
        } else {
            out.push(b);
            c.pos += 1;
        }
    }
    String::from_utf8(out).map_err(|_| {
        (
            start,
            ParseErrorKind::HelpNotUtf8 {
                metric: metric.into(),
            },
        )
    })
}

/// The error for anything after a value: a malformed timestamp, text after
/// it, or (when it is well formed) the timestamp itself.
pub(super) fn timestamp_error(c: &mut Cursor<'_>) -> (usize, ParseErrorKind) {
    c.skip_blanks();
    let start = c.pos;
    let token = c.take_until_blank();
    if token.is_empty() {
        return (start, ParseErrorKind::TrailingBlank);
    }
    if token.starts_with(b"#") {
        return (
            start,
            ParseErrorKind::Exemplar {
                token: lossy(&c.line[start..]),
            },
        );
    }
    if !is_int64(token) {
        return (
            start,
            ParseErrorKind::InvalidTimestamp {
                token: lossy(token),
            },
        );
    }
    let rest = without_backslashes(&c.line[c.pos..]);
    if !rest.is_empty() {
        return (
            c.pos,
            ParseErrorKind::SpuriousAfterTimestamp { token: rest },
        );
    }
    (
        start,
        ParseErrorKind::Timestamp {
            token: lossy(token),
        },
    )
}
