//! The server's DMA page pool: one physically contiguous `dma_alloc`
//! region whose physical address the kernel tells the SMMU owner, carved
//! into size-aligned runs of pages (buddy allocator) for the stream table,
//! the queues, context descriptors and every client's page tables. Owns
//! the translation between those physical addresses and the server's own
//! view of the memory. Never hands out memory outside the region, never
//! hands out a run twice.

use abi::{PAGE_SIZE, PhysAddr};
use buddy_system_allocator::FrameAllocator;
use userlib::DmaBuffer;

/// The pool.
pub struct Pool {
    mem: DmaBuffer,
    base: PhysAddr,
    pages: FrameAllocator<24>,
    used: usize,
}

/// Why the pool could not be made.
#[derive(Debug)]
pub enum PoolError {
    /// The kernel did not tell the physical address: the task lacks the
    /// SMMU-owner capability.
    NoPhysicalAddress,
}

impl Pool {
    /// A pool over `mem`.
    pub fn new(mem: DmaBuffer) -> Result<Self, PoolError> {
        let base = mem.phys().ok_or(PoolError::NoPhysicalAddress)?;
        let mut pages = FrameAllocator::new();
        pages.add_frame(0, mem.pages() as usize);
        Ok(Self {
            mem,
            base,
            pages,
            used: 0,
        })
    }

    /// `count` zeroed contiguous pages aligned to `count` rounded up to a
    /// power of two, or `None` when the pool is exhausted.
    pub fn alloc(&mut self, count: usize) -> Option<PhysAddr> {
        let first = self.pages.alloc(count)?;
        self.used += count;
        let offset = first as u64 * PAGE_SIZE;
        for word in 0..(count as u64 * PAGE_SIZE / 8) {
            self.mem.write::<u64>(offset + word * 8, 0)?;
        }
        Some(PhysAddr::new(self.base.get() + offset))
    }

    /// Returns a run from [`Pool::alloc`] (same `count`).
    pub fn free(&mut self, pa: PhysAddr, count: usize) {
        if let Some(off) = self.offset(pa, count as u64 * PAGE_SIZE) {
            self.pages.dealloc((off / PAGE_SIZE) as usize, count);
            self.used -= count;
        }
    }

    fn offset(&self, pa: PhysAddr, len: u64) -> Option<u64> {
        let off = pa.offset_from(self.base)?;
        (off.checked_add(len)? <= self.mem.len()).then_some(off)
    }

    /// Reads the 64-bit word at `pa`. `pa` must come from this pool: the
    /// server only ever builds tables in it, so anything else is a server
    /// bug, reported loudly.
    pub fn read_u64(&self, pa: PhysAddr) -> u64 {
        // The buffer's own access checks range and alignment: one check.
        pa.offset_from(self.base)
            .and_then(|off| self.mem.read::<u64>(off))
            .expect("aligned SMMU table word inside the server's pool")
    }

    /// Writes the 64-bit word at `pa` with one store (see `read_u64`).
    pub fn write_u64(&mut self, pa: PhysAddr, value: u64) {
        pa.offset_from(self.base)
            .and_then(|off| self.mem.write::<u64>(off, value))
            .expect("aligned SMMU table word inside the server's pool");
    }

    /// Pages handed out now, and the pool's size.
    pub fn usage(&self) -> (usize, u64) {
        (self.used, self.mem.pages())
    }
}
