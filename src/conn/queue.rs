//! The bytes a connection could not send yet.
//!
//! A queue of chunks plus an offset into the first. It owns no memory while
//! empty (an idle connection costs nothing here: idle connections stay small), small
//! writes coalesce into the last chunk so a burst of tiny replies is one
//! chunk, and a flush hands up to `MAX_IOVECS` chunks to one `sendmsg`.

use std::collections::VecDeque;
use std::io::IoSlice;

/// Chunks larger than this are not extended by later writes.
const COALESCE_LIMIT: usize = 16 * 1024;
/// Chunks handed to one vectored write.
pub(crate) const MAX_IOVECS: usize = 64;

#[derive(Default, Debug)]
pub(crate) struct WriteQueue {
    chunks: VecDeque<Vec<u8>>,
    /// Bytes of the first chunk already sent.
    offset: usize,
    len: usize,
}

impl WriteQueue {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn push(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        match self.chunks.back_mut() {
            Some(last) if last.len() + data.len() <= COALESCE_LIMIT => last.extend_from_slice(data),
            _ => self.chunks.push_back(data.to_vec()),
        }
    }

    /// Fills `slices` with the unsent bytes, oldest first; returns how many.
    pub(crate) fn slices<'a>(&'a self, slices: &mut [IoSlice<'a>; MAX_IOVECS]) -> usize {
        let mut n = 0;
        for (i, chunk) in self.chunks.iter().take(MAX_IOVECS).enumerate() {
            let start = if i == 0 { self.offset } else { 0 };
            slices[n] = IoSlice::new(&chunk[start..]);
            n += 1;
        }
        n
    }

    /// Forgets `sent` bytes from the front.
    pub(crate) fn advance(&mut self, mut sent: usize) {
        self.len -= sent;
        while sent > 0 {
            let first = self
                .chunks
                .front()
                .expect("advance past the end of the queue");
            let left = first.len() - self.offset;
            if sent < left {
                self.offset += sent;
                return;
            }
            sent -= left;
            self.chunks.pop_front();
            self.offset = 0;
        }
        if self.chunks.is_empty() {
            // Give the memory back: a drained connection is an idle one.
            self.chunks = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(q: &WriteQueue) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let n = q.slices(&mut slices);
        slices[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn pushes_coalesce_and_advance_keeps_order() {
        let mut q = WriteQueue::default();
        q.push(b"hello ");
        q.push(b"world");
        assert_eq!(q.chunks.len(), 1);
        q.advance(3);
        q.push(b"!");
        assert_eq!(contents(&q), b"lo world!");
        assert_eq!(q.len(), 9);
        q.push(&vec![b'x'; COALESCE_LIMIT]);
        q.advance(9);
        assert_eq!(q.len(), COALESCE_LIMIT);
        q.advance(COALESCE_LIMIT);
        assert!(q.is_empty());
        assert_eq!(q.chunks.capacity(), 0, "a drained queue owns no memory");
    }
}
