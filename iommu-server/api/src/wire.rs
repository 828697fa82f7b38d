//! Little-endian field access on message bytes: bounds-checked reads that
//! return `None` instead of panicking, and writes into buffers the encoder
//! has already sized. Private; the message layouts name their fields with
//! these.

/// Reads `N` bytes at `at`.
fn bytes<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    let end = at.checked_add(N)?;
    b.get(at..end)?.try_into().ok()
}

pub(crate) fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    bytes(b, at).map(u16::from_le_bytes)
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    bytes(b, at).map(u32::from_le_bytes)
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    bytes(b, at).map(u64::from_le_bytes)
}

/// Whether `b[from..to]` exists and is all zero.
pub(crate) fn zero(b: &[u8], from: usize, to: usize) -> bool {
    b.get(from..to).is_some_and(|s| s.iter().all(|&x| x == 0))
}

/// Writes `v` at `at` if it fits; returns whether it did.
pub(crate) fn put(b: &mut [u8], at: usize, v: &[u8]) -> bool {
    match at.checked_add(v.len()).and_then(|end| b.get_mut(at..end)) {
        Some(dst) => {
            dst.copy_from_slice(v);
            true
        }
        None => false,
    }
}
