//! The request framing on its own: pipelined requests with Content-Length
//! and chunked bodies frame the same however the stream is split into
//! reads, and arbitrary bytes never panic and are framed or refused the
//! same whatever the split. Run with `cargo test --example http`.

use proptest::prelude::*;

use super::{Body, KnownHost, Parsed, Refusal};

const MAX_HEAD: usize = 1024;
const MAX_BODY: u64 = 4096;

/// One head, parsed on a fresh connection (no Host remembered).
fn head(text: &str) -> Parsed {
    super::parse_head(
        text.as_bytes(),
        MAX_HEAD,
        MAX_BODY,
        &mut KnownHost::default(),
    )
}

/// Frames `reads` as the server does: the paths of the requests whose
/// bodies ended, and the refusal that ended the stream, if any.
fn frame(reads: &[&[u8]]) -> (Vec<String>, Option<Refusal>) {
    let (mut buf, mut paths, mut in_body) = (Vec::new(), Vec::new(), None);
    for read in reads {
        buf.extend_from_slice(read);
        let mut at = 0;
        loop {
            if let Some(head) = &mut in_body {
                let head: &mut super::Head = head;
                match super::skip_body(&mut head.body, &buf[at..], MAX_HEAD, MAX_BODY) {
                    Ok((took, true)) => {
                        at += took;
                        paths.push(head.path.clone());
                        in_body = None;
                        continue;
                    }
                    Ok((took, false)) => {
                        at += took;
                        break;
                    }
                    Err(refusal) => return (paths, Some(refusal)),
                }
            }
            if at == buf.len() {
                break;
            }
            match super::parse_head(&buf[at..], MAX_HEAD, MAX_BODY, &mut KnownHost::default()) {
                Parsed::Head(head, length) => {
                    at += length;
                    in_body = Some(head);
                }
                Parsed::Incomplete => break,
                Parsed::Refused(refusal) => return (paths, Some(refusal)),
            }
        }
        buf.drain(..at);
    }
    (paths, None)
}

fn split<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(data.len())).collect();
    bounds.extend([0, data.len()]);
    bounds.sort_unstable();
    bounds.windows(2).map(|w| &data[w[0]..w[1]]).collect()
}

/// A request: its path and body, sent with Content-Length or chunked
/// (in chunks of the given sizes).
fn encode(path: &str, body: &[u8], chunks: Option<&[usize]>) -> Vec<u8> {
    let mut out = format!("POST /{path} HTTP/1.1\r\nHost: x\r\n").into_bytes();
    match chunks {
        None => {
            out.extend(format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes());
            out.extend_from_slice(body);
        }
        Some(sizes) => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            let mut rest = body;
            for &size in sizes.iter().chain(std::iter::once(&usize::MAX)) {
                let n = size.min(rest.len());
                if n == 0 {
                    break;
                }
                out.extend(format!("{n:x}\r\n").into_bytes());
                out.extend_from_slice(&rest[..n]);
                out.extend_from_slice(b"\r\n");
                rest = &rest[n..];
            }
            out.extend_from_slice(b"0\r\nTrailer: x\r\n\r\n");
        }
    }
    out
}

proptest! {
    #[test]
    fn pipelined_bodies_frame_the_same_however_split(
        requests in prop::collection::vec((
            "[a-z]{1,8}",
            prop::collection::vec(any::<u8>(), 0..300),
            prop::option::of(prop::collection::vec(1usize..64, 1..6)),
        ), 1..6),
        cuts in prop::collection::vec(0usize..3000, 0..30),
    ) {
        let mut stream = Vec::new();
        for (path, body, chunks) in &requests {
            stream.extend(encode(path, body, chunks.as_deref()));
        }
        let (paths, refusal) = frame(&split(&stream, &cuts));
        prop_assert_eq!(refusal, None);
        let sent: Vec<String> = requests.iter().map(|(p, _, _)| format!("/{p}")).collect();
        prop_assert_eq!(paths, sent);
    }

    #[test]
    fn arbitrary_bytes_are_framed_or_refused_the_same_however_split(
        stream in prop::collection::vec(prop_oneof![
            3 => any::<u8>(),
            2 => Just(b'\r'), 2 => Just(b'\n'), 1 => Just(b':'), 1 => Just(b' '),
        ], 0..400),
        prefix in prop_oneof![
            Just(&b""[..]),
            Just(&b"GET / HTTP/1.1\r\nHost: x\r\n"[..]),
            Just(&b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"[..]),
        ],
        cuts in prop::collection::vec(0usize..500, 0..20),
    ) {
        let stream = [prefix, &stream].concat();
        let whole = frame(&[&stream]);
        prop_assert_eq!(frame(&split(&stream, &cuts)), whole);
    }
}

#[test]
fn refusals_follow_rfc_9112() {
    let refused = |text: &str| match head(text) {
        Parsed::Refused(r) => Some(r),
        _ => None,
    };
    use Refusal::*;
    for (text, refusal) in [
        ("GET / HTTP/1.1\r\n\r\n", BadRequest), // no Host
        (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            BadRequest,
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            BadRequest,
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            BadRequest,
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n",
            BadRequest,
        ),
        (
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            BadRequest,
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            NotImplemented,
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4097\r\n\r\n",
            TooLarge,
        ),
        ("GET /\0 HTTP/1.1\r\n\r\n", BadRequest),
    ] {
        assert_eq!(refused(text), Some(refusal), "{text:?}");
    }
    let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD));
    assert_eq!(refused(&long_line), Some(UriTooLong));
    let long_head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n",
        "a".repeat(MAX_HEAD)
    );
    assert_eq!(refused(&long_head), Some(HeadersTooLarge));
    let many = format!(
        "GET / HTTP/1.1\r\n{}\r\n",
        "A: b\r\n".repeat(super::MAX_HEADERS + 1)
    );
    assert_eq!(
        super::parse_head(
            many.as_bytes(),
            1 << 20,
            MAX_BODY,
            &mut KnownHost::default()
        ),
        Parsed::Refused(HeadersTooLarge)
    );
    // A chunked body over the limit, however its chunks add up.
    let mut body = Body::Chunked(Default::default());
    let chunks = b"800\r\n"
        .iter()
        .chain(vec![b'x'; 0x800].iter())
        .copied()
        .collect::<Vec<_>>();
    let mut refusal = None;
    for _ in 0..3 {
        let mut at = 0;
        let mut data = chunks.clone();
        data.extend_from_slice(b"\r\n");
        while at < data.len() {
            match super::skip_body(&mut body, &data[at..], MAX_HEAD, MAX_BODY) {
                Ok((took, _)) => at += took,
                Err(r) => {
                    refusal = Some(r);
                    break;
                }
            }
        }
    }
    assert_eq!(refusal, Some(TooLarge));
}

