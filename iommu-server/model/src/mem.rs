//! Physical memory as the model's SMMU sees it: the [`PhysMem`] trait the
//! model reads structures and tables through (and DMA writes into), and
//! [`SparseMem`], a page-granular sparse store for tests.
//!
//! Owns only byte storage and little-endian word access. It must never
//! interpret what it stores (no descriptor or structure knowledge here) and
//! never fail: memory never written reads as zero, like freshly zeroed RAM.

use std::collections::HashMap;

use abi::{PAGE_SIZE, PhysAddr};

/// Physical memory the model reads and writes. Words are little-endian,
/// as the SMMU reads them with CD.ENDI == 0 and SMMU_CR0 little-endian
/// structures. `pa` need not be aligned.
pub trait PhysMem {
    /// The 64-bit little-endian word at `pa`.
    fn read_u64(&self, pa: PhysAddr) -> u64;
    /// Stores `v` little-endian at `pa`.
    fn write_u64(&mut self, pa: PhysAddr, v: u64);

    /// Fills `out` from `pa` onwards. The default goes through aligned
    /// word reads; implementations with byte storage override it.
    fn read_bytes(&self, pa: PhysAddr, out: &mut [u8]) {
        let mut done = 0;
        while done < out.len() {
            let a = pa.get().wrapping_add(done as u64);
            let word = a & !7;
            let skip = (a - word) as usize;
            let n = (8 - skip).min(out.len() - done);
            let bytes = self.read_u64(PhysAddr::new(word)).to_le_bytes();
            out[done..done + n].copy_from_slice(&bytes[skip..skip + n]);
            done += n;
        }
    }

    /// Stores `data` from `pa` onwards. The default read-modify-writes
    /// aligned words.
    fn write_bytes(&mut self, pa: PhysAddr, data: &[u8]) {
        let mut done = 0;
        while done < data.len() {
            let a = pa.get().wrapping_add(done as u64);
            let word = a & !7;
            let skip = (a - word) as usize;
            let n = (8 - skip).min(data.len() - done);
            let w = PhysAddr::new(word);
            let mut bytes = self.read_u64(w).to_le_bytes();
            bytes[skip..skip + n].copy_from_slice(&data[done..done + n]);
            self.write_u64(w, u64::from_le_bytes(bytes));
            done += n;
        }
    }

    /// Reads consecutive words from `pa` (an STE, a CD, a table).
    fn read_words(&self, pa: PhysAddr, out: &mut [u64]) {
        for (i, w) in out.iter_mut().enumerate() {
            *w = self.read_u64(PhysAddr::new(pa.get().wrapping_add(8 * i as u64)));
        }
    }

    /// Writes consecutive words from `pa`.
    fn write_words(&mut self, pa: PhysAddr, words: &[u64]) {
        for (i, &w) in words.iter().enumerate() {
            self.write_u64(PhysAddr::new(pa.get().wrapping_add(8 * i as u64)), w);
        }
    }
}

/// Sparse physical memory: 4 KiB pages allocated on first write, zero
/// where never written.
#[derive(Clone, Debug, Default)]
pub struct SparseMem {
    pages: HashMap<u64, Box<[u8; PAGE_SIZE as usize]>>,
}

impl SparseMem {
    /// Empty (all-zero) memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pages written so far.
    pub fn pages(&self) -> usize {
        self.pages.len()
    }

    /// Fills `out` from `pa` onwards (zero where never written).
    pub fn read_bytes(&self, pa: PhysAddr, out: &mut [u8]) {
        let mut done = 0;
        while done < out.len() {
            let a = pa.get().wrapping_add(done as u64);
            let off = (a % PAGE_SIZE) as usize;
            let n = (PAGE_SIZE as usize - off).min(out.len() - done);
            match self.pages.get(&(a / PAGE_SIZE)) {
                Some(p) => out[done..done + n].copy_from_slice(&p[off..off + n]),
                None => out[done..done + n].fill(0),
            }
            done += n;
        }
    }

    /// Stores `data` from `pa` onwards.
    pub fn write_bytes(&mut self, pa: PhysAddr, data: &[u8]) {
        let mut done = 0;
        while done < data.len() {
            let a = pa.get().wrapping_add(done as u64);
            let off = (a % PAGE_SIZE) as usize;
            let n = (PAGE_SIZE as usize - off).min(data.len() - done);
            let page = self
                .pages
                .entry(a / PAGE_SIZE)
                .or_insert_with(|| Box::new([0; PAGE_SIZE as usize]));
            page[off..off + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
    }
}

impl PhysMem for SparseMem {
    fn read_u64(&self, pa: PhysAddr) -> u64 {
        let mut b = [0; 8];
        SparseMem::read_bytes(self, pa, &mut b);
        u64::from_le_bytes(b)
    }

    fn write_u64(&mut self, pa: PhysAddr, v: u64) {
        SparseMem::write_bytes(self, pa, &v.to_le_bytes());
    }

    fn read_bytes(&self, pa: PhysAddr, out: &mut [u8]) {
        SparseMem::read_bytes(self, pa, out);
    }

    fn write_bytes(&mut self, pa: PhysAddr, data: &[u8]) {
        SparseMem::write_bytes(self, pa, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Word-only memory, to exercise the trait's default byte helpers.
    struct Words(HashMap<u64, u64>);

    impl PhysMem for Words {
        fn read_u64(&self, pa: PhysAddr) -> u64 {
            assert_eq!(pa.get() % 8, 0);
            self.0.get(&pa.get()).copied().unwrap_or(0)
        }
        fn write_u64(&mut self, pa: PhysAddr, v: u64) {
            assert_eq!(pa.get() % 8, 0);
            self.0.insert(pa.get(), v);
        }
    }

    #[test]
    fn sparse_reads_zero_and_crosses_pages() {
        let mut m = SparseMem::new();
        assert_eq!(m.read_u64(PhysAddr::new(0x1234_5000)), 0);
        assert_eq!(m.pages(), 0);
        let data: Vec<u8> = (0..=255).collect();
        m.write_bytes(PhysAddr::new(0x1fc0), &data);
        assert_eq!(m.pages(), 2);
        let mut back = vec![0; 256];
        m.read_bytes(PhysAddr::new(0x1fc0), &mut back);
        assert_eq!(back, data);
        m.write_u64(PhysAddr::new(0x2ffc), 0x1122_3344_5566_7788);
        assert_eq!(m.read_u64(PhysAddr::new(0x2ffc)), 0x1122_3344_5566_7788);
        assert_eq!(m.read_u64(PhysAddr::new(0x3000)) & 0xffff_ffff, 0x1122_3344);
    }

    #[test]
    fn default_byte_helpers_use_aligned_words() {
        let mut m = Words(HashMap::new());
        let data = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
        m.write_bytes(PhysAddr::new(0x1003), &data);
        let mut back = [0u8; 11];
        m.read_bytes(PhysAddr::new(0x1003), &mut back);
        assert_eq!(back, data);
        assert_eq!(m.read_u64(PhysAddr::new(0x1000)), 0x0504_0302_0100_0000);
        m.write_words(PhysAddr::new(0x2000), &[7, 8]);
        let mut w = [0; 2];
        m.read_words(PhysAddr::new(0x2000), &mut w);
        assert_eq!(w, [7, 8]);
    }
}
