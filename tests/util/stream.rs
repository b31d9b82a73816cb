//! A seeded byte stream that any reader can regenerate from its offset, so
//! an echo is checked byte by byte as it arrives: loss, duplication,
//! reordering and cross-connection mix-ups all show, with the offset
//! (the soak practice of mio and libuv: seeded streams, verified byte by byte).

/// SplitMix64: tiny, good enough to make streams and sizes.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

/// Byte `offset` of stream `seed`.
pub fn byte_at(seed: u64, offset: u64) -> u8 {
    let mut rng = Rng::new(seed.wrapping_mul(0x1000_0000_01b3) ^ (offset / 8));
    (rng.next_u64() >> ((offset % 8) * 8)) as u8
}

/// Fills `buf` with the stream from `offset`.
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = byte_at(seed, offset + i as u64);
    }
}

/// Checks `got` against the stream at `offset`; panics naming the first
/// wrong offset.
pub fn verify(seed: u64, offset: u64, got: &[u8]) {
    for (i, b) in got.iter().enumerate() {
        let want = byte_at(seed, offset + i as u64);
        assert_eq!(
            *b,
            want,
            "stream {seed}: wrong byte at offset {}",
            offset + i as u64
        );
    }
}
