//! HTTP/1.1 request framing: the head parsed by `httparse`, what the
//! headers say about the body and the connection, and the body skipped as
//! it arrives (by Content-Length or chunked), all whatever the read
//! boundaries. A request the server must not guess about is refused with
//! the status RFC 9112 gives it.

use httparse::Status;

/// The most headers one request may carry.
pub const MAX_HEADERS: usize = 64;

/// What the server refuses a request with; each closes the connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 400: malformed, no Host in HTTP/1.1, Content-Length with
    /// Transfer-Encoding (the request-smuggling shape), a bad chunk.
    BadRequest,
    /// 408: the head or body did not arrive within the timeout.
    Timeout,
    /// 413: a body over the limit.
    TooLarge,
    /// 414: a request line longer than the head limit.
    UriTooLong,
    /// 431: headers past the head limit or [`MAX_HEADERS`].
    HeadersTooLarge,
    /// 501: a transfer coding other than chunked.
    NotImplemented,
}

impl Refusal {
    pub fn status(self) -> (u16, &'static str) {
        match self {
            Refusal::BadRequest => (400, "Bad Request"),
            Refusal::Timeout => (408, "Request Timeout"),
            Refusal::TooLarge => (413, "Content Too Large"),
            Refusal::UriTooLong => (414, "URI Too Long"),
            Refusal::HeadersTooLarge => (431, "Request Header Fields Too Large"),
            Refusal::NotImplemented => (501, "Not Implemented"),
        }
    }
}

/// What a request asks for: the parts of its head the server acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// GET or HEAD (anything else is `false` for both).
    pub get: bool,
    pub head: bool,
    /// The path, without its query.
    pub path: String,
    /// HTTP/1.0 (`false`: HTTP/1.1).
    pub http10: bool,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request with a body: the
    /// client waits for `100 Continue` before it sends the body.
    pub expect_continue: bool,
    /// How the body is framed.
    pub body: Body,
}

/// How much body follows a head, and how far skipping it got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Body {
    #[default]
    None,
    /// Bytes of a Content-Length body still to come.
    Length(u64),
    /// A chunked body.
    Chunked(Chunked),
}

/// Where in a chunked body the stream is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chunked {
    state: ChunkState,
    /// The sizes of the chunks so far, summed (checked against the limit).
    total: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum ChunkState {
    /// Before a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk: bytes still to come.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last (zero) chunk: trailer lines, up to the empty one.
    Trailers,
}

/// What [`parse_head`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A head, and the bytes it took.
    Head(Head, usize),
    Incomplete,
    Refused(Refusal),
}

/// The Host value last found valid on a connection: the next request's,
/// byte for byte the same (a keep-alive client sends the same one every
/// time), is not checked again.
#[derive(Debug, Default)]
pub struct KnownHost(Vec<u8>);

impl KnownHost {
    /// Whether `value` is a valid Host (see [`valid_host`]).
    fn check(&mut self, value: &[u8]) -> bool {
        if !self.0.is_empty() && self.0 == value {
            return true;
        }
        let valid = valid_host(value);
        if valid {
            self.0.clear();
            self.0.extend_from_slice(value);
        }
        valid
    }
}

