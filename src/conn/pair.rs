//! Pairs: two connections of a set joined into one stream, a proxy's
//! client side and upstream side. What one reads is sent on the other
//! (the handler's `on_data` is not called); the rest of a pair's rules
//! live where their events happen, each asking [`Links::partner`]:
//!
//! - **Backpressure per direction** (`Table::queue_changed`): a queue
//!   past the high-water mark pauses the connection whose reading fills
//!   it, the partner, not the connection itself; it reads again once the
//!   queue drains to the low-water mark.
//! - **Half-close passes through** (`Connections::on_read_eof`): the
//!   peer's EOF on one side shuts down the other's write side once its
//!   queue is sent; a side whose write side is shut and whose peer sent
//!   EOF is done, and closes.
//! - **Idle time counts traffic either way**: a forwarded read stamps
//!   both sides.
//! - **Ends travel** (`Table::close`, `Connections::close_doomed`): a
//!   graceful close of one closes the other gracefully (its queue is
//!   sent first); a reset, an error, an abort or a failed connect on one
//!   aborts the other, so its peer reads a reset, never an EOF that looks
//!   like the end of a complete stream.

/// No partner.
const NONE: u32 = u32::MAX;

/// Each connection's partner, by slot key. Empty (and never looked into
/// beyond a length check) in a set that pairs nothing.
#[derive(Default)]
pub(super) struct Links {
    partner: Vec<u32>,
}

impl Links {
    /// The key of `key`'s partner, if it is paired.
    #[inline(always)]
    pub(super) fn partner(&self, key: usize) -> Option<usize> {
        match self.partner.get(key) {
            Some(&p) if p != NONE => Some(p as usize),
            _ => None,
        }
    }

    /// Joins `a` and `b` (neither paired yet, checked by the caller).
    pub(super) fn link(&mut self, a: usize, b: usize) {
        let len = self.partner.len().max(a + 1).max(b + 1);
        self.partner.resize(len, NONE);
        self.partner[a] = b as u32;
        self.partner[b] = a as u32;
    }

    /// Separates `key` from its partner; the partner, if it had one.
    pub(super) fn unlink(&mut self, key: usize) -> Option<usize> {
        let partner = self.partner(key)?;
        self.partner[key] = NONE;
        self.partner[partner] = NONE;
        Some(partner)
    }
}

#[cfg(test)]
mod tests {
    use super::Links;

    #[test]
    fn a_link_is_both_ways_and_unlinks_both_ways() {
        let mut links = Links::default();
        assert_eq!(links.partner(0), None);
        links.link(3, 1);
        assert_eq!((links.partner(3), links.partner(1)), (Some(1), Some(3)));
        assert_eq!(links.partner(2), None);
        assert_eq!(links.unlink(1), Some(3));
        assert_eq!((links.partner(3), links.partner(1)), (None, None));
        assert_eq!(links.unlink(3), None);
    }
}