#[test]
fn keep_alive_follows_the_version_and_connection_header() {
    let keep = |text: &str| match head(text) {
        Parsed::Head(head, _) => head.keep_alive,
        other => panic!("{other:?}"),
    };
    assert!(keep("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert!(!keep(
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    ));
    assert!(!keep("GET / HTTP/1.0\r\n\r\n"));
    assert!(keep("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    assert!(!keep(
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n"
    ));
}

/// Every framing decision is the strict one (RFC 9112 sections 6, 7 and
/// 3.2): what a lenient reader takes one way and a front end another is
/// refused, never guessed at.
#[test]
fn framing_is_strict_where_a_lenient_reading_smuggles() {
    use Refusal::*;
    let chunked = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (body, expected) in [
        // The attack: a bare LF inside a chunk extension. A front end that
        // ends the size line at the LF sees one request, we saw two.
        (
            "2;\nxx\r\n29\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n\r\n0\r\n\r\n",
            (vec![], Some(BadRequest)),
        ),
        ("2;a\rb\r\nxx\r\n0\r\n\r\n", (vec![], Some(BadRequest))), // bare CR
        (
            "2;a=\"b\nc\"\r\nxx\r\n0\r\n\r\n",
            (vec![], Some(BadRequest)),
        ),
        ("2;a b\r\nxx\r\n0\r\n\r\n", (vec![], Some(BadRequest))), // no `;` between
        ("2;\x01\r\nxx\r\n0\r\n\r\n", (vec![], Some(BadRequest))), // a control byte
        ("\r\n", (vec![], Some(BadRequest))),                     // no digits
        (";ext\r\n\r\n", (vec![], Some(BadRequest))),             // extension, no digits
        ("2\n", (vec![], Some(BadRequest))),                      // LF alone ends no line
        ("11111111111111111\r\n", (vec![], Some(BadRequest))),    // past u64
        // Trailers are fields: a request after a body that lacks its last
        // CRLF is refused, not eaten as a trailer.
        (
            "0\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n",
            (vec![], Some(BadRequest)),
        ),
        ("0\r\nX: y\n\r\n", (vec![], Some(BadRequest))), // bare LF in a trailer
        // What the grammar allows still frames.
        (
            "2 ; a = b ;c;d=\"q \\\" x\"\r\nxx\r\n0;z\r\nT: v\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n",
            (vec!["/".to_string(), "/next".to_string()], None),
        ),
    ] {
        let stream = format!("{chunked}{body}");
        assert_eq!(frame(&[stream.as_bytes()]), expected, "{body:?}");
    }
    let trailers = format!("{chunked}0\r\n{}\r\n", "T: v\r\n".repeat(MAX_HEAD / 6 + 1));
    assert_eq!(frame(&[trailers.as_bytes()]).1, Some(HeadersTooLarge));

    for text in [
        // Transfer-Encoding present but naming no coding, beside a length.
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\nContent-Length: 2\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ,\r\nContent-Length: 2\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ,\r\n\r\n",
        // Host once, and a valid one.
        "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [zz]\r\n\r\n",
        "GET ftp://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        assert_eq!(head(text), Parsed::Refused(BadRequest), "{text:?}");
    }
    let path = |text: &str| match head(text) {
        Parsed::Head(head, _) => head.path,
        other => panic!("{text:?}: {other:?}"),
    };
    assert_eq!(
        path("GET http://x/json HTTP/1.1\r\nHost: x\r\n\r\n"),
        "/json"
    );
    assert_eq!(path("GET http://x HTTP/1.1\r\nHost: x\r\n\r\n"), "/");
    assert_eq!(path("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"), "/");
    assert_eq!(path("GET / HTTP/1.1\r\nHost: \r\n\r\n"), "/");
    assert_eq!(path("GET / HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n"), "/");
}

/// A connection's last valid Host is not checked again when it repeats,
/// and a different one on the same connection is checked: a valid Host
/// remembered cannot vouch for an invalid one.
#[test]
fn a_remembered_host_vouches_only_for_itself() {
    let mut host = KnownHost::default();
    let mut head = |value: &str| {
        let text = format!("GET / HTTP/1.1\r\nHost: {value}\r\n\r\n");
        super::parse_head(text.as_bytes(), MAX_HEAD, MAX_BODY, &mut host)
    };
    assert!(matches!(head("example.com:80"), Parsed::Head(..)));
    assert!(matches!(head("example.com:80"), Parsed::Head(..)));
    assert_eq!(
        head("example.com:80/x"),
        Parsed::Refused(Refusal::BadRequest)
    );
    assert_eq!(head("a b"), Parsed::Refused(Refusal::BadRequest));
    assert!(matches!(head("example.com:80"), Parsed::Head(..)));
}
