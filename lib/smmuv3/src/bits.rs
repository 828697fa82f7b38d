//! Bit-field helpers shared by every layout in the crate: extract and insert
//! an inclusive `[hi:lo]` field of a 64-bit word. Private; layouts name their
//! fields with these.

/// Mask of `width` low bits.
pub(crate) const fn mask(width: u32) -> u64 {
    if width >= 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    }
}

/// Field `[hi:lo]` of `word`.
pub(crate) const fn get(word: u64, hi: u32, lo: u32) -> u64 {
    (word >> lo) & mask(hi - lo + 1)
}

/// `word` with field `[hi:lo]` replaced by `value` (truncated to the field).
pub(crate) const fn set(word: u64, hi: u32, lo: u32, value: u64) -> u64 {
    let m = mask(hi - lo + 1) << lo;
    (word & !m) | ((value << lo) & m)
}

/// Bit `n` of `word`.
pub(crate) const fn bit(word: u64, n: u32) -> bool {
    (word >> n) & 1 == 1
}

/// `word` with bit `n` set to `on`.
pub(crate) const fn set_bit(word: u64, n: u32, on: bool) -> u64 {
    if on {
        word | (1 << n)
    } else {
        word & !(1 << n)
    }
}

/// Whether `addr` has only bits `[hi:lo]` possibly set (it fits an address
/// field `ADDR[hi:lo]` with the bits below `lo` zero).
pub(crate) const fn fits_addr(addr: u64, hi: u32, lo: u32) -> bool {
    addr & !(mask(hi - lo + 1) << lo) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_round_trip() {
        let w = set(0, 63, 48, 0xbeef);
        assert_eq!(get(w, 63, 48), 0xbeef);
        assert_eq!(set(u64::MAX, 7, 0, 0), u64::MAX << 8);
        assert!(bit(set_bit(0, 63, true), 63));
        assert!(fits_addr(0x1000, 55, 12));
        assert!(!fits_addr(0x1001, 55, 12));
        assert!(!fits_addr(1 << 56, 55, 12));
        assert_eq!(mask(64), u64::MAX);
    }
}
