//! Reads text format 0.0.4 into [`Family`]s with exactly the acceptance of
//! the Go `expfmt` text parser in node_exporter 1.5.0 and the Pushgateway
//! 1.5.1, plus refusals for the inputs that parser accepts but then drops,
//! rewrites or crashes on (ignored summary and histogram lines, duplicate
//! buckets, wrapped counts, timestamps, `gauge_histogram`, non-UTF-8 HELP).
//!
//! Pure: it reads a byte slice (or, in [`parse_injected_while_reading`],
//! the bytes a caller's `fill` hands it) and allocates only the model it
//! returns. Errors carry the line, the column and the offending text.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

mod cursor;
mod error;

pub use error::{ParseError, ParseErrorKind};

use self::cursor::{
    Cursor, find_quote_or_backslash, lossy, read_help, read_label_value, timestamp_error,
    without_backslashes,
};
use super::float;
use super::parallel::{self, Queue};
use super::{
    Distribution, Family, Injection, MetricType, Pair, Value, cmp_names, same_bytes, same_text,
};

/// Parses a whole exposition. Families come back in canonical order: sorted
/// by name, series sorted by labels, buckets and quantiles by bound.
///
/// A large input is read in parts on two threads, each part starting where
/// a family begins (`parse_parts`).
pub fn parse(input: &[u8]) -> Result<Vec<Family>, ParseError> {
    parse_with(input, &NO_INJECTION).0
}

/// [`parse`], then [`Family::set_labels`] on every family, in one reading:
/// the labels are merged into each series as its line is read.
///
/// When a line has a label the injection replaces, or a default's label
/// already set to the default, two series of the input could become one,
/// and the parser would merge their lines into one summary or histogram
/// series where a later check has to see two. The input is then parsed
/// again, and the labels merged afterwards.
pub fn parse_injected(input: &[u8], injection: &Arc<Injection>) -> Result<Vec<Family>, ParseError> {
    injected(input, injection, parse_with(input, injection))
}

/// [`parse_injected`] of the input that `fill` reads into `buf`, a piece at
/// a time, until it returns 0. Each part of a large input is parsed as soon
/// as it has been read, on a second thread, while the reading goes on: the
/// writer of a pipe, like a `cat` on the other end, takes a core of its own
/// anyway, and the parser then uses the time the reader waits for it.
///
/// Returns what [`parse_injected`] returns, or `None` when the input filled
/// `buf` before it ended: `buf` then holds the start of the input, which
/// the caller reads to its end and parses.
pub fn parse_injected_while_reading<E>(
    buf: &mut [u8],
    fill: impl FnMut(&mut [u8]) -> Result<usize, E>,
    injection: &Arc<Injection>,
) -> Result<Option<Result<Vec<Family>, ParseError>>, E> {
    let Some((len, parsed)) = read_in_parts(buf, fill, injection)? else {
        return Ok(None);
    };
    let input = &buf[..len];
    let parsed = parsed.unwrap_or_else(|| parse_whole(input, injection));
    Ok(Some(injected(input, injection, parsed)))
}

/// What [`parse_injected`] returns, given what [`parse_with`] returned.
fn injected(
    input: &[u8],
    injection: &Arc<Injection>,
    (result, lossy): (Result<Vec<Family>, ParseError>, bool),
) -> Result<Vec<Family>, ParseError> {
    if lossy {
        let mut families = parse(input)?;
        parallel::for_each_family(&mut families, |family| family.set_labels(injection));
        return Ok(families);
    }
    let mut families = result?;
    for family in &mut families {
        family.carry(injection);
    }
    Ok(families)
}

static NO_INJECTION: Injection = Injection::NONE;

/// Parses `input` with `injection` merged into every series; also returns
/// whether a merge may have lost information ([`parse_injected`]).
fn parse_with(input: &[u8], injection: &Injection) -> (Result<Vec<Family>, ParseError>, bool) {
    let starts = part_starts(input);
    if !starts.is_empty()
        && let Some(parsed) = parse_parts(input, &starts, injection)
    {
        return parsed;
    }
    parse_whole(input, injection)
}

/// [`parse_with`] by one parser, on this thread.
fn parse_whole(input: &[u8], injection: &Injection) -> (Result<Vec<Family>, ParseError>, bool) {
    let mut parser = Parser::new(injection);
    let result = parser.read(input);
    let lossy = parser.lossy;
    (result.and_then(|_| parser.canonical().finish()), lossy)
}

/// Inputs at least this large are parsed in parts.
const PARTS_FROM: usize = 1 << 20;

/// About how large a part is: small enough that when one thread is slowed
/// (on a busy virtual machine the other core may be away for milliseconds),
/// the other one takes over more of the parts, and the two finish close
/// together.
const PART_SIZE: usize = 512 << 10;

/// Where the parts of a large input after the first start (see [`Cut`]).
/// Empty for small inputs, and where no family begins.
fn part_starts(input: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    if input.len() < PARTS_FROM {
        return starts;
    }
    let mut start = 0;
    let mut cut = Cut::default();
    while let Some(at) = cut.find(&input[start..]) {
        start += at;
        starts.push(start);
        cut = Cut::default();
    }
    starts
}

/// Looks for where the next part of an input begins: the first line past
/// [`PART_SIZE`] bytes of the current part that opens a block of `# HELP`
/// or `# TYPE` lines after a sample, which is where a family begins in any
/// exposition that keeps each family together. A part without one goes on
/// to the end of the input.
///
/// Only whole lines count, and each is looked at once however often the
/// part grows: it may still be arriving.
#[derive(Default)]
struct Cut {
    /// Where the next line to look at starts, once past [`PART_SIZE`].
    next: usize,
    previous_sample: bool,
}

impl Cut {
    /// Where the next part begins in `part`, the current part as far as it
    /// has been read.
    fn find(&mut self, part: &[u8]) -> Option<usize> {
        if self.next == 0 {
            // The line that starts after this offset is the first that may
            // begin a part; what the line before it holds is not looked at.
            self.next = PART_SIZE + find_newline(part.get(PART_SIZE..)?)? + 1;
        }
        while let Some(len) = find_newline(&part[self.next..]) {
            let line = &part[self.next..self.next + len];
            if self.previous_sample
                && (line.starts_with(b"# HELP ") || line.starts_with(b"# TYPE "))
            {
                return Some(self.next);
            }
            self.previous_sample = !line.starts_with(b"#") && !line.is_empty();
            self.next += len + 1;
        }
        None
    }
}

