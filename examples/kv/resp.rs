//! RESP2, the Redis protocol: requests parsed as they arrive, whatever the
//! read boundaries, and replies encoded.
//!
//! A request is an array of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`,
//! what every client library sends) or an inline command (`GET k\r\n`, what
//! a person types into `nc`). The parser follows Redis 7.0's own
//! (`processMultibulkBuffer` and `processInlineBuffer`), errors and limits
//! included, so a client sees the same bytes from either server:
//! - `*0` and `*-1` are empty requests (skipped, no reply), as is an empty
//!   inline line;
//! - a count line or inline command with no end within 64 KiB, a bad count,
//!   a bulk that does not start with `$`, a bad or oversized bulk length
//!   and unbalanced quotes are protocol errors: the server answers
//!   `-ERR Protocol error: ...` and closes the connection;
//! - like Redis, the two bytes after a bulk's payload are skipped, not
//!   checked.
//!
//! One limit is this server's own: a request that passes `max_request`
//! bytes is a protocol error too (Redis closes a client whose query buffer
//! passes 1 GB, without a reply). What counts is the memory the request
//! takes: its bytes as sent (bulk strings with their headers and CRLFs, or
//! the inline line) and the parser's bookkeeping for them
//! ([`ARG_COST`] per argument). With the 64 KiB bound on each line, a
//! connection's unfinished request holds at most `max_request` + 64 KiB,
//! and once it is finished the parser gives back what it took
//! ([`Parser::release`]).

use std::ops::Range;

/// The longest inline command, count line or bulk length line: Redis'
/// `PROTO_INLINE_MAX_SIZE`.
pub const MAX_INLINE: usize = 64 * 1024;

/// What the parser keeps per argument: a range of the buffer (a bulk
/// string), or a word of its own (an inline command: its `Vec`, whose
/// bytes count too).
pub const ARG_COST: usize = std::mem::size_of::<Range<usize>>();
const WORD_COST: usize = std::mem::size_of::<Vec<u8>>();

/// Arguments whose bookkeeping a parser keeps between requests; a larger
/// request's is given back when it is done.
const KEEP_ARGS: usize = 64;

/// What [`Parser::parse`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole request: its arguments are [`Parser::args`] until
    /// [`Parser::finish`].
    Request,
    /// The buffer ends inside a request: parse again with more bytes.
    Incomplete,
    /// A protocol error: the reply's text after `-ERR Protocol error: `.
    Error(String),
}

/// A request's arguments, borrowed from the buffer (arrays of bulk
/// strings) or unescaped (inline commands).
pub enum Args<'a> {
    Bulk(&'a [u8], &'a [Range<usize>]),
    Inline(&'a [Vec<u8>]),
}

impl<'a> Args<'a> {
    pub fn len(&self) -> usize {
        match self {
            Args::Bulk(_, ranges) => ranges.len(),
            Args::Inline(words) => words.len(),
        }
    }

    /// Argument `i`; the command's name is argument 0.
    pub fn get(&self, i: usize) -> &'a [u8] {
        match self {
            Args::Bulk(buf, ranges) => &buf[ranges[i].clone()],
            Args::Inline(words) => &words[i],
        }
    }
}

/// A resumable RESP2 request parser over a buffer that grows at its end
/// and loses its consumed front ([`Parser::rebase`]). No byte is scanned
/// twice while a request is incomplete, so a request that trickles in
/// costs what it would cost in one read.
#[derive(Debug, Default)]
pub struct Parser {
    /// Where the request being parsed starts.
    start: usize,
    /// Where parsing goes on.
    cursor: usize,
    /// How far the search for an inline command's newline got.
    scanned: usize,
    /// Bulk strings still to come in the array being parsed; `None` before
    /// its count line.
    pending: Option<usize>,
    /// The length of the bulk string whose `$len` line was read.
    bulk: Option<usize>,
    /// The array's bulk strings so far, as ranges of the buffer.
    ranges: Vec<Range<usize>>,
    /// An inline command's words, unescaped.
    words: Vec<Vec<u8>>,
}

