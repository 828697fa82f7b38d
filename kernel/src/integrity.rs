//! A checksum of the kernel's code and read-only data, taken at boot and
//! recomputed on demand: what the isolation demos use to show that DMA
//! aimed at the kernel image changed nothing. Reads the image through its
//! own (read-only) mapping; never writes it.

use core::sync::atomic::{AtomicU64, Ordering};

static AT_BOOT: AtomicU64 = AtomicU64::new(0);

/// FNV-1a over the image from its start to the end of read-only data,
/// 8 bytes at a time.
fn sum() -> u64 {
    let l = crate::mm::image_layout();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    crate::mm::for_each_image_word(l.start, l.rodata_end, |w| {
        h ^= w;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    });
    h
}

/// Takes the boot-time checksum.
pub fn record() {
    AT_BOOT.store(sum(), Ordering::Relaxed);
}

/// (unchanged since boot, checksum now).
pub fn check() -> (bool, u64) {
    let now = sum();
    (now == AT_BOOT.load(Ordering::Relaxed), now)
}
