//! A user's own [`Source`]: its tokens come from the factory the reactor
//! hands it, and `Core::set_interest` changes an fd only under the token
//! that holds it. No safe code can arm, re-arm or remove another
//! registration's fd, or route an fd's events to a registration that never
//! had it.

mod util;

use std::cell::Cell;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use edgeloop::conn::{AcceptOptions, Conn, ConnOptions, Connections, Handler};
use edgeloop::{
    Batch, Core, Interest, PostAction, Reactor, Ready, Source, Token, TokenFactory, Trigger,
};
use util::pair;

/// A source that records what it was told and arms what the test asks.
#[derive(Default)]
struct Recorder {
    tokens: Option<TokenFactory>,
    heard: Vec<(Token, Ready)>,
}

impl Recorder {
    fn token(&self, key: u32) -> Token {
        self.tokens.expect("installed").token(key, 1)
    }
}

impl Source<()> for Recorder {
    fn installed(&mut self, tokens: TokenFactory) {
        self.tokens = Some(tokens);
    }
    fn dispatch(&mut self, _: &mut Core<()>, batch: &mut Batch<'_>) {
        while let Some(event) = batch.next_event() {
            self.heard.push((event.token, event.ready));
            batch.record(true);
        }
    }
}

fn turn(reactor: &mut Reactor) {
    reactor.run_once(Some(Duration::from_millis(20))).unwrap();
}

/// A plain registration of `stream` (shared, so the test keeps a copy of
/// its fd) that counts its calls.
fn plain(reactor: &mut Reactor, stream: &Rc<UnixStream>, calls: &Rc<Cell<u32>>) -> Token {
    let calls = calls.clone();
    reactor
        .core_mut()
        .register(
            stream.clone(),
            Interest::READABLE,
            Trigger::Level,
            move |_, _, _| {
                calls.set(calls.get() + 1);
                PostAction::Continue
            },
        )
        .unwrap()
}

#[test]
fn a_sources_tokens_carry_its_owner_and_its_events_come_back_to_it() {
    let mut reactor = Reactor::new().unwrap();
    let id = reactor.install(Recorder::default()).unwrap();
    let (ours, mut theirs) = pair();
    let (recorder, core) = reactor.source_mut(id);
    let token = recorder.token(9);
    assert_eq!((token.owner(), token.key()), (id.owner(), 9));
    core.set_interest(
        ours.as_fd(),
        token,
        Interest::NONE,
        Interest::READABLE,
        Trigger::Level,
    )
    .unwrap();
    theirs.write_all(b"x").unwrap();
    turn(&mut reactor);
    assert_eq!(reactor.source(id).heard, [(token, Ready::READABLE)]);
    // Taken out, the fd is free: a plain registration may have it.
    let (_, core) = reactor.source_mut(id);
    core.set_interest(
        ours.as_fd(),
        token,
        Interest::READABLE,
        Interest::NONE,
        Trigger::Level,
    )
    .unwrap();
    reactor
        .core_mut()
        .register(ours, Interest::READABLE, Trigger::Level, util::ignore())
        .unwrap();
}

#[test]
fn set_interest_refuses_a_plain_registrations_token() {
    // The plain registration's token, which its callback is handed: armed
    // on a foreign fd, its callback would run for data it never had.
    let mut reactor = Reactor::new().unwrap();
    let (mine, _peer) = pair();
    let mine = Rc::new(mine);
    let calls = Rc::new(Cell::new(0));
    let token = plain(&mut reactor, &mine, &calls);
    let (foreign, mut foreign_peer) = pair();
    let err = reactor
        .core_mut()
        .set_interest(
            foreign.as_fd(),
            token,
            Interest::NONE,
            Interest::READABLE,
            Trigger::Level,
        )
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("Core::modify"), "{err}");
    foreign_peer.write_all(b"not yours").unwrap();
    for _ in 0..3 {
        turn(&mut reactor);
    }
    assert_eq!(calls.get(), 0, "the callback ran for another fd's data");
}