/// Parses the head at the start of `buf`: at most `max_head` bytes, body
/// up to `max_body` bytes; `host` is the connection's last valid Host.
pub fn parse_head(buf: &[u8], max_head: usize, max_body: u64, host: &mut KnownHost) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let length = match request.parse(buf) {
        Ok(Status::Complete(length)) if length <= max_head => length,
        Ok(Status::Complete(_)) => return Parsed::Refused(Refusal::HeadersTooLarge),
        Ok(Status::Partial) if buf.len() <= max_head => return Parsed::Incomplete,
        Ok(Status::Partial) => {
            let line_ended = memchr::memchr(b'\n', &buf[..max_head]).is_some();
            let refusal = match line_ended {
                true => Refusal::HeadersTooLarge,
                false => Refusal::UriTooLong,
            };
            return Parsed::Refused(refusal);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Refused(Refusal::HeadersTooLarge);
        }
        Err(_) => return Parsed::Refused(Refusal::BadRequest),
    };
    let http10 = request.version == Some(0);
    let (mut length_header, mut chunked, mut coded, mut hosts) = (None, false, false, 0);
    let (mut close, mut keep_alive, mut expect_continue) = (false, false, false);
    for header in request.headers.iter() {
        let name = header.name;
        // The length first: most headers are none of these, and one
        // compare turns them away.
        let is = |known: &str| name.eq_ignore_ascii_case(known);
        let length = name.len();
        if length == 4 && is("host") {
            // RFC 9112 3.2: one Host, a valid host[:port], or 400.
            if !host.check(header.value) {
                return Parsed::Refused(Refusal::BadRequest);
            }
            hosts += 1;
        } else if length == 14 && is("content-length") {
            let Some(value) = parse_length(header.value) else {
                return Parsed::Refused(Refusal::BadRequest);
            };
            if length_header.is_some_and(|seen| seen != value) {
                return Parsed::Refused(Refusal::BadRequest);
            }
            length_header = Some(value);
        } else if length == 17 && is("transfer-encoding") {
            // Present at all, it frames the body: an empty or comma-only
            // value is no coding a server may guess at (400 below).
            coded = true;
            // Only `chunked`, alone: any other coding is not implemented.
            for coding in tokens(header.value) {
                if !coding.eq_ignore_ascii_case(b"chunked") || chunked {
                    return Parsed::Refused(Refusal::NotImplemented);
                }
                chunked = true;
            }
        } else if length == 10 && is("connection") {
            for option in tokens(header.value) {
                close |= option.eq_ignore_ascii_case(b"close");
                keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if length == 6 && is("expect") {
            expect_continue = header
                .value
                .trim_ascii()
                .eq_ignore_ascii_case(b"100-continue");
        }
    }
    // RFC 9112: Content-Length beside Transfer-Encoding, Transfer-Encoding
    // in HTTP/1.0 or with no coding, and a missing or repeated Host, are
    // framing no server may guess at.
    if (coded && (!chunked || length_header.is_some() || http10))
        || hosts > 1
        || (!http10 && hosts == 0)
    {
        return Parsed::Refused(Refusal::BadRequest);
    }
    let body = match (chunked, length_header) {
        (true, _) => Body::Chunked(Chunked::default()),
        (false, Some(n)) if n > max_body => return Parsed::Refused(Refusal::TooLarge),
        (false, Some(0) | None) => Body::None,
        (false, Some(n)) => Body::Length(n),
    };
    let method = request.method.unwrap_or("");
    let Some(path) = origin_path(request.path.unwrap_or("/")) else {
        return Parsed::Refused(Refusal::BadRequest);
    };
    // Paths are short: a plain loop beats a call into a searcher.
    let path = match path.bytes().position(|b| b == b'?') {
        Some(query) => &path[..query],
        None => path,
    };
    Parsed::Head(
        Head {
            get: method == "GET",
            head: method == "HEAD",
            path: path.to_string(),
            http10,
            keep_alive: !close && (!http10 || keep_alive),
            expect_continue: expect_continue && !http10 && body != Body::None,
            body,
        },
        length,
    )
}

/// Skips body bytes at the start of `buf`: how many it took, and whether
/// the body is complete. Bytes it did not take (part of a chunk-size or
/// trailer line) must be offered again with more.
/// Trailer fields count against `max_head`, as a head's do.
pub fn skip_body(
    body: &mut Body,
    buf: &[u8],
    max_head: usize,
    max_body: u64,
) -> Result<(usize, bool), Refusal> {
    match body {
        Body::None => Ok((0, true)),
        Body::Length(left) => {
            let took = (*left).min(buf.len() as u64);
            *left -= took;
            Ok((took as usize, *left == 0))
        }
        Body::Chunked(chunked) => chunked.skip(buf, max_head, max_body),
    }
}

impl Chunked {
    fn skip(
        &mut self,
        buf: &[u8],
        max_head: usize,
        max_body: u64,
    ) -> Result<(usize, bool), Refusal> {
        let mut at = 0;
        loop {
            let rest = &buf[at..];
            match self.state {
                ChunkState::Size => match chunk_size_line(rest)? {
                    Some((used, size)) => {
                        at += used;
                        self.total = self.total.saturating_add(size);
                        if self.total > max_body {
                            return Err(Refusal::TooLarge);
                        }
                        self.state = match size {
                            0 => ChunkState::Trailers,
                            n => ChunkState::Data(n),
                        };
                    }
                    None => return Ok((at, false)),
                },
                ChunkState::Data(left) => {
                    let took = left.min(rest.len() as u64);
                    at += took as usize;
                    self.state = match left - took {
                        0 => ChunkState::DataEnd,
                        left => ChunkState::Data(left),
                    };
                    if at == buf.len() {
                        return Ok((at, false));
                    }
                }
                ChunkState::DataEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        at += 2;
                        self.state = ChunkState::Size;
                    }
                    [] | [b'\r'] => return Ok((at, false)),
                    _ => return Err(Refusal::BadRequest),
                },
                ChunkState::Trailers => {
                    return match trailer_section(rest, max_head)? {
                        Some(used) => Ok((at + used, true)),
                        None => Ok((at, false)),
                    };
                }
            }
        }
    }
}

