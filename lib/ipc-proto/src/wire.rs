//! Little-endian field access on message bytes: bounds-checked reads that
//! return `None` instead of panicking, and writes into buffers the encoder
//! has already sized. The field and entry layouts of every protocol name
//! their bytes with these.

/// Reads `N` bytes at `at`.
fn bytes<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    let end = at.checked_add(N)?;
    b.get(at..end)?.try_into().ok()
}

/// The little-endian `u16` at `at`.
pub fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    bytes(b, at).map(u16::from_le_bytes)
}

/// The little-endian `u32` at `at`.
pub fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    bytes(b, at).map(u32::from_le_bytes)
}

/// The little-endian `u64` at `at`.
pub fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    bytes(b, at).map(u64::from_le_bytes)
}

/// Whether `b[from..to]` exists and is all zero.
pub fn zero(b: &[u8], from: usize, to: usize) -> bool {
    b.get(from..to).is_some_and(|s| {
        // Eight bytes at a time, then the rest: as the last eight bytes
        // (overlapping the words) when there are that many.
        let (words, rest) = s.as_chunks::<8>();
        words.iter().all(|w| u64::from_ne_bytes(*w) == 0)
            && match s.last_chunk::<8>() {
                Some(last) if !rest.is_empty() => u64::from_ne_bytes(*last) == 0,
                _ => rest.iter().all(|&x| x == 0),
            }
    })
}

/// Writes `v` at `at` if it fits; returns whether it did.
pub fn put(b: &mut [u8], at: usize, v: &[u8]) -> bool {
    match at.checked_add(v.len()).and_then(|end| b.get_mut(at..end)) {
        Some(dst) => {
            dst.copy_from_slice(v);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::zero;

    #[test]
    fn zero_sees_every_nonzero_byte() {
        let mut b = [0u8; 40];
        for from in 0..20 {
            for to in from..=40 {
                assert!(zero(&b, from, to));
                for at in 0..40 {
                    b[at] = 0x80;
                    assert_eq!(zero(&b, from, to), !(from..to).contains(&at));
                    b[at] = 0;
                }
            }
        }
        assert!(!zero(&b, 8, 41));
        assert!(!zero(&b, 9, 8));
    }
}