/// Parses the parts of `input` that begin at 0 and at each of `starts`, on
/// two threads, each taking the next part not yet taken; see
/// [`merge_parts`] for the result.
fn parse_parts(
    input: &[u8],
    starts: &[usize],
    injection: &Injection,
) -> Option<(Result<Vec<Family>, ParseError>, bool)> {
    let ends = starts.iter().copied().chain(std::iter::once(input.len()));
    let parts = std::iter::once(0).chain(starts.iter().copied()).zip(ends);
    let queue = Queue::new(parts.map(|(start, end)| (start, &input[start..end])));
    queue.close();
    let work = || read_parts(&queue, injection);
    let (mut parts, more) = parallel::both(true, work, work);
    parts.extend(more);
    merge_parts(parts)
}

/// A part of an input: where it starts in the input, and its bytes.
type Part<'a> = (usize, &'a [u8]);

/// What became of a part: where it starts, and its parser with the number
/// of lines it read, or `None` when the part has an error.
type ReadPart<'a> = (usize, Option<(Parser<'a>, u32)>);

/// Reads the parts `queue` hands out until it is empty and closed.
fn read_parts<'a>(queue: &Queue<Part<'a>>, injection: &'a Injection) -> Vec<ReadPart<'a>> {
    let mut done = Vec::new();
    while let Some((start, part)) = queue.take() {
        let mut parser = Parser::new(injection);
        let read = parser.read(part);
        done.push((start, read.ok().map(|lines| (parser.canonical(), lines))));
    }
    done
}

/// The reading and parsing of [`parse_injected_while_reading`]: the length
/// of the input, with what [`parse_with`] returns when its parts made that
/// certain ([`merge_parts`]); `None` when `buf` filled up first.
type ReadInParts = Option<(usize, Option<(Result<Vec<Family>, ParseError>, bool)>)>;

/// See [`parse_injected_while_reading`]: reads the input into `buf`, and
/// parses each part from where it begins (see [`Cut`]) as soon as it has
/// been read. A helper thread starts at the first part that ends before
/// the input does, so a small input is read and then parsed on this thread.
fn read_in_parts<E>(
    buf: &mut [u8],
    mut fill: impl FnMut(&mut [u8]) -> Result<usize, E>,
    injection: &Injection,
) -> Result<ReadInParts, E> {
    let queue = Queue::new(None);
    std::thread::scope(|scope| {
        // `Some` once a part has been queued; inside it, the helper thread,
        // unless none could be started (this thread then reads every part).
        let mut helper = None;
        // The part being read: from `start` in `buf`, `filled` bytes so far.
        let mut part: &mut [u8] = buf;
        let (mut start, mut filled) = (0, 0);
        let mut cut = Cut::default();
        let read = loop {
            if filled == part.len() {
                break Ok(None);
            }
            match fill(&mut part[filled..]) {
                Ok(0) => break Ok(Some(start + filled)),
                Ok(n) => filled += n,
                Err(e) => break Err(e),
            }
            while let Some(at) = cut.find(&part[..filled]) {
                let (done, rest) = std::mem::take(&mut part).split_at_mut(at);
                queue.push((start, &*done));
                helper.get_or_insert_with(|| {
                    let work = || read_parts(&queue, injection);
                    std::thread::Builder::new().spawn_scoped(scope, work).ok()
                });
                (part, start, filled, cut) = (rest, start + at, filled - at, Cut::default());
            }
        };
        let Ok(Some(len)) = read else {
            queue.abandon();
            return read.map(|_| None);
        };
        let Some(started) = helper else {
            // No part ended before the input did.
            return Ok(Some((len, Some(parse_whole(&part[..filled], injection)))));
        };
        let part: &[u8] = part;
        queue.push((start, &part[..filled]));
        queue.close();
        let mut parts = read_parts(&queue, injection);
        if let Some(helper) = started {
            let more = helper
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            parts.extend(more);
        }
        Ok(Some((len, merge_parts(parts))))
    })
}

/// The result of one parser reading the parts of an input, each read on
/// its own, in order: what [`parse_with`] returns. `None` when that is not
/// certain: when a part has an error (the caller then parses the whole
/// input again, for the first error in line order), or when a name read in
/// a part is one an earlier part defined, or a `_sum`, `_count` or
/// `_bucket` of one, so that one parser would have read it differently.
fn merge_parts(mut parts: Vec<ReadPart<'_>>) -> Option<(Result<Vec<Family>, ParseError>, bool)> {
    parts.sort_unstable_by_key(|&(start, _)| start);
    let mut parts = parts.into_iter().map(|(_, part)| part);
    let (mut whole, mut lines) = parts.next()??;
    for part in parts {
        let (part, part_lines) = part?;
        if part
            .by_name
            .keys()
            .chain(part.aliases.keys())
            .any(|&name| whole.claims(name))
        {
            return None;
        }
        whole.append(part, lines);
        lines += part_lines;
    }
    let lossy = whole.lossy;
    Some((whole.finish(), lossy))
}

/// What a sample line's name means for the family it resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Plain,
    Count,
    Sum,
}

#[derive(Default)]
struct FamilyState {
    family: Option<Family>,
    help_line: bool,
    type_line: bool,
    type_set: bool,
    /// For summaries and histograms: canonical label text → series index.
    distributions: HashMap<Box<str>, usize>,
}

impl FamilyState {
    fn family(&mut self) -> &mut Family {
        self.family
            .as_mut()
            .expect("family state always holds a family")
    }
}

