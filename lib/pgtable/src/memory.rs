//! The one door through which this crate reads, writes and obtains table
//! memory: the [`TableMemory`] trait its callers implement (the kernel on
//! its linear map, the IOMMU server on its DMA-visible frames, host tests
//! on an arena). This module never frees memory and never assumes how the
//! caller maps table pages.

use abi::PhysAddr;

/// Access to translation-table pages, supplied by the caller.
///
/// Contract the walker relies on, and the ordering it promises in return:
/// - [`write`](Self::write) is the only way a descriptor changes, and is one
///   single-copy-atomic 64-bit store (a walker sees the old or the new
///   value, never a mix) [Arm ARM B2.2.1].
/// - A newly allocated table is completely filled, then
///   [`barrier`](Self::barrier) is called, and only then is it linked by a
///   single store into a table that walkers can reach. So a concurrent
///   hardware walker never sees a half-built table.
/// - Pages are never freed through this trait: pages that leave the table
///   are handed back to the caller (see `Unmapped::into_freed_tables` and
///   `PageTable::destroy`), to be freed after the caller's invalidation.
pub trait TableMemory {
    /// Reads descriptor `index` (0..512) of the table page at `table`.
    fn read(&self, table: PhysAddr, index: usize) -> u64;

    /// Writes descriptor `index` (0..512) of the table page at `table`, as
    /// one 64-bit store.
    fn write(&mut self, table: PhysAddr, index: usize, value: u64);

    /// Allocates a zero-filled, 4 KiB-aligned 4 KiB table page, or `None`
    /// when out of memory. Its address must fit the output address size the
    /// table was configured with.
    fn alloc_table(&mut self) -> Option<PhysAddr>;

    /// Makes every earlier [`write`](Self::write) visible to translation
    /// table walkers before any later one: `DSB ISHST` for the CPU tables
    /// or a coherent SMMU (SMMU_IDR0.COHACC = 1); a cache clean to the point
    /// of coherency then `DSB` for a non-coherent SMMU. Called before each
    /// store that links a new table. The default does nothing (host tests).
    /// The caller still owes its own barrier after a whole operation.
    fn barrier(&mut self) {}
}
