//! Identify data structures: the controller's [NVMe-2.0 §5.17.2.1, Figure
//! "Identify – Identify Controller Data Structure"] and an NVM namespace's
//! [NVM-CS-1.0 §4.1.5.1, Figure "Identify Namespace Data Structure"].
//! Owns their byte layouts; decoding is total (short or odd data decodes to
//! zeros or `None`, never a panic), because the controller wrote it.

/// Bytes in an Identify data structure.
pub const IDENTIFY_BYTES: usize = 4096;

fn le(b: &[u8], at: usize, n: usize) -> u64 {
    let mut v = 0u64;
    for i in (0..n).rev() {
        v = (v << 8) | u64::from(b.get(at + i).copied().unwrap_or(0));
    }
    v
}

/// A fixed-size ASCII field, space padded [NVMe-2.0 §5.17.2.1, SN/MN/FR].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Text<const N: usize>([u8; N]);

impl<const N: usize> Text<N> {
    fn at(b: &[u8], at: usize) -> Self {
        let mut t = [b' '; N];
        for (i, c) in t.iter_mut().enumerate() {
            if let Some(&v) = b.get(at + i) {
                *c = v;
            }
        }
        Text(t)
    }

    /// The text without trailing spaces or NULs; bytes outside printable
    /// ASCII make it `"?"`.
    pub fn as_str(&self) -> &str {
        let end = self
            .0
            .iter()
            .rposition(|&c| c != b' ' && c != 0)
            .map_or(0, |i| i + 1);
        let t = &self.0[..end];
        if t.iter().all(|c| (0x20..0x7f).contains(c)) {
            core::str::from_utf8(t).unwrap_or("?")
        } else {
            "?"
        }
    }
}

impl<const N: usize> core::fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// The fields of Identify Controller this driver uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Controller {
    /// VID (bytes 1:0): PCI vendor ID.
    pub vid: u16,
    /// SN (bytes 23:4).
    pub serial: Text<20>,
    /// MN (bytes 63:24).
    pub model: Text<40>,
    /// FR (bytes 71:64).
    pub firmware: Text<8>,
    /// MDTS (byte 77): largest transfer is `2^MDTS` minimum memory pages; 0
    /// means no limit.
    pub mdts: u8,
    /// CNTLID (bytes 79:78).
    pub cntlid: u16,
    /// ACL (byte 258): Abort Command Limit, 0's based: the controller
    /// takes up to `acl + 1` Abort commands at once.
    pub acl: u8,
    /// SQES (byte 512): bits 3:0 required, 7:4 largest SQ entry size (log2).
    pub sqes: u8,
    /// CQES (byte 513): bits 3:0 required, 7:4 largest CQ entry size (log2).
    pub cqes: u8,
    /// NN (bytes 519:516): largest namespace ID.
    pub nn: u32,
    /// VWC (byte 525) bit 0: a volatile write cache is present.
    pub volatile_write_cache: bool,
}

impl Controller {
    /// Decodes the structure (at most [`IDENTIFY_BYTES`] of `b` matter).
    pub fn decode(b: &[u8]) -> Controller {
        Controller {
            vid: le(b, 0, 2) as u16,
            serial: Text::at(b, 4),
            model: Text::at(b, 24),
            firmware: Text::at(b, 64),
            mdts: le(b, 77, 1) as u8,
            cntlid: le(b, 78, 2) as u16,
            acl: le(b, 258, 1) as u8,
            sqes: le(b, 512, 1) as u8,
            cqes: le(b, 513, 1) as u8,
            nn: le(b, 516, 4) as u32,
            volatile_write_cache: le(b, 525, 1) & 1 != 0,
        }
    }

    /// Largest transfer in bytes for a controller whose minimum memory page
    /// size (CAP.MPSMIN) is `min_page`: `None` when unlimited (MDTS 0) or
    /// beyond 64 bits.
    pub fn max_transfer(&self, min_page: u64) -> Option<u64> {
        if self.mdts == 0 {
            return None;
        }
        1u64.checked_shl(u32::from(self.mdts))
            .and_then(|pages| pages.checked_mul(min_page))
    }

    /// Whether the controller accepts `sq_shift`/`cq_shift`-sized entries.
    pub fn entry_sizes_ok(&self, sq_shift: u8, cq_shift: u8) -> bool {
        let within = |v: u8, s: u8| (v & 0xf) <= s && s <= (v >> 4);
        within(self.sqes, sq_shift) && within(self.cqes, cq_shift)
    }
}

/// One LBA Format [NVM-CS-1.0 §4.1.5.1, Figure "LBA Format Data Structure"].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LbaFormat {
    /// MS: metadata bytes per block.
    pub metadata: u16,
    /// LBADS: log2 of the block size (at least 9 when in use).
    pub lbads: u8,
    /// RP: relative performance.
    pub relative_performance: u8,
}