impl Parser {
    /// Parses the next request in `buf` (the same buffer as the last call,
    /// perhaps grown, or rebased), refusing one of over `max_request`
    /// bytes. After [`Parsed::Request`], read [`Parser::args`], then call
    /// [`Parser::finish`] before parsing on.
    pub fn parse(&mut self, buf: &[u8], max_request: usize) -> Parsed {
        loop {
            let Some(left) = self.pending else {
                if self.cursor >= buf.len() {
                    return Parsed::Incomplete;
                }
                if buf[self.cursor] != b'*' {
                    match self.inline(buf, max_request) {
                        Some(parsed) => return parsed,
                        None => continue, // an empty line
                    }
                }
                let Some(end) = line_end(buf, self.cursor) else {
                    return self.unterminated(buf, "too big mbulk count string");
                };
                let count = parse_i64(&buf[self.cursor + 1..end]);
                let Some(count) = count.filter(|&n| n <= i64::from(i32::MAX)) else {
                    return Parsed::Error("invalid multibulk length".into());
                };
                self.cursor = end + 2;
                if count <= 0 {
                    self.finish(); // an empty request
                    continue;
                }
                self.pending = Some(count as usize);
                continue;
            };
            if left == 0 {
                return Parsed::Request;
            }
            match self.bulk {
                None => {
                    if self.cursor >= buf.len() {
                        return Parsed::Incomplete;
                    }
                    let Some(end) = line_end(buf, self.cursor) else {
                        return self.unterminated(buf, "too big bulk count string");
                    };
                    if buf[self.cursor] != b'$' {
                        let got = char::from(buf[self.cursor]);
                        return Parsed::Error(format!("expected '$', got '{got}'"));
                    }
                    let len = parse_i64(&buf[self.cursor + 1..end])
                        .and_then(|n| usize::try_from(n).ok())
                        .filter(|&n| n <= max_request);
                    let Some(len) = len else {
                        return Parsed::Error("invalid bulk length".into());
                    };
                    self.cursor = end + 2;
                    if self.ranges.len() == self.ranges.capacity() {
                        // Grown by hand, so the capacity counted is exact.
                        self.ranges.reserve_exact(self.ranges.len().max(4));
                    }
                    let bookkeeping = self.ranges.capacity() * ARG_COST;
                    if self.cursor - self.start + len + 2 + bookkeeping > max_request {
                        return too_big(max_request);
                    }
                    self.bulk = Some(len);
                }
                Some(len) => {
                    if buf.len() - self.cursor < len + 2 {
                        return Parsed::Incomplete;
                    }
                    self.ranges.push(self.cursor..self.cursor + len);
                    self.cursor += len + 2;
                    self.bulk = None;
                    self.pending = Some(left - 1);
                }
            }
        }
    }

    /// The arguments of the request [`Parser::parse`] just found.
    pub fn args<'a>(&'a self, buf: &'a [u8]) -> Args<'a> {
        if self.words.is_empty() {
            Args::Bulk(buf, &self.ranges)
        } else {
            Args::Inline(&self.words)
        }
    }

    /// Done with the request: the next starts where it ended.
    pub fn finish(&mut self) {
        self.start = self.cursor;
        self.scanned = self.cursor;
        self.pending = None;
        self.bulk = None;
        self.ranges.clear();
        self.words.clear();
    }

    /// Gives back the bookkeeping of a large request once it is done (a
    /// connection between requests keeps a small parser): call after
    /// [`Parser::finish`] or [`Parser::rebase`].
    pub fn release(&mut self) {
        if self.pending.is_none() && self.ranges.capacity() > KEEP_ARGS {
            self.ranges = Vec::new();
        }
        if self.words.capacity() > KEEP_ARGS {
            self.words = Vec::new();
        }
    }

    /// Bytes of bookkeeping held between calls: the argument ranges and
    /// the inline words' list (its words are cleared at each request's
    /// end). It leaves out what `words_held` sums over the words: empty
    /// between calls, and summing them costs kv 25 instructions a request.
    pub fn held(&self) -> usize {
        self.ranges.capacity() * ARG_COST + self.words.capacity() * WORD_COST
    }

    fn words_held(&self) -> usize {
        self.words.capacity() * WORD_COST + self.words.iter().map(Vec::capacity).sum::<usize>()
    }

    /// Where the unfinished request starts: the bytes before it are
    /// consumed, and the caller may drop them (then [`Parser::rebase`]).
    pub fn start(&self) -> usize {
        self.start
    }

    /// The buffer lost its first `consumed` bytes (at most
    /// [`Parser::start`]).
    pub fn rebase(&mut self, consumed: usize) {
        self.start -= consumed;
        self.cursor -= consumed;
        self.scanned -= consumed;
        for range in &mut self.ranges {
            *range = range.start - consumed..range.end - consumed;
        }
    }

    /// An inline command; `None` for an empty line (skipped).
    fn inline(&mut self, buf: &[u8], max_request: usize) -> Option<Parsed> {
        let from = self.scanned.max(self.cursor);
        // Redis looks for the newline with strchr, which stops at a NUL:
        // a line with a NUL waits for more bytes (until the limit), as there.
        let newline = match memchr::memchr2(b'\n', 0, &buf[from..]).map(|i| from + i) {
            Some(i) if buf[i] == b'\n' => i,
            stop => {
                self.scanned = stop.unwrap_or(buf.len());
                if buf.len() - self.cursor > MAX_INLINE {
                    return Some(Parsed::Error("too big inline request".into()));
                }
                return Some(Parsed::Incomplete);
            }
        };
        let line = &buf[self.cursor..newline];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if split_args(line, &mut self.words).is_err() {
            return Some(Parsed::Error("unbalanced quotes in request".into()));
        }
        if newline + 1 - self.start + self.words_held() > max_request {
            return Some(too_big(max_request));
        }
        self.cursor = newline + 1;
        if self.words.is_empty() {
            self.finish();
            return None;
        }
        Some(Parsed::Request)
    }