/// The longest chunk-size line (size and extensions) taken.
const MAX_CHUNK_LINE: usize = 1024;

/// A chunk-size line at the start of `buf`, read strictly (RFC 9112 7.1):
/// `1*HEXDIG *( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] ) CRLF`.
/// `Ok(Some((bytes, size)))` for a whole line, `Ok(None)` for a line not
/// ended yet, `Err` for anything else: no digits, a size past u64, a byte
/// an extension may not hold, a CR or LF that is not the line's CRLF. A
/// lenient reading here is where request smuggling lives: a front end
/// that ends the line elsewhere sees another body.
fn chunk_size_line(buf: &[u8]) -> Result<Option<(usize, u64)>, Refusal> {
    let bad = Err(Refusal::BadRequest);
    let digits = buf.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == buf.len() {
        return match digits <= 16 {
            true => Ok(None),
            false => bad,
        };
    }
    if digits == 0 || digits > 16 {
        return bad;
    }
    let size = buf[..digits].iter().fold(0u64, |n, &d| {
        n << 4 | (d as char).to_digit(16).unwrap_or(0) as u64
    });
    let mut at = digits;
    let mut ext = Extension::Next;
    loop {
        let Some(&b) = buf.get(at) else {
            return match at < MAX_CHUNK_LINE {
                true => Ok(None),
                false => bad,
            };
        };
        if b == b'\r' {
            return match buf.get(at + 1) {
                None => Ok(None),
                Some(b'\n') if ext.may_end() => Ok(Some((at + 2, size))),
                Some(_) => bad,
            };
        }
        ext = match ext.then(b) {
            Some(next) => next,
            None => return bad,
        };
        at += 1;
    }
}

/// Where a chunk extension's grammar is, byte by byte.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Extension {
    /// Before a `;` (after the size, or after an extension).
    Next,
    /// After `;`: the name comes.
    Name { started: bool },
    /// After the name and white space: `=`, `;` or the end come.
    AfterName,
    /// After `=`: the value comes.
    Value,
    /// Inside a token value.
    Token,
    /// Inside a quoted-string value; `escaped` after a backslash.
    Quoted { escaped: bool },
}

impl Extension {
    /// The state after byte `b`, or `None` if `b` may not stand here.
    fn then(self, b: u8) -> Option<Extension> {
        let space = b == b' ' || b == b'\t';
        use Extension::*;
        Some(match self {
            Next | AfterName if space => self,
            Next | AfterName | Token if b == b';' => Name { started: false },
            Name { started: false } if space => self,
            Name { .. } if is_tchar(b) => Name { started: true },
            Name { started: true } if space => AfterName,
            Name { started: true } if b == b';' => Name { started: false },
            Name { started: true } | AfterName if b == b'=' => Value,
            Value if space => Value,
            Value if b == b'"' => Quoted { escaped: false },
            Value | Token if is_tchar(b) => Token,
            Token if space => Next,
            Quoted { escaped: true } if is_quoted_text(b) || b == b'"' || b == b'\\' => {
                Quoted { escaped: false }
            }
            Quoted { escaped: false } if b == b'\\' => Quoted { escaped: true },
            Quoted { escaped: false } if b == b'"' => Next,
            Quoted { escaped: false } if is_quoted_text(b) => self,
            _ => return None,
        })
    }

