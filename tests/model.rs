//! Model-based tests: random scripts
//! of register / modify / deregister / peer write / peer close / read / turn
//! / timer add / timer cancel / wake, run against the real reactor on real
//! Unix socket pairs (a peer *reset* cannot be made on those; the TCP reset
//! storm and the soak cover it)
//! and against a small reference model of what each trigger must report.
//! The callback traces must agree: no event for a dead token, every
//! level-triggered ready fd reported on every turn, edge-triggered reported
//! once per edge, oneshot once per arm, timers in order and never early.
//! proptest shrinks a failing script to a minimal one; those become named
//! regression tests below.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use edgeloop::{Backend, Interest, PostAction, TimerId, Token, Trigger};
use proptest::prelude::*;

mod util;

const PAIRS: usize = 4;

#[derive(Clone, Debug)]
enum Op {
    Register(usize, Trigger),
    Modify(usize, Trigger),
    Deregister(usize),
    PeerWrite(usize, usize),
    PeerClose(usize),
    Read(usize, usize),
    Turn,
    TimerAdd(u64),
    TimerCancel(usize),
    Wake,
}

fn trigger() -> impl Strategy<Value = Trigger> {
    prop_oneof![
        Just(Trigger::Level),
        Just(Trigger::Edge),
        Just(Trigger::Oneshot)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let i = 0..PAIRS;
    prop_oneof![
        2 => (i.clone(), trigger()).prop_map(|(i, t)| Op::Register(i, t)),
        1 => (i.clone(), trigger()).prop_map(|(i, t)| Op::Modify(i, t)),
        1 => i.clone().prop_map(Op::Deregister),
        2 => (i.clone(), 1usize..20).prop_map(|(i, n)| Op::PeerWrite(i, n)),
        1 => i.clone().prop_map(Op::PeerClose),
        2 => (i.clone(), 1usize..20).prop_map(|(i, n)| Op::Read(i, n)),
        3 => Just(Op::Turn),
        1 => (0u64..3).prop_map(Op::TimerAdd),
        1 => (0usize..8).prop_map(Op::TimerCancel),
        1 => Just(Op::Wake),
    ]
}

/// What the model knows about one socket pair.
#[derive(Default, Clone, Debug)]
struct Model {
    registered: Option<Trigger>,
    pending: usize,
    /// The peer closed: reads return EOF, and the fd stays ready.
    eof: bool,
    /// Edge: a new edge since the last report.
    edge: bool,
    /// Oneshot: armed.
    armed: bool,
}

impl Model {
    fn readable(&self) -> bool {
        self.pending > 0 || self.eof
    }
}

struct Pair {
    /// Shared: the reactor owns one handle per registration, the script
    /// reads through another.
    ours: Rc<UnixStream>,
    theirs: Option<UnixStream>,
    token: Option<Token>,
}

fn run_script(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut reactor = util::reactor(Backend::Epoll);
    let reported: Rc<RefCell<Vec<usize>>> = Rc::default();
    let fired: Rc<RefCell<Vec<(usize, Instant, Instant)>>> = Rc::default();
    let mut pairs: Vec<Pair> = (0..PAIRS)
        .map(|_| {
            let (ours, theirs) = UnixStream::pair().unwrap();
            ours.set_nonblocking(true).unwrap();
            Pair {
                ours: Rc::new(ours),
                theirs: Some(theirs),
                token: None,
            }
        })
        .collect();
    let mut model = vec![Model::default(); PAIRS];
    // id, deadline, cancelled, when it was set
    let mut timers: Vec<(TimerId, Instant, bool, Instant)> = Vec::new();
    let mut buf = [0u8; 64];
    for op in ops {
        match *op {
            Op::Register(i, t) => {
                let r = reported.clone();
                let result = reactor.core_mut().register(
                    pairs[i].ours.clone(),
                    Interest::READABLE,
                    t,
                    move |_, _, _| {
                        r.borrow_mut().push(i);
                        PostAction::Continue
                    },
                );
                match model[i].registered {
                    Some(_) => {
                        prop_assert!(result.is_err(), "registering a registered fd must fail")
                    }
                    None => {
                        pairs[i].token = Some(result.unwrap());
                        model[i] = Model {
                            registered: Some(t),
                            edge: model[i].readable(),
                            armed: true,
                            ..model[i]
                        };
                    }
                }
            }
            Op::Modify(i, t) => match (pairs[i].token, model[i].registered) {
                (Some(token), Some(_)) => {
                    reactor
                        .core_mut()
                        .modify(token, Interest::READABLE, t)
                        .unwrap();
                    model[i].registered = Some(t);
                    model[i].edge = model[i].readable(); // MOD re-checks readiness (K2)
                    model[i].armed = true;
                }
                _ => {
                    let refused = pairs[i].token.is_none_or(|t| {
                        reactor
                            .core_mut()
                            .modify(t, Interest::READABLE, Trigger::Level)
                            .is_err()
                    });
                    prop_assert!(refused, "modifying a dead token must fail");
                }
            },
            Op::Deregister(i) => {
                if let Some(token) = pairs[i].token.take() {
                    reactor.core_mut().deregister(token).unwrap();
                    prop_assert!(
                        reactor.core_mut().deregister(token).is_err(),
                        "a dead token stays dead"
                    );
                    model[i].registered = None;
                }
            }
            Op::PeerWrite(i, n) => {
                if let Some(theirs) = pairs[i].theirs.as_mut() {
                    theirs.write_all(&vec![1u8; n]).unwrap();
                    model[i].pending += n;
                    model[i].edge = true;
                }
            }
            Op::PeerClose(i) => {
                if pairs[i].theirs.take().is_some() {
                    model[i].eof = true;
                    model[i].edge = true; // the close is a change: a new edge
                }
            }
            Op::Read(i, n) => {
                let got = match (&*pairs[i].ours).read(&mut buf[..n]) {
                    Ok(k) => k,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
                    Err(e) => return Err(TestCaseError::fail(e.to_string())),
                };
                prop_assert_eq!(got, n.min(model[i].pending));
                model[i].pending -= got;
            }
            Op::TimerAdd(ms) => {
                let deadline = Instant::now() + Duration::from_millis(ms);
                let f = fired.clone();
                let index = timers.len();
                let id = reactor.core_mut().call_at(deadline, move |_| {
                    f.borrow_mut().push((index, deadline, Instant::now()))
                });
                timers.push((id, deadline, false, Instant::now()));
            }
            Op::TimerCancel(k) => {
                if let Some((id, _, cancelled, _)) = timers.get_mut(k) {
                    let already_fired = fired.borrow().iter().any(|(i, _, _)| *i == k);
                    prop_assert_eq!(
                        reactor.core_mut().cancel(*id),
                        !*cancelled && !already_fired
                    );
                    *cancelled = true;
                }
            }
            Op::Wake => reactor.core().handle().wake(),
            Op::Turn => {
                reactor.run_once(Some(Duration::ZERO)).unwrap();
                let mut got = std::mem::take(&mut *reported.borrow_mut());
                got.sort_unstable();
                let mut want = Vec::new();
                for (i, m) in model.iter_mut().enumerate() {
                    let report = match m.registered {
                        Some(Trigger::Level) => m.readable(),
                        Some(Trigger::Edge) => m.edge && m.readable(),
                        Some(Trigger::Oneshot) => m.armed && m.readable(),
                        Some(other) => unreachable!("the model knows no {other:?}"),
                        None => false,
                    };
                    if report {
                        want.push(i);
                    }
                    match m.registered {
                        Some(Trigger::Edge) => m.edge = false,
                        Some(Trigger::Oneshot) if report => m.armed = false,
                        _ => {}
                    }
                }
                prop_assert_eq!(got, want, "which registrations were called in this turn");
            }
        }
    }
    // Let every live timer come due; each fires once, never early, in
    // deadline order (insertion order on ties), cancelled ones never.
    let deadline = Instant::now() + Duration::from_secs(2);
    while reactor.core().timers() > 0 && Instant::now() < deadline {
        reactor.run_once(Some(Duration::from_millis(5))).unwrap();
    }
    let fired = fired.borrow();
    for (index, due, at) in fired.iter() {
        prop_assert!(at >= due, "timer {} fired early", index);
        prop_assert!(!timers[*index].2 || fired.iter().filter(|f| f.0 == *index).count() == 1);
    }
    let mut fired_ids: Vec<usize> = fired.iter().map(|f| f.0).collect();
    fired_ids.sort_unstable();
    fired_ids.dedup();
    prop_assert_eq!(fired_ids.len(), fired.len(), "a timer fired twice");
    for (k, (_, _, cancelled, _)) in timers.iter().enumerate() {
        let did_fire = fired.iter().any(|f| f.0 == k);
        if !*cancelled {
            prop_assert!(did_fire, "timer {} never fired", k);
        }
    }
    // Exactly (deadline, insertion) order, unless the later one was set
    // only after the earlier one fired.
    for pair in fired.windows(2) {
        let ((a, da, at_a), (b, db, _)) = (pair[0], pair[1]);
        let in_order = da < db || (da == db && a < b);
        let set_after = timers[b].3 >= at_a;
        prop_assert!(in_order || set_after, "timers {a} then {b}: out of order");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_reactor_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        run_script(&ops)?;
    }
}