struct Parser<'a> {
    /// Merged into every series' labels.
    injection: &'a Injection,
    /// Whether a merge may have lost information: see [`parse_injected`].
    lossy: bool,
    /// The last sample names resolved, the latest at `recent[latest]`: the
    /// next line usually repeats one (a gauge's name, or the `_bucket`,
    /// `_sum` and `_count` of a histogram in turn). A name resolves to the
    /// same family and role for good once it has resolved.
    recent: [(&'a str, usize, Role); RECENT],
    latest: usize,
    states: Vec<FamilyState>,
    by_name: HashMap<&'a str, usize>,
    /// `_sum`, `_count` and `_bucket` names resolved to their summary or
    /// histogram. Their family's type is set for good by then.
    aliases: HashMap<&'a str, (usize, Role)>,
    labels: Vec<Pair<'a>>,
    /// The label names of the last line with labels, in the order read
    /// (the first [`LABEL_HINTS`]): the names the next line most likely
    /// has in the same places.
    label_hints: [&'a str; LABEL_HINTS],
    /// How many of `label_hints` that line had: those are distinct names,
    /// as that line was read without error.
    hint_count: usize,
    /// Tests compare reading every line the general way.
    #[cfg(test)]
    general_only: bool,
    text: String,
}

/// How many label names of a line [`Parser::label_hints`] keeps.
const LABEL_HINTS: usize = 8;

/// How many sample names a parser remembers ([`Parser::recent`]).
const RECENT: usize = 4;

/// The most points a new summary or histogram series is given room for
/// before its first: more than histograms usually have, and little memory
/// however many series follow one with thousands of buckets.
const POINTS_ROOM: usize = 64;

type Step<T = ()> = Result<T, (usize, ParseErrorKind)>;

/// The offset of the first `\n` in `haystack`.
///
/// On x86-64 this is memchr's SSE2 search, which every x86-64 CPU has.
/// memchr's default search first asks the CPU which vector units it has,
/// with a dozen CPUID instructions. In a virtual machine each one traps to
/// the hypervisor; together they took 0.1–0.2 ms of a 10-series
/// `promdrop push` on the benchmark machine. Lines are short, so wider
/// vectors would gain nothing here.
fn find_newline(haystack: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(sse2) = memchr::arch::x86_64::sse2::memchr::One::new(b'\n') {
        return sse2.find(haystack);
    }
    memchr::memchr(b'\n', haystack)
}

impl<'a> Parser<'a> {
    fn new(injection: &'a Injection) -> Self {
        Self {
            injection,
            lossy: false,
            recent: [("", 0, Role::Plain); RECENT],
            latest: 0,
            states: Vec::new(),
            by_name: HashMap::new(),
            aliases: HashMap::new(),
            labels: Vec::new(),
            label_hints: [""; LABEL_HINTS],
            hint_count: 0,
            #[cfg(test)]
            general_only: false,
            text: String::new(),
        }
    }

    /// Reads every line of `input`; returns the number of lines. Stops at
    /// the first lossy merge: what it read is then parsed again without the
    /// injection ([`parse_injected`]).
    fn read(&mut self, input: &'a [u8]) -> Result<u32, ParseError> {
        // One check of the whole input instead of one per name and value;
        // past the first invalid byte, the cursor checks each value itself.
        let valid = match std::str::from_utf8(input) {
            Ok(text) => text,
            Err(e) => std::str::from_utf8(&input[..e.valid_up_to()]).unwrap_or_default(),
        };
        let mut start = 0;
        let mut line_no: u32 = 0;
        while start < input.len() && !self.lossy {
            line_no += 1;
            let (end, terminated) = match find_newline(&input[start..]) {
                Some(i) => (start + i, true),
                None => (input.len(), false),
            };
            let line = &input[start..end];
            let text = valid.get(start..end.min(valid.len())).unwrap_or_default();
            if !terminated && line.iter().all(|&b| b == b' ' || b == b'\t') {
                break;
            }
            #[cfg(test)]
            let terminated_text = terminated && text.len() == line.len() && !self.general_only;
            #[cfg(not(test))]
            let terminated_text = terminated && text.len() == line.len();
            let common = terminated_text
                .then(|| self.common_sample(text, line_no))
                .flatten();
            let result = if let Some(result) = common {
                result
            } else if line_no == 1 && line.starts_with(b"\xEF\xBB\xBF") {
                Err((0, ParseErrorKind::ByteOrderMark))
            } else {
                self.line(Cursor { line, text, pos: 0 }, line_no)
            };
            let result = match result {
                Ok(()) if !terminated => Err((line.len(), ParseErrorKind::UnexpectedEof)),
                Err((pos, _)) if !terminated && pos >= line.len() => {
                    Err((pos, ParseErrorKind::UnexpectedEof))
                }
                other => other,
            };
            if let Err((pos, kind)) = result {
                return Err(error_at(line, line_no, pos, kind));
            }
            start = end + 1;
        }
        Ok(line_no)
    }

    /// Sorts every family's series, and their buckets and quantiles: the
    /// order [`parse`] returns. Each part's parser does it for its own, and
    /// frees what only reading needed there, on its own thread.
    fn canonical(mut self) -> Self {
        for state in &mut self.states {
            state.distributions = HashMap::new();
            if let Some(family) = &mut state.family {
                family.canonicalize();
            }
        }
        self
    }

    /// Whether reading `name` after this parser's input would touch one of
    /// its families.
    fn claims(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
            || self.aliases.contains_key(name)
            || ["_count", "_sum", "_bucket"]
                .iter()
                .filter_map(|suffix| name.strip_suffix(suffix))
                .any(|base| self.by_name.contains_key(base))
    }

    /// Takes over the families of `later`, a parser of the input that
    /// follows this one's, whose first line is this one's line `lines + 1`.
    fn append(&mut self, later: Self, lines: u32) {
        let offset = self.states.len();
        for (name, index) in later.by_name {
            self.by_name.insert(name, index + offset);
        }
        for (name, (index, role)) in later.aliases {
            self.aliases.insert(name, (index + offset, role));
        }
        for mut state in later.states {
            if let Some(family) = &mut state.family {
                family.line += lines;
                for series in &mut family.series {
                    series.line += lines;
                }
            }
            self.states.push(state);
        }
        self.lossy |= later.lossy;
    }

    fn line(&mut self, mut c: Cursor<'a>, line_no: u32) -> Step {
        c.skip_blanks();
        match c.peek() {
            None => Ok(()),
            Some(b'#') => {
                c.pos += 1;
                self.comment(&mut c, line_no)
            }
            Some(_) => self.sample(&mut c, line_no),
        }
    }

    fn comment(&mut self, c: &mut Cursor<'a>, line_no: u32) -> Step {
        c.skip_blanks();
        let keyword = match c.take_until_blank() {
            b"HELP" => "HELP",
            b"TYPE" => "TYPE",
            _ => return Ok(()),
        };
        if c.at_end() {
            return Ok(());
        }
        c.skip_blanks();
        let name = c.take_metric_name("");
        if c.at_end() {
            return Ok(());
        }
        if !matches!(c.peek(), Some(b' ' | b'\t')) {
            return Err((
                c.pos,
                ParseErrorKind::InvalidMetricNameInComment {
                    keyword,
                    found: c.found(),
                },
            ));
        }
        let (index, _) = self.resolve(name, line_no);
        c.skip_blanks();
        if c.at_end() {
            return Ok(());
        }
        let state = &mut self.states[index];
        let metric = state.family().name().to_owned();
        if keyword == "HELP" {
            if state.help_line {
                return Err((c.pos, ParseErrorKind::SecondHelp { metric }));
            }
            let help = read_help(c, &metric)?;
            state.help_line = true;
            state.family().set_help(Some(help));
        } else {
            if state.type_set {
                return Err((c.pos, ParseErrorKind::SecondType { metric }));
            }
            let token = without_backslashes(&c.line[c.pos..]);
            let kind = match token.to_ascii_uppercase().as_str() {
                "COUNTER" => MetricType::Counter,
                "GAUGE" => MetricType::Gauge,
                "SUMMARY" => MetricType::Summary,
                "UNTYPED" => MetricType::Untyped,
                "HISTOGRAM" => MetricType::Histogram,
                "GAUGE_HISTOGRAM" => return Err((c.pos, ParseErrorKind::GaugeHistogram)),
                _ => return Err((c.pos, ParseErrorKind::UnknownType { token })),
            };
            state.type_line = true;
            state.type_set = true;
            state.family().kind = kind;
        }
        Ok(())
    }

    /// Go's `setOrCreateCurrentMF`: an exact family, else the summary or
    /// histogram this `_sum`/`_count`/`_bucket` belongs to, else a new one.
    fn resolve(&mut self, name: &'a str, line_no: u32) -> (usize, Role) {
        if let Some(&index) = self.by_name.get(name) {
            return (index, Role::Plain);
        }
        if let Some(&resolved) = self.aliases.get(name) {
            return resolved;
        }
        let parent = |suffix: &str| name.strip_suffix(suffix).filter(|base| !base.is_empty());
        let suffixes = [
            ("_count", Role::Count, true),
            ("_sum", Role::Sum, true),
            ("_bucket", Role::Plain, false),
        ];
        for wanted in [MetricType::Summary, MetricType::Histogram] {
            for (suffix, role, in_summary) in suffixes {
                if wanted == MetricType::Summary && !in_summary {
                    continue;
                }
                let Some(base) = parent(suffix) else { continue };
                if let Some(&index) = self.by_name.get(base) {
                    let state = &self.states[index];
                    if state.family.as_ref().is_some_and(|f| f.kind() == wanted) {
                        self.aliases.insert(name, (index, role));
                        return (index, role);
                    }
                }
            }
        }
        let mut family = Family::new(name, MetricType::Untyped);
        family.line = line_no;
        if let Some(last) = self.states.last().and_then(|s| s.family.as_ref()) {
            family.reserve_like(last);
        }
        self.states.push(FamilyState {
            family: Some(family),
            ..FamilyState::default()
        });
        self.by_name.insert(name, self.states.len() - 1);
        (self.states.len() - 1, Role::Plain)
    }

    /// The [`Parser::recent`] names with what they resolved to, the latest
    /// first.
    fn recent(&self) -> impl Iterator<Item = (&'a str, usize, Role)> + '_ {
        (0..RECENT).map(|back| self.recent[(self.latest + RECENT - back) % RECENT])
    }

    /// [`Parser::sample`] of a line of the shape nearly every line has, read
    /// without the general machinery: one of the [`Parser::recent`] sample
    /// names, then the label names of the last line with labels, in their
    /// order (or the first of them), each as `name="value"` with no blank
    /// and no escape, then one blank and the value, which ends the line.
    /// `None`, with nothing changed, for any other line: [`Parser::sample`]
    /// then reads it, and finds its errors.
    ///
    /// `line` is all UTF-8, and ends where its newline was.
    fn common_sample(&mut self, line: &'a str, line_no: u32) -> Option<Step> {
        let bytes = line.as_bytes();
        // The name that ends where the labels or the value begin; a
        // histogram's lines cycle through three.
        let (name, index, role) = self.recent().find(|&(name, ..)| {
            !name.is_empty()
                && bytes
                    .get(..name.len())
                    .is_some_and(|head| same_bytes(head, name.as_bytes()))
                && matches!(bytes.get(name.len()), Some(b'{' | b' '))
        })?;
        let mut pos = name.len();
        let kind = self.states[index].family.as_ref()?.kind();
        self.labels.clear();
        let mut bound = None;
        if bytes.get(pos) == Some(&b'{') {
            pos += 1;
            let mut read = 0;
            while bytes.get(pos) != Some(&b'}') {
                let label = *self.label_hints[..self.hint_count].get(read)?;
                let start = pos;
                pos += label.len();
                let named = bytes
                    .get(start..pos)
                    .is_some_and(|head| same_bytes(head, label.as_bytes()));
                if !named || bytes.get(pos..pos + 2) != Some(b"=\"") {
                    return None;
                }
                pos += 2;
                let len = find_quote_or_backslash(&bytes[pos..])?;
                if bytes[pos + len] != b'"' {
                    return None;
                }
                let raw = &line[pos..pos + len];
                pos += len + 1;
                debug_assert_ne!(label, "__name__", "refused where the hint was read");
                if matches!(
                    (kind, label),
                    (MetricType::Summary, "quantile") | (MetricType::Histogram, "le")
                ) {
                    bound = Some((read_bound(raw, kind, pos).ok()?, raw));
                } else {
                    let text = Some(&line[start..pos]);
                    self.labels.push(Pair {
                        name: label,
                        raw,
                        text,
                    });
                }
                read += 1;
                match bytes.get(pos) {
                    Some(b',') => pos += 1,
                    Some(b'}') => {}
                    _ => return None,
                }
            }
            pos += 1;
        }
        if bytes.get(pos) != Some(&b' ') {
            return None;
        }
        // A number has no blank in it: a timestamp, or a blank after the
        // value, is left to `sample`.
        let token = &bytes[pos + 1..];
        let value = float::parse(token)?;
        self.states[index].type_set = true;
        Some(self.add_sample(index, role, name, value, bound, token, 0, line_no))
    }

    fn sample(&mut self, c: &mut Cursor<'a>, line_no: u32) -> Step {
        let name_pos = c.pos;
        let name = c.take_metric_name(self.recent[self.latest].0);
        if name.is_empty() {
            return Err((
                c.pos,
                ParseErrorKind::InvalidMetricName { found: c.found() },
            ));
        }
        // Never "", which no sample name is.
        let seen = self.recent().find(|&(seen, ..)| same_text(seen, name));
        let (index, role) = if let Some((_, index, role)) = seen {
            (index, role)
        } else {
            let (index, role) = self.resolve(name, line_no);
            self.latest = (self.latest + 1) % RECENT;
            self.recent[self.latest] = (name, index, role);
            (index, role)
        };
        let state = &mut self.states[index];
        state.type_set = true;
        let family = state
            .family
            .as_ref()
            .expect("family state always holds a family");
        let kind = family.kind();
        // The family is named `name` or, for a `_sum`, `_count` or
        // `_bucket` line, a prefix of it: borrow it from the line.
        let metric = &name[..family.name().len()];
        debug_assert_eq!(metric, family.name());
        c.skip_blanks();
        self.labels.clear();
        let mut bound = None;
        if c.peek() == Some(b'{') {
            c.pos += 1;
            bound = self.read_labels(c, kind, metric)?;
            c.skip_blanks();
        }
        let value_pos = c.pos;
        let token = c.take_until_blank();
        let value = float::parse(token).ok_or_else(|| {
            (
                value_pos,
                ParseErrorKind::InvalidValue {
                    token: lossy(token),
                },
            )
        })?;
        if !c.at_end() {
            return Err(timestamp_error(c));
        }
        self.add_sample(index, role, name, value, bound, token, name_pos, line_no)
    }

    /// The end of [`Parser::sample`] and [`Parser::common_sample`]: adds the
    /// sample of a line read whole, with its labels in `self.labels`, to its
    /// family (`index`) as `role`.
    #[allow(clippy::too_many_arguments)]
    fn add_sample(
        &mut self,
        index: usize,
        role: Role,
        name: &str,
        value: f64,
        bound: Option<(f64, &str)>,
        token: &[u8],
        name_pos: usize,
        line_no: u32,
    ) -> Step {
        self.canonical_text();
        let state = &mut self.states[index];
        let kind = state.family().kind();
        let metric = &name[..state.family().name().len()];
        if self.labels.iter().any(|pair| pair.name.starts_with("__")) {
            // Read, but refused later by validate: it must look at them.
            state.family().label_names_ok = false;
        }
        if !kind.is_distribution() {
            let text = std::mem::take(&mut self.text);
            state
                .family()
                .push_canonical(&text, Value::Single(value), line_no);
            self.text = text;
            return Ok(());
        }
        // A series' lines are usually together: try the last one before
        // hashing.
        let last = state.family().len().checked_sub(1);
        let series = if let Some(series) =
            last.filter(|&last| same_text(state.family().labels_at(last), &self.text))
        {
            series
        } else if let Some(&series) = state.distributions.get(self.text.as_str()) {
            series
        } else {
            // The series of a family mostly have the same bounds: room for
            // as many points as the last one's (up to a bound, whatever that
            // one held) spares growing them one by one.
            let room = last.map_or(0, |last| match state.family().value_mut(last) {
                Value::Distribution(d) => d.points.len().min(POINTS_ROOM),
                Value::Single(_) => 0,
            });
            let distribution = Distribution {
                points: Vec::with_capacity(room),
                ..Distribution::default()
            };
            let series = state.family().push_canonical(
                &self.text,
                Value::Distribution(Box::new(distribution)),
                line_no,
            );
            state
                .distributions
                .insert(self.text.as_str().into(), series);
            series
        };
        let Value::Distribution(d) = state.family().value_mut(series) else {
            unreachable!("summary and histogram series always hold a distribution");
        };
        record(d, kind, role, name, metric, value, bound, token).map_err(|kind| (name_pos, kind))
    }

    /// Reads `{...}` up to and including the closing brace; returns the
    /// `quantile` (summary) or `le` (histogram) value, which is not a label.
    fn read_labels(
        &mut self,
        c: &mut Cursor<'a>,
        kind: MetricType,
        metric: &str,
    ) -> Step<Option<(f64, &'a str)>> {
        let mut bound = None;
        let mut place = 0;
        loop {
            c.skip_blanks();
            if c.peek() == Some(b'}') {
                c.pos += 1;
                self.hint_count = place.min(LABEL_HINTS);
                return Ok(bound);
            }
            let name_pos = c.pos;
            let likely = self.label_hints.get(place).copied().unwrap_or("");
            let label = c.take_label_name(likely);
            if let Some(hint) = self.label_hints.get_mut(place) {
                *hint = label;
            }
            place += 1;
            if label.is_empty() {
                let found = c.found();
                return Err((
                    c.pos,
                    ParseErrorKind::InvalidLabelName {
                        metric: metric.into(),
                        found,
                    },
                ));
            }
            let snug = matches!(c.peek(), Some(b'='));
            c.skip_blanks();
            if c.peek() != Some(b'=') {
                let found = c.found();
                return Err((
                    c.pos,
                    ParseErrorKind::ExpectedEquals {
                        label: label.into(),
                        found,
                    },
                ));
            }
            c.pos += 1;
            if label == "__name__" {
                return Err((name_pos, ParseErrorKind::ReservedLabelName));
            }
            let special = matches!(
                (kind, label),
                (MetricType::Summary, "quantile") | (MetricType::Histogram, "le")
            );
            let duplicate = if special {
                bound.is_some()
            } else {
                self.labels.iter().any(|pair| pair.name == label)
            };
            if duplicate {
                let kind = ParseErrorKind::DuplicateLabelName {
                    metric: metric.into(),
                    label: label.into(),
                };
                return Err((name_pos, kind));
            }
            let snug = snug && matches!(c.peek(), Some(b'"'));
            c.skip_blanks();
            if c.peek() != Some(b'"') {
                let found = c.found();
                return Err((
                    c.pos,
                    ParseErrorKind::ExpectedQuote {
                        label: label.into(),
                        found,
                    },
                ));
            }
            c.pos += 1;
            let raw = read_label_value(c)?;
            if special {
                bound = Some((read_bound(raw, kind, c.pos)?, raw));
            } else {
                // Written as canonical text writes it, the label is copied
                // whole.
                let text = snug.then(|| c.str_at(name_pos, c.pos)).flatten();
                self.labels.push(Pair {
                    name: label,
                    raw,
                    text,
                });
            }
            c.skip_blanks();
            match c.peek() {
                Some(b',') => c.pos += 1,
                Some(b'}') => {
                    c.pos += 1;
                    self.hint_count = place.min(LABEL_HINTS);
                    return Ok(bound);
                }
                _ => {
                    let kind = ParseErrorKind::UnexpectedEndOfLabelValue {
                        value: raw.into(),
                        found: c.found(),
                    };
                    return Err((c.pos, kind));
                }
            }
        }
    }

    /// Sorts the line's labels by name and writes their canonical text,
    /// with the injection merged in.
    fn canonical_text(&mut self) {
        if !self
            .labels
            .is_sorted_by(|a, b| cmp_names(a.name, b.name).is_le())
        {
            self.labels
                .sort_unstable_by(|a, b| cmp_names(a.name, b.name));
        }
        self.text.clear();
        self.lossy |= self
            .injection
            .merge(self.labels.iter().copied(), &mut self.text);
    }

    fn finish(self) -> Result<Vec<Family>, ParseError> {
        self.families().map_err(|(line, kind)| ParseError {
            line,
            column: 1,
            kind,
            crlf: false,
        })
    }

    fn families(self) -> Result<Vec<Family>, (u32, ParseErrorKind)> {
        let mut families = Vec::with_capacity(self.states.len());
        // Built at the first family without series, which most inputs lack.
        let mut populated: Option<HashSet<&str>> = None;
        for state in &self.states {
            let Some(family) = &state.family else {
                continue;
            };
            if !family.is_empty() {
                continue;
            }
            let populated = populated.get_or_insert_with(|| {
                self.states
                    .iter()
                    .filter_map(|s| s.family.as_ref())
                    .filter(|f| !f.is_empty())
                    .map(Family::name)
                    .collect()
            });
            let sibling = ["_total", "_bucket", "_count", "_sum", "_created", "_info"]
                .iter()
                .map(|suffix| format!("{}{suffix}", family.name()))
                .find(|candidate| populated.contains(candidate.as_str()));
            if let Some(sibling) = sibling {
                let keyword = if state.type_line { "TYPE" } else { "HELP" };
                let metric = family.name().to_owned();
                return Err((
                    family.line,
                    ParseErrorKind::OrphanDeclaration {
                        keyword,
                        metric,
                        sibling,
                    },
                ));
            }
        }
        for state in self.states {
            if let Some(family) = state.family.filter(|f| !f.is_empty()) {
                families.push(family);
            }
        }
        families.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(families)
    }
}

/// The number in `raw`, the value of a summary's `quantile` or a
/// histogram's `le` label that ends at `pos`.
fn read_bound(raw: &str, kind: MetricType, pos: usize) -> Step<f64> {
    let decoded = super::unescape_label_value(raw);
    float::parse(decoded.as_bytes()).ok_or_else(|| {
        let label = if kind == MetricType::Summary {
            "quantile"
        } else {
            "le"
        };
        let value = decoded.into_owned();
        (pos, ParseErrorKind::InvalidBound { label, value })
    })
}

/// Stores one summary or histogram line in its series.
#[allow(clippy::too_many_arguments)]
fn record(
    d: &mut Distribution,
    kind: MetricType,
    role: Role,
    name: &str,
    metric: &str,
    value: f64,
    bound: Option<(f64, &str)>,
    token: &[u8],
) -> Result<(), ParseErrorKind> {
    let check_count = |v: f64| {
        // 2^64: node_exporter converts counts to uint64.
        if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 18_446_744_073_709_551_616.0 {
            Ok(())
        } else {
            Err(ParseErrorKind::BadCount {
                name: name.into(),
                token: lossy(token),
            })
        }
    };
    match role {
        Role::Count => {
            check_count(value)?;
            if d.count.replace(value).is_some() {
                return Err(ParseErrorKind::DuplicateSumOrCount { name: name.into() });
            }
        }
        Role::Sum => {
            if d.sum.replace(value).is_some() {
                return Err(ParseErrorKind::DuplicateSumOrCount { name: name.into() });
            }
        }
        Role::Plain => {
            let label = if kind == MetricType::Summary {
                "quantile"
            } else {
                "le"
            };
            let Some((at, spelled)) = bound else {
                return Err(if kind == MetricType::Summary {
                    ParseErrorKind::SummaryWithoutQuantile {
                        metric: metric.into(),
                    }
                } else {
                    ParseErrorKind::HistogramWithoutLe {
                        name: name.into(),
                        metric: metric.into(),
                    }
                });
            };
            if at.is_nan() {
                return Err(ParseErrorKind::NanBound {
                    label,
                    metric: metric.into(),
                });
            }
            if d.points.iter().any(|(seen, _)| *seen == at) {
                return Err(ParseErrorKind::DuplicateBound {
                    label,
                    bound: super::unescape_label_value(spelled).into_owned(),
                    metric: metric.into(),
                });
            }
            if kind == MetricType::Histogram {
                check_count(value)?;
            }
            d.points.push((at, value));
        }
    }
    Ok(())
}

fn error_at(line: &[u8], line_no: u32, pos: usize, kind: ParseErrorKind) -> ParseError {
    let pos = pos.min(line.len());
    let column = String::from_utf8_lossy(&line[..pos]).chars().count() as u32 + 1;
    ParseError {
        line: line_no,
        column,
        kind,
        crlf: line.ends_with(b"\r"),
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    /// What one parser reading the whole input returns.
    fn whole(input: &[u8]) -> Result<Vec<Family>, ParseError> {
        let mut parser = Parser::new(&NO_INJECTION);
        parser.read(input)?;
        parser.canonical().finish()
    }

    /// Families of every type, about 2 MB: large enough to be read in four parts.
    fn large() -> String {
        let mut text = String::new();
        for f in 0..600 {
            let (kind, lines): (&str, &[&str]) = match f % 4 {
                0 => ("gauge", &[""]),
                1 => ("counter", &["_total"]),
                // No `_sum`: a late one must still find its summary.
                2 => ("summary", &["{quantile=\"0.5\"}", "_count"]),
                _ => (
                    "histogram",
                    &[
                        "_bucket{le=\"1\"}",
                        "_bucket{le=\"+Inf\"}",
                        "_sum",
                        "_count",
                    ],
                ),
            };
            let name = if kind == "counter" {
                format!("c{f}_total")
            } else {
                format!("m{f}")
            };
            let base = name.trim_end_matches("_total");
            writeln!(text, "# HELP {name} Family {f}.\n# TYPE {name} {kind}").unwrap();
            for host in 0..40 {
                for line in lines {
                    let (suffix, extra) = match line.split_once('{') {
                        Some((suffix, labels)) => {
                            (suffix, format!(",{}", labels.trim_end_matches('}')))
                        }
                        None => (*line, String::new()),
                    };
                    writeln!(
                        text,
                        "{base}{suffix}{{host=\"db{host}.example.com\"{extra}}} {host}"
                    )
                    .unwrap();
                }
            }
        }
        text
    }

    fn lines(families: &[Family]) -> Vec<(String, u32, Vec<u32>)> {
        families
            .iter()
            .map(|f| {
                (
                    f.name().to_owned(),
                    f.line(),
                    f.series().map(|s| s.line).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn a_large_input_read_in_parts_is_read_as_a_whole() {
        let input = large();
        let starts = part_starts(input.as_bytes());
        assert!(starts.len() >= 2, "three parts or more: {starts:?}");
        assert!(starts.iter().all(|&at| input[at..].starts_with("# HELP ")));
        let (parts, _) =
            parse_parts(input.as_bytes(), &starts, &NO_INJECTION).expect("no name is shared");
        let parts = parts.unwrap();
        let whole = whole(input.as_bytes()).unwrap();
        assert_eq!(parts, whole);
        assert_eq!(
            lines(&parts),
            lines(&whole),
            "lines count from the start of the input"
        );
        assert_eq!(parse(input.as_bytes()).unwrap(), whole);
    }

    #[test]
    fn a_name_of_an_earlier_part_read_again_in_a_later_one_is_read_as_a_whole() {
        // Go's parser adds a family's samples to it wherever they come, and a
        // summary's `_count` belongs to it; a reader of a later part alone
        // would see new families of those names. Families 300 and 302 are
        // read in the middle one of three parts.
        for late in [
            "m0{host=\"late\"} 1\n",
            "m2_count{host=\"late\"} 1\n",
            "m2_sum{host=\"db0.example.com\"} 1\n",
            "m300{host=\"late\"} 1\n",
            "m302_count{host=\"late\"} 1\n",
        ] {
            let input = format!("{}{late}", large());
            let starts = part_starts(input.as_bytes());
            assert!(starts.len() >= 2);
            assert!(
                parse_parts(input.as_bytes(), &starts, &NO_INJECTION).is_none(),
                "{late}"
            );
            assert_eq!(parse(input.as_bytes()), whole(input.as_bytes()), "{late}");
        }
    }

    #[test]
    fn an_error_in_any_part_is_the_first_error_of_the_whole() {
        let input = large();
        let total = input.lines().count();
        for bad_line in [3, total / 2 + 5, total - 1] {
            let text: String = input
                .lines()
                .enumerate()
                .map(|(i, line)| {
                    if i + 1 == bad_line {
                        "m0{host=\"x\" 1\n".to_owned()
                    } else {
                        format!("{line}\n")
                    }
                })
                .collect();
            let err = parse(text.as_bytes()).unwrap_err();
            assert_eq!(err.line as usize, bad_line);
            assert_eq!(Err(err), whole(text.as_bytes()));
        }
    }

    /// What [`whole`] returns, with `injection`, when every line is read
    /// the general way; and whether a merge may have lost information.
    fn generally(input: &[u8], injection: &Injection) -> (Result<Vec<Family>, ParseError>, bool) {
        let mut parser = Parser::new(injection);
        parser.general_only = true;
        let read = parser.read(input);
        let lossy = parser.lossy;
        (read.and_then(|_| parser.canonical().finish()), lossy)
    }

    /// [`whole`] and [`generally`] agree on `input`, with and without an
    /// injection: on every family and line number, or on the error.
    fn assert_read_alike(input: &[u8]) {
        let injection = Injection::new(&[("job", "j")], &[("instance", "")]);
        for injection in [&NO_INJECTION, &injection] {
            let (expected, expected_lossy) = generally(input, injection);
            let mut parser = Parser::new(injection);
            let read = parser.read(input);
            let lossy = parser.lossy;
            let got = read.and_then(|_| parser.canonical().finish());
            let text = String::from_utf8_lossy(input);
            assert_eq!(got, expected, "on\n{text}");
            assert_eq!(lossy, expected_lossy, "on\n{text}");
            assert_eq!(
                got.as_deref().map(lines),
                expected.as_deref().map(lines),
                "on\n{text}"
            );
        }
    }

    #[test]
    fn the_common_lines_are_read_as_the_general_way_reads_them() {
        // Each variant follows lines that make its name and label names
        // the likely ones: those of the common shape take the short way.
        let gauge = "m{a=\"1\",b=\"2\"} 1\nm{a=\"1\",b=\"3\"} 2\n";
        let histogram = "# TYPE h histogram\nh_bucket{a=\"1\",le=\"1\"} 1\n\
                         h_bucket{a=\"1\",le=\"+Inf\"} 1\nh_sum{a=\"1\"} 1\nh_count{a=\"1\"} 1\n";
        let gauge_variants = [
            "m{a=\"1\",b=\"4\"} 3",
            "m{a=\"1\",b=\"4\"} 3 123",
            "m{a=\"1\",b=\"4\"}  3",
            "m{a=\"1\",b=\"4\"}\t3",
            "m{a=\"1\",b=\"4\"}3",
            "m{a=\"1\",b=\"4\"} 3 ",
            "m{a=\"1\",b=\"4\"} 3\r",
            "m{a=\"1\",b=\"4\"} x",
            "m{a=\"1\",b=\"4\"} ",
            "m{a=\"1\",b=\"4\"}",
            "m{a=\"1\",b=\"4\",} 3",
            "m{a=\"1\",b=\"4\" } 3",
            "m{a=\"1\",b=\"4\",,} 3",
            "m{a=\"1\",a=\"4\"} 3",
            "m{a=\"1\",b=\"2\"} 3",
            "m{a=\"1\\\"x\",b=\"4\"} 3",
            "m{a=\"1\\x\",b=\"4\"} 3",
            "m{a=\"1\\,b=\"4\"} 3",
            "m{a=\"1\\}\",b=\"4\"} 3",
            "m{a=\"1\",b=\"4} 3",
            "m{a=\"1\",b=\"4\"",
            "m{a=\"1\"} 3",
            "m{a=\"1\",b=\"4\",c=\"5\"} 3",
            "m{b=\"4\",a=\"1\"} 3",
            "m{a =\"1\",b=\"4\"} 3",
            "m{a= \"1\",b=\"4\"} 3",
            "m{ab=\"1\",b=\"4\"} 3",
            "m {a=\"1\",b=\"4\"} 3",
            "m{} 3",
            "m 3",
            "mm{a=\"1\",b=\"4\"} 3",
            "m{a=\"1\",b=\"4\"} # {x=\"y\"} 1",
            "m{a=\"1\",__b=\"4\"} 3",
            "m{a=\"1\",b=\"\u{e9}\"} 3",
        ];
        let histogram_variants = [
            "h_bucket{a=\"2\",le=\"1\"} 1",
            "h_bucket{a=\"1\",le=\"1\"} 1",
            "h_bucket{a=\"1\",le=\"x\"} 1",
            "h_bucket{a=\"1\",le=\"2\",le=\"3\"} 1",
            "h_bucket{a=\"1\"} 1",
            "h_bucket{a=\"1\",le=\"2\"} 1.5",
            "h_sum{a=\"1\"} 2",
            "h_count{a=\"1\"} 2.5",
            "h{a=\"1\"} 2",
        ];
        for (before, variants) in [
            (gauge, &gauge_variants[..]),
            (histogram, &histogram_variants),
        ] {
            for variant in variants {
                for after in ["\n", "\nm 1\n", ""] {
                    assert_read_alike(format!("{before}{variant}{after}").as_bytes());
                }
            }
        }
        assert_read_alike(b"m{a=\"1\",b=\"2\"} 1\nm{a=\"1\",b=\"\xff\"} 3\n");
        // The second line leaves `b` as the likely name in both places; only
        // the first counts.
        assert_read_alike(b"m{a=\"1\",b=\"2\"} 1\nm{b=\"2\"} 1\nm{b=\"1\",b=\"2\"} 1\n");
    }

    #[test]
    fn the_corpus_is_read_as_the_general_way_reads_it() {
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
        let mut files = 0;
        for case in std::fs::read_dir(corpus).unwrap() {
            let case = case.unwrap().path();
            if !case.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(case).unwrap() {
                let path = file.unwrap().path();
                if path.extension().is_some_and(|e| e == "prom") {
                    assert_read_alike(&std::fs::read(&path).unwrap());
                    files += 1;
                }
            }
        }
        assert!(files > 100, "{files} files");
        assert_read_alike(large().as_bytes());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 3000,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Lines of the common shape, and lines a byte or a few away from it.
        #[test]
        fn edited_lines_are_read_as_the_general_way_reads_them(
            lines in proptest::collection::vec((0..8usize, 0..6usize, "[a-c0-9.]{0,3}"), 1..12),
            edits in proptest::collection::vec(
                (
                    proptest::prelude::any::<proptest::sample::Index>(),
                    proptest::sample::select(vec![
                        " ", "\t", "\"", "\\", ",", "{", "}", "=", "\r", "#", "x", "1", "\n",
                        "le=\"1\",", "_sum", "a=\"1\",", "\u{e9}",
                    ]),
                ),
                0..3,
            ),
        ) {
            let names = ["m", "m_sum", "m_count", "m_bucket", "h_bucket", "h_sum"];
            let labels = ["", "{a=\"V\"}", "{a=\"V\",b=\"2\"}", "{a=\"1\",le=\"V\"}",
                          "{a=\"1\",quantile=\"V\"}", "{a=\"V\",b=\"V\",}"];
            let mut text = String::new();
            for (name, label, value) in &lines {
                match names.get(*name) {
                    Some(name) => {
                        let label = labels[*label].replace('V', value);
                        let value = if value.is_empty() { "1" } else { value };
                        writeln!(text, "{name}{label} {value}").unwrap();
                    }
                    None if *name == 6 => text.push_str("# TYPE m summary\n"),
                    None => text.push_str("# TYPE h histogram\n"),
                }
            }
            for (at, edit) in &edits {
                let at = at.index(text.len() + 1);
                if text.is_char_boundary(at) {
                    text.insert_str(at, edit);
                }
            }
            assert_read_alike(text.as_bytes());
        }
    }

    /// Reads `input` into the room it is given, at most `step` bytes at a
    /// time.
    fn reader(input: &[u8], step: usize) -> impl FnMut(&mut [u8]) -> Result<usize, ()> + '_ {
        let mut rest = input;
        move |into| {
            let n = step.min(rest.len()).min(into.len());
            into[..n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            Ok(n)
        }
    }

    #[test]
    fn an_input_parsed_while_it_is_read_is_parsed_as_a_whole() {
        let large = large();
        let late_name = format!("{large}m302_count{{host=\"late\"}} 1\n");
        let bad_line = large.replacen("m300{host=\"db3.example.com\"}", "m300{host=\"x\"", 1);
        assert!(
            parse(bad_line.as_bytes()).unwrap_err().line > 10_000,
            "in a later part"
        );
        // The injection replaces a label of the input: parsed again, without it.
        let lossy = format!("{large}m1{{job=\"j\",host=\"x\"}} 1\n");
        let boundless = "x{i=\"0000000000\"} 1\n".repeat(PARTS_FROM / 10);
        let injections = [
            Arc::new(Injection::NONE),
            Arc::new(Injection::new(&[("job", "j")], &[("instance", "")])),
        ];
        for input in [
            &large, &late_name, &bad_line, &lossy, &boundless, "a 1\n", "a 1",
        ] {
            let input = input.as_bytes();
            for injection in &injections {
                let expected = parse_injected(input, injection);
                for step in [7, 4096, 100_003, usize::MAX] {
                    let mut buf = vec![0; input.len() + 1];
                    let parsed =
                        parse_injected_while_reading(&mut buf, reader(input, step), injection);
                    let parsed = parsed.unwrap().expect("room enough");
                    assert_eq!(parsed, expected, "step {step}");
                    assert_eq!(
                        parsed.as_deref().map(lines),
                        expected.as_deref().map(lines),
                        "step {step}"
                    );
                }
            }
        }
        // Read in parts: those of `large` merge, and those of `late_name`
        // cannot (as `parse_parts` found).
        for (input, merged) in [(&large, true), (&late_name, false)] {
            let mut buf = vec![0; input.len() + 1];
            let read = read_in_parts(&mut buf, reader(input.as_bytes(), 65_536), &NO_INJECTION);
            let (len, parsed) = read.unwrap().expect("room enough");
            assert_eq!((len, parsed.is_some()), (input.len(), merged));
        }
    }

    #[test]
    fn an_input_that_fills_the_buffer_is_left_to_the_caller() {
        let input = large();
        // Exactly full, whether more follows is not known yet.
        for len in [PART_SIZE, input.len() - 1, input.len()] {
            let mut buf = vec![0; len];
            let fill = reader(input.as_bytes(), 65_536);
            let parsed = parse_injected_while_reading(&mut buf, fill, &Arc::new(Injection::NONE));
            assert!(parsed.unwrap().is_none(), "{len}");
            assert_eq!(buf, input.as_bytes()[..len]);
        }
    }

    #[test]
    fn a_read_error_ends_the_parse_with_it() {
        let input = large();
        let mut buf = vec![0; input.len()];
        let mut reads = 0;
        let fill = |into: &mut [u8]| {
            reads += 1;
            if reads == 20 {
                return Err("broken");
            }
            let n = 65_536.min(into.len());
            into[..n].copy_from_slice(&input.as_bytes()[(reads - 1) * 65_536..][..n]);
            Ok(n)
        };
        let parsed = parse_injected_while_reading(&mut buf, fill, &Arc::new(Injection::NONE));
        assert_eq!(parsed.err(), Some("broken"));
    }

    #[test]
    fn small_inputs_and_inputs_where_no_family_begins_are_read_whole() {
        assert!(part_starts(b"# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\n").is_empty());
        let samples = "x{i=\"0000000000\"} 1\n".repeat(PARTS_FROM / 10);
        assert!(part_starts(samples.as_bytes()).is_empty());
    }
}
