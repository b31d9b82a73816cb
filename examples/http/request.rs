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

/// Parses the head at the start of `buf`: at most `max_head` bytes, body
/// up to `max_body` bytes.
pub fn parse_head(buf: &[u8], max_head: usize, max_body: u64) -> Parsed {
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
    let (mut length_header, mut chunked, mut host) = (None, false, false);
    let (mut close, mut keep_alive) = (false, false);
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let Some(value) = parse_length(header.value) else {
                return Parsed::Refused(Refusal::BadRequest);
            };
            if length_header.is_some_and(|seen| seen != value) {
                return Parsed::Refused(Refusal::BadRequest);
            }
            length_header = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Only `chunked`, alone: any other coding is not implemented.
            for coding in tokens(header.value) {
                if !coding.eq_ignore_ascii_case(b"chunked") || chunked {
                    return Parsed::Refused(Refusal::NotImplemented);
                }
                chunked = true;
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for option in tokens(header.value) {
                close |= option.eq_ignore_ascii_case(b"close");
                keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("host") {
            host = true;
        }
    }
    // RFC 9112: Content-Length beside Transfer-Encoding, and
    // Transfer-Encoding in HTTP/1.0, are framing no server may guess at.
    if (chunked && (length_header.is_some() || http10)) || (!http10 && !host) {
        return Parsed::Refused(Refusal::BadRequest);
    }
    let body = match (chunked, length_header) {
        (true, _) => Body::Chunked(Chunked::default()),
        (false, Some(n)) if n > max_body => return Parsed::Refused(Refusal::TooLarge),
        (false, Some(0) | None) => Body::None,
        (false, Some(n)) => Body::Length(n),
    };
    let method = request.method.unwrap_or("");
    let path = request.path.unwrap_or("/");
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    Parsed::Head(
        Head {
            get: method == "GET",
            head: method == "HEAD",
            path: path.to_string(),
            http10,
            keep_alive: !close && (!http10 || keep_alive),
            body,
        },
        length,
    )
}

/// Skips body bytes at the start of `buf`: how many it took, and whether
/// the body is complete. Bytes it did not take (part of a chunk-size or
/// trailer line) must be offered again with more.
pub fn skip_body(body: &mut Body, buf: &[u8], max_body: u64) -> Result<(usize, bool), Refusal> {
    match body {
        Body::None => Ok((0, true)),
        Body::Length(left) => {
            let took = (*left).min(buf.len() as u64);
            *left -= took;
            Ok((took as usize, *left == 0))
        }
        Body::Chunked(chunked) => chunked.skip(buf, max_body),
    }
}

impl Chunked {
    fn skip(&mut self, buf: &[u8], max_body: u64) -> Result<(usize, bool), Refusal> {
        let mut at = 0;
        loop {
            let rest = &buf[at..];
            match self.state {
                ChunkState::Size => match httparse::parse_chunk_size(rest) {
                    Ok(Status::Complete((used, size))) => {
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
                    Ok(Status::Partial) if rest.len() < 1024 => return Ok((at, false)),
                    _ => return Err(Refusal::BadRequest),
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
                    let Some(end) = memchr::memchr(b'\n', rest) else {
                        return match rest.len() < 8 * 1024 {
                            true => Ok((at, false)),
                            false => Err(Refusal::HeadersTooLarge),
                        };
                    };
                    at += end + 1;
                    if rest[..end]
                        .strip_suffix(b"\r")
                        .unwrap_or(&rest[..end])
                        .is_empty()
                    {
                        return Ok((at, true));
                    }
                }
            }
        }
    }
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