/// The fields of Identify Namespace (NVM) this driver uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Namespace {
    /// NSZE (bytes 7:0): size in logical blocks.
    pub nsze: u64,
    /// NCAP (bytes 15:8): capacity in logical blocks.
    pub ncap: u64,
    /// NUSE (bytes 23:16): blocks allocated.
    pub nuse: u64,
    /// NLBAF (byte 25): number of LBA formats, 0's based.
    pub nlbaf: u8,
    /// FLBAS (byte 26): the format in use (bits 3:0 low, 6:5 high part of
    /// the index), bit 4 metadata at the end of the data.
    pub flbas: u8,
    /// The format FLBAS selects (LBAF0 at byte 128, 4 bytes each).
    pub format: LbaFormat,
}

impl Namespace {
    /// Decodes the structure.
    pub fn decode(b: &[u8]) -> Namespace {
        let flbas = le(b, 26, 1) as u8;
        let index = usize::from(flbas & 0xf) | (usize::from((flbas >> 5) & 0b11) << 4);
        let f = le(b, 128 + 4 * index, 4) as u32;
        Namespace {
            nsze: le(b, 0, 8),
            ncap: le(b, 8, 8),
            nuse: le(b, 16, 8),
            nlbaf: le(b, 25, 1) as u8,
            flbas,
            format: LbaFormat {
                metadata: f as u16,
                lbads: (f >> 16) as u8,
                relative_performance: ((f >> 24) & 0b11) as u8,
            },
        }
    }

    /// Whether the namespace exists (an inactive NSID reads as zeros).
    pub fn is_active(&self) -> bool {
        self.nsze != 0
    }

    /// The logical block size in bytes, or `None` for a format this driver
    /// cannot use: LBADS below 9 (512 B) or above 16, an index beyond
    /// NLBAF, or metadata (separate or extended).
    pub fn block_size(&self) -> Option<u32> {
        let index = (self.flbas & 0xf) | (((self.flbas >> 5) & 0b11) << 4);
        if index > self.nlbaf || self.format.metadata != 0 {
            return None;
        }
        (9..=16)
            .contains(&self.format.lbads)
            .then(|| 1u32 << self.format.lbads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn controller_page() -> Vec<u8> {
        let mut b = vec![0u8; IDENTIFY_BYTES];
        b[0..2].copy_from_slice(&0x1b36u16.to_le_bytes());
        b[4..24].copy_from_slice(b"iommu-nvme0         ");
        b[24..64].copy_from_slice(b"QEMU NVMe Ctrl                          ");
        b[64..72].copy_from_slice(b"7.2.22  ");
        b[77] = 7;
        b[78..80].copy_from_slice(&0u16.to_le_bytes());
        b[512] = 0x66;
        b[513] = 0x44;
        b[516..520].copy_from_slice(&256u32.to_le_bytes());
        b[525] = 1;
        b
    }

    #[test]
    fn controller_decodes() {
        let c = Controller::decode(&controller_page());
        assert_eq!(c.vid, 0x1b36);
        assert_eq!(c.serial.as_str(), "iommu-nvme0");
        assert_eq!(c.model.as_str(), "QEMU NVMe Ctrl");
        assert_eq!(c.firmware.as_str(), "7.2.22");
        assert_eq!(c.mdts, 7);
        assert_eq!(c.max_transfer(4096), Some(512 * 1024));
        assert_eq!(c.nn, 256);
        assert!(c.volatile_write_cache);
        assert!(c.entry_sizes_ok(6, 4));
        assert!(!c.entry_sizes_ok(7, 4));
        let unlimited = Controller { mdts: 0, ..c };
        assert_eq!(unlimited.max_transfer(4096), None);
        let huge = Controller { mdts: 60, ..c };
        assert_eq!(huge.max_transfer(4096), None);
        let bad = Controller::decode(&[0xff; 30]);
        assert_eq!(bad.serial.as_str(), "?");
    }

    #[test]
    fn namespace_decodes() {
        let mut b = vec![0u8; IDENTIFY_BYTES];
        b[0..8].copy_from_slice(&131072u64.to_le_bytes());
        b[8..16].copy_from_slice(&131072u64.to_le_bytes());
        b[25] = 1; // two formats
        b[26] = 1; // the second
        b[128..132].copy_from_slice(&(9u32 << 16).to_le_bytes());
        b[132..136].copy_from_slice(&(12u32 << 16).to_le_bytes());
        let ns = Namespace::decode(&b);
        assert!(ns.is_active());
        assert_eq!(ns.nsze, 131072);
        assert_eq!(ns.ncap, 131072);
        assert_eq!(ns.block_size(), Some(4096));
        b[26] = 0;
        assert_eq!(Namespace::decode(&b).block_size(), Some(512));
        b[26] = 2; // beyond NLBAF
        assert_eq!(Namespace::decode(&b).block_size(), None);
        b[26] = 0;
        b[128] = 8; // 8 bytes of metadata
        assert_eq!(Namespace::decode(&b).block_size(), None);
        assert!(!Namespace::decode(&[0u8; 4096]).is_active());
    }

    proptest! {
        #[test]
        fn decoders_are_total(b in proptest::collection::vec(any::<u8>(), 0..IDENTIFY_BYTES)) {
            let c = Controller::decode(&b);
            let _ = (c.serial.as_str(), c.model.as_str(), c.max_transfer(4096));
            let n = Namespace::decode(&b);
            if let Some(s) = n.block_size() {
                prop_assert!((512..=65536).contains(&s));
            }
        }
    }
}