    /// The line may end here (CRLF).
    fn may_end(self) -> bool {
        matches!(
            self,
            Extension::Next
                | Extension::Name { started: true }
                | Extension::AfterName
                | Extension::Token
        )
    }
}

/// RFC 9110's `tchar`: what a token is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `qdtext` of a quoted-string (and what may follow a backslash but `"`
/// and `\`): tab, space, visible ASCII but `"` and `\`, and obs-text.
fn is_quoted_text(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\' || b >= 0x80
}

/// The trailer section after the last chunk, read as header fields
/// (RFC 9112 7.1.2): `Ok(Some(bytes))` once its empty line has come,
/// `Ok(None)` while it has not (within `max_head`), `Err` for a line that
/// is not a field, a bare LF, or a section past `max_head`. So a request
/// that follows a body missing its last CRLF is refused, never eaten.
fn trailer_section(buf: &[u8], max_head: usize) -> Result<Option<usize>, Refusal> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(buf, &mut fields) {
        Ok(Status::Complete((used, _))) if used > max_head => Err(Refusal::HeadersTooLarge),
        Ok(Status::Complete((used, _))) if bare_lf(&buf[..used]) => Err(Refusal::BadRequest),
        Ok(Status::Complete((used, _))) => Ok(Some(used)),
        Ok(Status::Partial) if bare_lf(buf) => Err(Refusal::BadRequest),
        Ok(Status::Partial) if buf.len() <= max_head => Ok(None),
        Ok(Status::Partial) | Err(httparse::Error::TooManyHeaders) => Err(Refusal::HeadersTooLarge),
        Err(_) => Err(Refusal::BadRequest),
    }
}

/// True if a LF in `bytes` does not follow a CR.
fn bare_lf(bytes: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', bytes).any(|i| i == 0 || bytes[i - 1] != b'\r')
}

/// A Host value as RFC 9112 3.2 and RFC 3986 allow: empty, or a
/// reg-name, IPv4 address or bracketed IP literal, with an optional
/// `:port` of digits.
fn valid_host(value: &[u8]) -> bool {
    let value = value.trim_ascii();
    if let Some(literal) = value.strip_prefix(b"[") {
        return valid_ip_literal(literal);
    }
    // One pass, as this runs for every request: reg-name bytes, then an
    // optional `:` and digits.
    let name = value.iter().take_while(|&&b| REG_NAME[b as usize]).count();
    match &value[name..] {
        [] => true,
        [b':', port @ ..] => port.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// The rest of a Host after its `[`: an IP literal's hex digits, colons
/// and dots, `]`, and an optional `:port`.
#[cold]
fn valid_ip_literal(literal: &[u8]) -> bool {
    let Some(end) = literal.iter().position(|&b| b == b']') else {
        return false;
    };
    let inside = &literal[..end];
    let address_ok = !inside.is_empty()
        && inside
            .iter()
            .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    let port_ok = match &literal[end + 1..] {
        [] => true,
        [b':', digits @ ..] => digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    address_ok && port_ok
}

/// The bytes a Host's reg-name may hold (RFC 3986: unreserved, `%` of
/// pct-encoded, sub-delims), as a table: one load per byte.
const REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric()
            || matches!(
                b as u8,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            );
        b += 1;
    }
    table
};

/// The path of a request target: origin-form (`/x`) as it is, the path of
/// absolute-form (`http://host/x`, RFC 9112 3.2.2), `*` as is; `None` for
/// anything else.
fn origin_path(target: &str) -> Option<&str> {
    if target.starts_with('/') || target == "*" {
        return Some(target);
    }
    let rest = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))?;
    Some(rest.find('/').map_or("/", |slash| &rest[slash..]))
}

/// A Content-Length value: digits only, within u64.
fn parse_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The comma-separated tokens of a header value, trimmed, empty ones
/// dropped.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests;
