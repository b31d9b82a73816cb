//! The cork: what one handler call writes to its own connection, held so
//! that the call's replies leave together.
//!
//! The first write a call makes to its own connection is sent at once (a
//! lone reply leaves with no delay and no copy); later ones are held here
//! and go out in one `send` when the call returns, so a thousand replies
//! to a thousand pipelined requests read at once cost two `send`s, not a
//! thousand. The table does the sending (`Table::uncork`); this type only
//! keeps the bytes and whose they are.
//!
//! The invariant: while holding, the corked connection may write and has
//! nothing queued (its first write was sent whole). Whatever ends that (a
//! close, a shutdown, an abort, a send that queues) sends or drops what is
//! held first and ends the cork.

/// Bytes one handler call's writes to itself may collect before they are
/// sent (a larger write sends what is held, then itself).
const CAPACITY: usize = 64 * 1024;

/// No handler call is running.
const NONE: usize = usize::MAX;

/// What became of a write by the corked call.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub(super) enum Hold {
    /// The call's first write: send it now.
    First,
    /// Held, to go out when the call returns.
    Held,
    /// It does not fit: send what is held, then it.
    Full,
}

pub(super) struct Cork {
    /// The connection whose handler call is running (`NONE` between
    /// calls).
    key: usize,
    /// The call made its first write: later ones are held.
    holding: bool,
    /// What the call wrote to its own connection so far: `buf[..len]`.
    buf: Box<[u8]>,
    len: usize,
}

impl Cork {
    pub(super) fn new() -> Cork {
        Cork {
            key: NONE,
            holding: false,
            buf: vec![0; CAPACITY].into_boxed_slice(),
            len: 0,
        }
    }

    /// A handler call on `key` begins.
    #[inline(always)]
    pub(super) fn begin(&mut self, key: usize) {
        self.key = key;
        self.holding = false;
    }

    /// Whose call is corked (meaningful while bytes are held).
    #[inline(always)]
    pub(super) fn corked(&self) -> usize {
        self.key
    }

    #[inline(always)]
    pub(super) fn is_for(&self, key: usize) -> bool {
        self.key == key
    }

    /// A write by the corked call.
    #[inline(always)]
    pub(super) fn hold(&mut self, data: &[u8]) -> Hold {
        if !self.holding {
            self.holding = true;
            return Hold::First;
        }
        let end = self.len + data.len();
        match self.buf.get_mut(self.len..end) {
            Some(room) => {
                room.copy_from_slice(data);
                self.len = end;
                Hold::Held
            }
            None => Hold::Full,
        }
    }

    /// True while the call's writes are being held.
    pub(super) fn is_holding(&self) -> bool {
        self.holding
    }

    /// Holds the call's later writes again (after an early send that left
    /// nothing queued).
    pub(super) fn resume(&mut self, key: usize) {
        self.key = key;
        self.holding = true;
    }

    /// Bytes held.
    #[inline(always)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Empties the hold: how many bytes it had, which stay readable as
    /// [`bytes`](Cork::bytes) until the next write.
    #[inline(always)]
    pub(super) fn take(&mut self) -> usize {
        std::mem::take(&mut self.len)
    }

    /// The first `len` bytes of the hold (what [`take`](Cork::take) just
    /// handed over).
    #[inline(always)]
    pub(super) fn bytes(&self, len: usize) -> &[u8] {
        &self.buf[..len]
    }

    /// Lends the buffer out (the cork holds nothing meanwhile), so the
    /// bytes [`take`](Cork::take) handed over can be queued without a copy
    /// of their own; [`give_back`](Cork::give_back) returns it.
    pub(super) fn lend(&mut self) -> Box<[u8]> {
        std::mem::take(&mut self.buf)
    }

    /// Returns the buffer [`lend`](Cork::lend) took.
    pub(super) fn give_back(&mut self, buf: Box<[u8]>) {
        self.buf = buf;
    }

    /// The cork ends: later writes are sent at once.
    #[inline(always)]
    pub(super) fn end(&mut self) {
        self.key = NONE;
    }

    /// The call ended by an abort or a panic: what it held is dropped.
    pub(super) fn discard(&mut self) {
        self.key = NONE;
        self.len = 0;
    }
}