    /// A count or length line with no `\r\n` yet: more bytes, or an error
    /// past [`MAX_INLINE`].
    fn unterminated(&self, buf: &[u8], error: &str) -> Parsed {
        if buf.len() - self.cursor > MAX_INLINE {
            return Parsed::Error(error.into());
        }
        Parsed::Incomplete
    }
}

fn too_big(max_request: usize) -> Parsed {
    Parsed::Error(format!("request over {max_request} bytes (--max-request)"))
}

/// Where the line starting at `from` ends: the index of its `\r`, once the
/// byte after it has arrived too (Redis looks for `\r` with strchr, so a
/// NUL before it hides it, and skips two bytes).
fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    let cr = from + memchr::memchr2(b'\r', 0, &buf[from..])?;
    (buf[cr] == b'\r' && cr + 1 < buf.len()).then_some(cr)
}

/// A signed decimal as Redis' `string2ll` reads it: an optional `-`, no
/// `+`, no leading zero, no space, within i64.
pub fn parse_i64(bytes: &[u8]) -> Option<i64> {
    let (negative, digits) = match bytes {
        [b'0'] => return Some(0),
        [b'-', rest @ ..] => (true, rest),
        _ => (false, bytes),
    };
    if digits.is_empty() || digits[0] == b'0' || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut value: i64 = 0;
    for &d in digits {
        let d = i64::from(d - b'0');
        value = value.checked_mul(10)?;
        value = if negative {
            value.checked_sub(d)?
        } else {
            value.checked_add(d)?
        };
    }
    Some(value)
}

/// Splits an inline command into words as Redis' `sdssplitargs` does:
/// spaces (and tabs, newlines) separate; `"..."` takes `\n`, `\r`, `\t`,
/// `\b`, `\a`, `\\`, `\"` and `\xHH`; `'...'` takes `\'`; a closing quote
/// must be followed by a space or the end. `Err` for unbalanced quotes.
pub fn split_args(line: &[u8], words: &mut Vec<Vec<u8>>) -> Result<(), ()> {
    words.clear();
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Ok(());
        }
        let mut word = Vec::new();
        let mut quote = None;
        loop {
            let Some(&c) = line.get(i) else {
                if quote.is_some() {
                    return Err(()); // the line ended inside quotes
                }
                break;
            };
            match quote {
                Some(b'"') => {
                    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
                    if c == b'\\' && i + 3 < line.len() && line[i + 1] == b'x' {
                        if let (Some(h), Some(l)) = (hex(line[i + 2]), hex(line[i + 3])) {
                            word.push(h * 16 + l);
                            i += 4;
                            continue;
                        }
                    }
                    if c == b'\\' && i + 1 < line.len() {
                        word.push(match line[i + 1] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 8,
                            b'a' => 7,
                            other => other,
                        });
                        i += 2;
                        continue;
                    }
                    if c == b'"' {
                        if line.get(i + 1).is_some_and(|&b| !is_space(b)) {
                            return Err(()); // a closing quote must end the word
                        }
                        i += 1;
                        break;
                    }
                    word.push(c);
                }
                Some(_) => {
                    if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                        word.push(b'\'');
                        i += 2;
                        continue;
                    }
                    if c == b'\'' {
                        if line.get(i + 1).is_some_and(|&b| !is_space(b)) {
                            return Err(());
                        }
                        i += 1;
                        break;
                    }
                    word.push(c);
                }
                None => match c {
                    b' ' | b'\n' | b'\r' | b'\t' => break,
                    b'"' | b'\'' => quote = Some(c),
                    _ => word.push(c),
                },
            }
            i += 1;
        }
        words.push(word);
    }
}

/// C's `isspace`, which Redis' `sdssplitargs` skips between words: ASCII
/// whitespace and the vertical tab (`\v`), which Rust's
/// `is_ascii_whitespace` leaves out. (Inside a word only space, tab, CR
/// and LF end it, as there.)
fn is_space(b: u8) -> bool {
    b.is_ascii_whitespace() || b == 0x0b
}

/// Reply encoders: each appends one RESP2 value to `out`.
pub mod reply {
    pub fn simple(out: &mut Vec<u8>, text: &str) {
        out.push(b'+');
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// `-<text>\r\n`; `text` starts with its error code (`ERR`,
    /// `NOPROTO`, ...). Newlines in it become spaces, as Redis does, so
    /// the reply stays one line.
    pub fn error(out: &mut Vec<u8>, text: &[u8]) {
        out.push(b'-');
        out.extend(
            text.iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        out.extend_from_slice(b"\r\n");
    }

    pub fn integer(out: &mut Vec<u8>, n: i64) {
        out.push(b':');
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    pub fn bulk(out: &mut Vec<u8>, value: &[u8]) {
        out.push(b'$');
        out.extend_from_slice(itoa::Buffer::new().format(value.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }

    /// The null bulk string: a missing key.
    pub fn null(out: &mut Vec<u8>) {
        out.extend_from_slice(b"$-1\r\n");
    }

    /// The header of an array of `len` values (the values follow).
    pub fn array(out: &mut Vec<u8>, len: usize) {
        out.push(b'*');
        out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests;
