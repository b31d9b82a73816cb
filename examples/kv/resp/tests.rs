//! The RESP parser on its own: any split of a stream into reads parses to
//! the same requests as the whole stream, and arbitrary bytes never panic,
//! never buffer past the limits, and either parse or are refused. Run with
//! `cargo test --example kv`.

use proptest::prelude::*;

use super::{Parsed, Parser, parse_i64, reply, split_args};

const MAX_REQUEST: usize = 4096;

/// What a connection does with its reads: the requests' arguments, in
/// order, and how the stream ended (`None`: waiting for more bytes).
fn run(reads: &[&[u8]]) -> (Vec<Vec<Vec<u8>>>, Option<String>, usize) {
    let (mut parser, mut buf, mut requests) = (Parser::default(), Vec::new(), Vec::new());
    let mut most_buffered = 0;
    for read in reads {
        buf.extend_from_slice(read);
        most_buffered = most_buffered.max(buf.len());
        loop {
            match parser.parse(&buf, MAX_REQUEST) {
                Parsed::Request => {
                    let args = parser.args(&buf);
                    requests.push((0..args.len()).map(|i| args.get(i).to_vec()).collect());
                    parser.finish();
                }
                Parsed::Incomplete => break,
                Parsed::Error(e) => return (requests, Some(e), most_buffered),
            }
        }
        let start = parser.start();
        buf.drain(..start);
        parser.rebase(start);
    }
    (requests, None, most_buffered)
}

/// Cuts `data` at `cuts` (positions, in any order).
fn split<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(data.len())).collect();
    bounds.extend([0, data.len()]);
    bounds.sort_unstable();
    bounds.windows(2).map(|w| &data[w[0]..w[1]]).collect()
}

/// `args` as a client sends them: an array of bulk strings.
fn command(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    reply::array(&mut out, args.len());
    for arg in args {
        reply::bulk(&mut out, arg);
    }
    out
}

fn requests() -> impl Strategy<Value = Vec<Vec<Vec<u8>>>> {
    let arg = prop::collection::vec(any::<u8>(), 0..40);
    prop::collection::vec(prop::collection::vec(arg, 1..5), 1..8)
}

proptest! {
    /// Whatever the read boundaries, arrays of bulk strings (binary, empty
    /// or holding `\r\n`) parse to the requests sent, in order.
    #[test]
    fn bulk_requests_survive_any_split(
        sent in requests(),
        cuts in prop::collection::vec(0usize..2000, 0..20),
    ) {
        let stream: Vec<u8> = sent
            .iter()
            .flat_map(|args| command(args))
            .collect();
        let (got, error, _) = run(&split(&stream, &cuts));
        prop_assert_eq!(error, None);
        prop_assert_eq!(got, sent);
    }

    /// Inline commands too: words without quotes, split anywhere.
    #[test]
    fn inline_commands_survive_any_split(
        sent in prop::collection::vec(prop::collection::vec("[a-zA-Z0-9:]{1,8}", 1..5), 1..8),
        cuts in prop::collection::vec(0usize..400, 0..20),
    ) {
        let stream: String = sent.iter().map(|words| words.join(" ") + "\r\n").collect();
        let (got, error, _) = run(&split(stream.as_bytes(), &cuts));
        prop_assert_eq!(error, None);
        let sent: Vec<Vec<Vec<u8>>> = sent
            .iter()
            .map(|words| words.iter().map(|w| w.as_bytes().to_vec()).collect())
            .collect();
        prop_assert_eq!(got, sent);
    }

    /// Arbitrary bytes (biased toward RESP's own) never panic, and the
    /// split does not change the outcome.
    #[test]
    fn arbitrary_bytes_parse_or_are_refused_the_same_however_split(
        stream in prop::collection::vec(prop_oneof![
            4 => any::<u8>(),
            1 => Just(b'*'), 1 => Just(b'$'), 1 => Just(b'\r'), 1 => Just(b'\n'),
            1 => Just(b'"'), 1 => Just(b'1'), 1 => Just(b'-'), 1 => Just(b' '),
        ], 0..600),
        cuts in prop::collection::vec(0usize..600, 0..20),
    ) {
        let whole = run(&[&stream]);
        let (got, error, _) = run(&split(&stream, &cuts));
        prop_assert_eq!(&got, &whole.0);
        prop_assert_eq!(&error, &whole.1);
    }
}

#[test]
fn an_unfinished_request_buffers_at_most_the_limit_and_one_line() {
    // Bulk by bulk, a request grows until the limit refuses it.
    let mut stream = b"*1000\r\n".to_vec();
    for _ in 0..1000 {
        stream.extend_from_slice(b"$100\r\n");
        stream.extend(vec![b'x'; 100]);
        stream.extend_from_slice(b"\r\n");
    }
    let reads: Vec<&[u8]> = stream.chunks(7).collect();
    let (got, error, most) = run(&reads);
    assert!(got.is_empty());
    assert_eq!(
        error.as_deref(),
        Some("request over 4096 bytes (--max-request)")
    );
    assert!(most <= MAX_REQUEST + 7, "buffered {most}");
    // A count line with no end is refused past 64 KiB.
    let stream = vec![b'*'; 1]
        .into_iter()
        .chain(vec![b'1'; 70_000])
        .collect::<Vec<_>>();
    let (_, error, _) = run(&stream.chunks(1000).collect::<Vec<_>>());
    assert_eq!(error.as_deref(), Some("too big mbulk count string"));
}

#[test]
fn inline_words_follow_redis_quoting() {
    let mut words = Vec::new();
    split_args(br#"SET "a b" 'c\'d' "\x41\n" plain"#, &mut words).unwrap();
    assert_eq!(words, [&b"SET"[..], b"a b", b"c'd", b"A\n", b"plain"]);
    for unbalanced in [&br#"SET "a"b"#[..], br#""abc"#, b"'abc", br#"'a'b"#] {
        assert!(
            split_args(unbalanced, &mut words).is_err(),
            "{unbalanced:?}"
        );
    }
    assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
    for bad in [
        &b"01"[..],
        b"+1",
        b"-0",
        b" 1",
        b"",
        b"-",
        b"9223372036854775808",
    ] {
        assert_eq!(parse_i64(bad), None, "{bad:?}");
    }
}