#[test]
fn a_source_cannot_take_rearm_or_remove_a_plain_registrations_fd() {
    let mut reactor = Reactor::new().unwrap();
    let id = reactor.install(Recorder::default()).unwrap();
    let (shared, mut peer) = pair();
    let shared = Rc::new(shared);
    let calls = Rc::new(Cell::new(0));
    let plain_token = plain(&mut reactor, &shared, &calls);
    let (recorder, core) = reactor.source_mut(id);
    let token = recorder.token(1);
    let fd = shared.as_fd();
    // Add: the fd is held by the plain registration.
    let err = core
        .set_interest(fd, token, Interest::NONE, Interest::BOTH, Trigger::Edge)
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
    assert!(
        err.to_string().contains(&format!("{plain_token:?}")),
        "{err}"
    );
    // Modify or delete, claiming it is armed: held by another token.
    for to in [Interest::BOTH, Interest::NONE] {
        let err = core
            .set_interest(fd, token, Interest::READABLE, to, Trigger::Level)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{to:?}: {err}");
    }
    // The plain registration is untouched: it hears its data, the source
    // hears nothing.
    peer.write_all(b"x").unwrap();
    turn(&mut reactor);
    assert_eq!(calls.get(), 1);
    assert!(reactor.source(id).heard.is_empty());
}

#[test]
fn a_sources_fd_is_refused_to_others_until_it_takes_it_out() {
    let mut reactor = Reactor::new().unwrap();
    let a = reactor.install(Recorder::default()).unwrap();
    let b = reactor.install(Recorder::default()).unwrap();
    let (ours, _peer) = pair();
    let ours = Rc::new(ours);
    let (recorder, core) = reactor.source_mut(a);
    let token_a = recorder.token(0);
    core.set_interest(
        ours.as_fd(),
        token_a,
        Interest::NONE,
        Interest::READABLE,
        Trigger::Level,
    )
    .unwrap();
    // Another source: neither an add nor a change.
    let (recorder, core) = reactor.source_mut(b);
    let token_b = recorder.token(0);
    let add = core.set_interest(
        ours.as_fd(),
        token_b,
        Interest::NONE,
        Interest::READABLE,
        Trigger::Level,
    );
    assert_eq!(add.unwrap_err().kind(), io::ErrorKind::AlreadyExists);
    let change = core.set_interest(
        ours.as_fd(),
        token_b,
        Interest::READABLE,
        Interest::NONE,
        Trigger::Level,
    );
    assert_eq!(change.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    // A plain registration: AlreadyExists, naming the holder.
    let err = reactor
        .core_mut()
        .register(
            ours.clone(),
            Interest::READABLE,
            Trigger::Level,
            util::ignore(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
    assert!(err.to_string().contains(&format!("{token_a:?}")), "{err}");
}

#[test]
fn a_change_to_an_fd_nobody_armed_is_not_found() {
    let mut reactor = Reactor::new().unwrap();
    let id = reactor.install(Recorder::default()).unwrap();
    let (ours, _peer) = pair();
    let (recorder, core) = reactor.source_mut(id);
    let token = recorder.token(0);
    let err = core
        .set_interest(
            ours.as_fd(),
            token,
            Interest::READABLE,
            Interest::BOTH,
            Trigger::Level,
        )
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    // The errno the kernel would have given, kept (the crate's promise).
    assert_eq!(edgeloop::os_error(&err), Some(nix::libc::ENOENT), "{err}");
}

struct Nothing;
impl Handler for Nothing {
    type Session = ();
    fn on_data(&mut self, _: &mut Conn<'_, Self>, _: &[u8]) {}
}

#[test]
fn a_connection_set_arms_nothing_before_it_is_installed() {
    // Its tokens would carry owner 0, the plain registrations': its
    // listener's events would go to the plain table and be dropped.
    let mut reactor = Reactor::new().unwrap();
    let mut set = Connections::new(Nothing, ConnOptions::default()).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = set
        .listen(
            reactor.core_mut(),
            listener.into(),
            AcceptOptions::default(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("Reactor::install"), "{err}");
}

#[test]
fn a_reactor_holds_at_most_254_sources() {
    let mut reactor = Reactor::new().unwrap();
    for _ in 0..254 {
        reactor.install(Recorder::default()).unwrap();
    }
    let err = reactor.install(Recorder::default()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
}
