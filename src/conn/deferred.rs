//! Input a handler handed back with [`Conn::defer`](super::Conn::defer):
//! kept per connection until it is handed to the handler again.
//!
//! Only connections that deferred something have an entry, so an idle
//! connection costs nothing here. The table decides when input is due
//! (nothing else pauses the connection, and its queued output is at or
//! below the low-water mark); this store keeps the bytes and whether the
//! connection was already requeued for them, so a turn hands them back
//! once.

use std::collections::HashMap;

#[derive(Default)]
pub(super) struct Deferred {
    by_key: HashMap<usize, Held>,
}

struct Held {
    bytes: Vec<u8>,
    /// Requeued already: a later wake-up adds no second event.
    woken: bool,
}

impl Deferred {
    /// Keeps `bytes` for `key`, after what it holds already.
    pub(super) fn push(&mut self, key: usize, bytes: &[u8]) {
        let held = self.by_key.entry(key).or_insert_with(|| Held {
            bytes: Vec::new(),
            woken: false,
        });
        held.bytes.extend_from_slice(bytes);
    }

    /// Bytes held for `key`, if any entry.
    pub(super) fn len_of(&self, key: usize) -> Option<usize> {
        self.by_key.get(&key).map(|held| held.bytes.len())
    }

    /// Marks `key` requeued; false if it already was (or holds nothing).
    pub(super) fn wake(&mut self, key: usize) -> bool {
        match self.by_key.get_mut(&key) {
            Some(held) if !held.woken => {
                held.woken = true;
                true
            }
            _ => false,
        }
    }

    /// `key` was requeued but its input is not due yet: the next wake-up
    /// requeues it again.
    pub(super) fn unwake(&mut self, key: usize) {
        if let Some(held) = self.by_key.get_mut(&key) {
            held.woken = false;
        }
    }

    /// Takes what `key` holds.
    pub(super) fn take(&mut self, key: usize) -> Option<Vec<u8>> {
        self.by_key.remove(&key).map(|held| held.bytes)
    }
}
