//! Task address spaces: each task's page table (the shared `pgtable`
//! walker), the frames it owns, and the only way the kernel touches user
//! memory: every copy translates the task's own table page by page and
//! refuses anything that is not normal memory the task may access that way.
//! Must never map a kernel frame into a task, nor free a frame while a TLB
//! may still hold a translation to it (callers flush the ASID first); a
//! frame a device may still reach is never freed either (the frame ledger
//! holds pinned frames, see `frames`).
//!
//! What the kernel takes on a task's behalf is bounded: every page-table
//! page of the space (root, tables, the walker's spares) is charged to the
//! task's kernel quota, and a map past it is refused with
//! `KernelOverQuota`, changing nothing the task can see; a device range is
//! mapped once, and a repeat answers the existing address.

use alloc::vec::Vec;

use abi::syscall::layout;
use abi::{Asid, Error, PAGE_SIZE, PhysAddr, SysResult, VirtAddr};
use kernel_core::ledger::Owner;
use pgtable::{Attrs, Config, LargestLeaf, MapError, PageTable, Shareability, TableMemory};

use super::LinearTableMemory;
use super::frames;
use crate::arch::mmu::{MEM_DEVICE, MEM_NORMAL};

/// Memory a task got from `dma_alloc`: the only memory it may grant.
#[derive(Clone, Copy, Debug)]
pub struct DmaRegion {
    /// Where the task sees it.
    pub va: u64,
    /// Where it is.
    pub pa: PhysAddr,
    /// Its size in pages.
    pub pages: u64,
}

/// One task's address space.
pub struct AddressSpace {
    table: PageTable<VirtAddr>,
    asid: Asid,
    /// The owning task's slot (the frame ledger's owner).
    task: u32,
    /// Frame runs this space owns: (first frame, count). Freed at teardown.
    owned: Vec<(PhysAddr, usize)>,
    dma: Vec<DmaRegion>,
    dma_next: u64,
    mmio_next: u64,
    /// Device ranges mapped so far: (first byte's page, bytes, task
    /// address). At most one entry per distinct range the task's
    /// capabilities name.
    devices: Vec<(PhysAddr, u64, u64)>,
    /// Page-table pages this space has taken (never given back before
    /// `destroy`), and how many it may.
    tables: u64,
    table_quota: u64,
}

/// The linear-map table memory, charging each new table page to one
/// space's kernel quota and refusing past it.
struct Charged<'a> {
    used: &'a mut u64,
    quota: u64,
    refused: bool,
}

impl TableMemory for Charged<'_> {
    fn read(&self, table: PhysAddr, index: usize) -> u64 {
        LinearTableMemory.read(table, index)
    }

    fn write(&mut self, table: PhysAddr, index: usize, value: u64) {
        LinearTableMemory.write(table, index, value)
    }

    fn alloc_table(&mut self) -> Option<PhysAddr> {
        if *self.used >= self.quota {
            self.refused = true;
            return None;
        }
        let page = LinearTableMemory.alloc_table()?;
        *self.used += 1;
        Some(page)
    }

    fn barrier(&mut self) {
        LinearTableMemory.barrier()
    }
}

/// Task memory attributes.
const USER_DEVICE: Attrs = Attrs {
    shareability: Shareability::Outer,
    ..Attrs::user_data(MEM_DEVICE, true)
};

/// How the kernel wants to access user memory.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

impl AddressSpace {
    /// An empty address space tagged with `asid`, owned by task slot
    /// `task`, which may take `table_quota` page-table pages (its root
    /// included).
    pub fn new(asid: Asid, pa_bits: u8, task: u32, table_quota: u64) -> SysResult<Self> {
        let config = Config::new(crate::arch::mmu::USER_VA_BITS, pa_bits)
            .with_largest_leaf(LargestLeaf::Page);
        let mut tables = 0;
        let mut mem = Charged {
            used: &mut tables,
            quota: table_quota,
            refused: false,
        };
        let table = PageTable::new(&mut mem, config).map_err(|_| match mem.refused {
            true => Error::KernelOverQuota,
            false => Error::NoMemory,
        })?;
        crate::arch::mmu::prepare_user_root(table.root());
        Ok(Self {
            table,
            asid,
            task,
            owned: Vec::new(),
            dma: Vec::new(),
            dma_next: layout::DMA_BASE,
            mmio_next: layout::MMIO_BASE,
            devices: Vec::new(),
            tables,
            table_quota,
        })
    }

    /// Maps `[va, va + len)` to `pa` with `attrs`, its new table pages
    /// charged to the quota. A refused map leaves no entry (the walker
    /// reserves every table first; pages it got stay as its spares, still
    /// charged).
    fn map_range(&mut self, va: u64, pa: PhysAddr, len: u64, attrs: Attrs) -> SysResult<()> {
        let mut mem = Charged {
            used: &mut self.tables,
            quota: self.table_quota,
            refused: false,
        };
        self.table
            .map(&mut mem, VirtAddr::new(va), pa, len, attrs)
            .map_err(|e| match e {
                MapError::NoMemory if mem.refused => Error::KernelOverQuota,
                MapError::NoMemory => Error::NoMemory,
                _ => Error::BadArgument,
            })
    }

    /// The root table (physical), for `arch::mmu::set_user_space`.
    pub fn root(&self) -> PhysAddr {
        self.table.root()
    }

    /// The address space's ASID.
    pub fn asid(&self) -> Asid {
        self.asid
    }

    /// Allocates `pages` zeroed frames, maps them at `va` with `attrs`, and
    /// records them as owned. Returns the first frame.
    pub fn map_new(&mut self, va: u64, pages: u64, attrs: Attrs) -> SysResult<PhysAddr> {
        let owner = Owner::Task {
            task: self.task,
            dma: false,
        };
        self.map_owned(va, pages, attrs, owner)
    }

    fn map_owned(
        &mut self,
        va: u64,
        pages: u64,
        attrs: Attrs,
        owner: Owner,
    ) -> SysResult<PhysAddr> {
        self.owned.try_reserve(1).map_err(|_| Error::NoMemory)?;
        let pa = frames::alloc_zeroed(pages as usize, owner).ok_or(Error::NoMemory)?;
        if let Err(e) = self.map_range(va, pa, pages * PAGE_SIZE, attrs) {
            // Never mapped: no TLB can hold a translation to it.
            frames::free(pa);
            return Err(e);
        }
        self.owned.push((pa, pages as usize));
        Ok(pa)
    }

    /// Allocates DMA-capable memory (zeroed, contiguous, read-write) at the
    /// next free place of the DMA region. Returns (va, len, pa). `pool`:
    /// the memory is the IOMMU server's pool (it hands it to the SMMU), not
    /// memory a device reaches through a mapping (it is never pinned, and
    /// never freed when its owner dies).
    pub fn dma_alloc(&mut self, pages: u64, pool: bool) -> SysResult<(u64, u64, PhysAddr)> {
        let va = self.dma_next;
        let owner = if pool {
            Owner::Pool { task: self.task }
        } else {
            Owner::Task {
                task: self.task,
                dma: true,
            }
        };
        self.dma.try_reserve(1).map_err(|_| Error::NoMemory)?;
        let pa = self.map_owned(va, pages, Attrs::user_data(MEM_NORMAL, true), owner)?;
        self.dma.push(DmaRegion { va, pa, pages });
        // A guard page between regions.
        self.dma_next = va + (pages + 1) * PAGE_SIZE;
        Ok((va, pages * PAGE_SIZE, pa))
    }

    /// Maps device registers at `pa` (`len` bytes) into the MMIO region,
    /// once: asked again for the same range it answers the existing
    /// mapping and takes nothing. Returns the address of `pa` in the task.
    pub fn map_device(&mut self, pa: PhysAddr, len: u64) -> SysResult<u64> {
        let start = pa.align_down(PAGE_SIZE);
        let end = pa
            .checked_add(len)
            .and_then(|e| e.align_up(PAGE_SIZE))
            .ok_or(Error::BadArgument)?;
        let size = end.get() - start.get();
        if let Some(&(_, _, va)) = self
            .devices
            .iter()
            .find(|&&(s, n, _)| s == start && n == size)
        {
            return Ok(va + pa.page_offset());
        }
        self.devices.try_reserve(1).map_err(|_| Error::NoMemory)?;
        let va = self.mmio_next;
        self.map_range(va, start, size, USER_DEVICE)?;
        self.devices.push((start, size, va));
        self.mmio_next = va + size + PAGE_SIZE;
        Ok(va + pa.page_offset())
    }

    /// Physical frames behind `[va, va + len)` if it lies entirely in the
    /// task's DMA memory. Unmapped → `BadAddress`; mapped but not DMA
    /// memory (code, stack, MMIO) → `Denied`.
    pub fn grant_frames(&self, va: u64, len: u64) -> SysResult<Vec<PhysAddr>> {
        let end = va.checked_add(len).ok_or(Error::BadAddress)?;
        let first = va & !(PAGE_SIZE - 1);
        let mut out = Vec::new();
        // A DMA region is mapped whole from its allocation to the task's
        // end (nothing unmaps it): inside one, no page needs a walk. Only
        // a range outside every region is walked, to tell unmapped
        // (`BadAddress`) from mapped but not DMA memory (`Denied`).
        let Some(region) = self
            .dma
            .iter()
            .find(|r| first >= r.va && end <= r.va + r.pages * PAGE_SIZE)
        else {
            let mut page = first;
            while page < end {
                if self
                    .table
                    .translate(&LinearTableMemory, VirtAddr::new(page))
                    .is_none()
                {
                    return Err(Error::BadAddress);
                }
                page += PAGE_SIZE;
            }
            return Err(Error::Denied);
        };
        out.try_reserve_exact(((end - first).div_ceil(PAGE_SIZE)) as usize)
            .map_err(|_| Error::NoMemory)?;
        let mut page = first;
        while page < end {
            out.push(PhysAddr::new(region.pa.get() + (page - region.va)));
            page += PAGE_SIZE;
        }
        Ok(out)
    }

    /// The physical address of each page of `[va, va+len)` if the task may
    /// access it as `how` and it is normal memory; `BadAddress` otherwise.
    fn check(&self, va: u64, len: u64, how: Access) -> SysResult<()> {
        if len == 0 {
            return Ok(());
        }
        let end = va.checked_add(len).ok_or(Error::BadAddress)?;
        let mut page = va & !(PAGE_SIZE - 1);
        while page < end {
            let t = self
                .table
                .translate(&LinearTableMemory, VirtAddr::new(page))
                .ok_or(Error::BadAddress)?;
            let user = matches!(
                t.attrs.access,
                pgtable::Access::UserRw | pgtable::Access::UserRo
            );
            if !user
                || t.attrs.mair_index != MEM_NORMAL
                || (how == Access::Write && !t.attrs.access.writable())
            {
                return Err(Error::BadAddress);
            }
            page += PAGE_SIZE;
        }
        Ok(())
    }

    /// Whether the task may read `[va, va+len)`.
    pub fn check_readable(&self, va: u64, len: u64) -> SysResult<()> {
        self.check(va, len, Access::Read)
    }

    /// Whether the task may write `[va, va+len)`.
    pub fn check_writable(&self, va: u64, len: u64) -> SysResult<()> {
        self.check(va, len, Access::Write)
    }

    /// Copies `out.len()` bytes of the task's memory at `va` into `out`.
    pub fn copy_in(&self, va: u64, out: &mut [u8]) -> SysResult<()> {
        self.check_readable(va, out.len() as u64)?;
        self.copy_pages(va, out.len(), |kernel, offset, n| {
            // SAFETY: `kernel` is the linear-map address of a normal-memory
            // page the task maps (checked above); `n` bytes stay inside that
            // page; `out[offset..offset+n]` is in bounds.
            unsafe {
                core::ptr::copy_nonoverlapping(kernel as *const u8, out[offset..].as_mut_ptr(), n)
            }
        });
        Ok(())
    }

    /// Copies `data` into the task's memory at `va`, checking the task may
    /// write there.
    pub fn copy_out(&self, va: u64, data: &[u8]) -> SysResult<()> {
        self.check_writable(va, data.len() as u64)?;
        self.copy_out_unchecked_perms(va, data);
        Ok(())
    }

    /// Copies `data` into pages of this space the kernel itself set up
    /// (loading an image into read-only pages); still refuses unmapped or
    /// non-normal memory.
    pub fn load(&self, va: u64, data: &[u8]) -> SysResult<()> {
        self.check_readable(va, data.len() as u64)?;
        self.copy_out_unchecked_perms(va, data);
        Ok(())
    }

    fn copy_out_unchecked_perms(&self, va: u64, data: &[u8]) {
        self.copy_pages(va, data.len(), |kernel, offset, n| {
            // SAFETY: as in `copy_in`, writing instead: the page is normal
            // memory owned by this task, reached through the linear map.
            unsafe { core::ptr::copy_nonoverlapping(data[offset..].as_ptr(), kernel as *mut u8, n) }
        });
    }

    /// Copies `len` bytes between this space's `[va, va + len)` and the
    /// physical run that starts `offset` bytes into `frames[0]` (whole
    /// frames, in order: a call's grant, see `Sysno::GrantCopy`). `to_frames`
    /// copies the task's memory into the frames, otherwise the frames into
    /// the task's memory. The task's range must be readable (resp.
    /// writable) normal memory (`BadAddress`); the frames must cover the
    /// run (`Denied`). Checked before any byte moves.
    pub fn copy_with_frames(
        &self,
        va: u64,
        frames: &[PhysAddr],
        offset: u64,
        len: usize,
        to_frames: bool,
    ) -> SysResult<()> {
        let covered = (frames.len() as u64).saturating_mul(PAGE_SIZE);
        if offset.saturating_add(len as u64) > covered {
            return Err(Error::Denied);
        }
        if to_frames {
            self.check_readable(va, len as u64)?;
        } else {
            self.check_writable(va, len as u64)?;
        }
        self.copy_pages(va, len, |task, done, n| {
            let mut moved = 0usize;
            while moved < n {
                let at = offset + (done + moved) as u64;
                let in_frame = at % PAGE_SIZE;
                let m = ((PAGE_SIZE - in_frame) as usize).min(n - moved);
                let Some(&frame) = frames.get((at / PAGE_SIZE) as usize) else {
                    return; // unreachable: the run was checked above
                };
                let phys = super::phys_to_virt(frame).get() + in_frame;
                let user = task + moved as u64;
                let (from, to) = if to_frames {
                    (user, phys)
                } else {
                    (phys, user)
                };
                // SAFETY: both addresses are linear-map addresses of normal
                // RAM: `user` lies in a page of this task checked above for
                // the access, `phys` in a frame of a live task's grant (the
                // kernel checked it was that task's `dma_alloc` memory when
                // the call was made, and the caller waits for the reply, so
                // it is not reclaimed). `m` bytes stay inside both pages.
                // `copy` allows the two to overlap.
                unsafe { core::ptr::copy(from as *const u8, to as *mut u8, m) }
                moved += m;
            }
        });
        Ok(())
    }

    /// Walks `[va, va+len)` page by page, calling `f(kernel address,
    /// offset into the copy, bytes in this page)`. Callers checked the range.
    fn copy_pages(&self, va: u64, len: usize, mut f: impl FnMut(u64, usize, usize)) {
        let mut done = 0usize;
        while done < len {
            let cur = va + done as u64;
            let in_page = (PAGE_SIZE - (cur & (PAGE_SIZE - 1))) as usize;
            let n = in_page.min(len - done);
            let t = self
                .table
                .translate(&LinearTableMemory, VirtAddr::new(cur))
                .expect("range checked by caller");
            f(super::phys_to_virt(t.pa).get(), done, n);
            done += n;
        }
    }

    /// Releases every frame the space owns and its tables. The caller has
    /// flushed the ASID from every TLB (`arch::mmu::flush_tag`). Frames
    /// the IOMMU server still has pinned become held for DMA instead of
    /// free; IOMMU pool frames are kept.
    pub fn destroy(self) -> Reclaimed {
        let Self {
            table,
            owned,
            tables,
            table_quota,
            ..
        } = self;
        let mut r = Reclaimed {
            tables,
            table_quota,
            ..Reclaimed::default()
        };
        let mut add = |x: kernel_core::ledger::Released| {
            r.freed += x.freed.iter().map(|&(_, n)| n).sum::<u64>();
            r.held += x.held;
            r.pool_kept += x.pool_kept;
        };
        for pa in table.destroy(&LinearTableMemory) {
            add(frames::free(pa));
        }
        for (pa, _) in owned {
            add(frames::free(pa));
        }
        r
    }
}

/// What destroying an address space did with its frames.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reclaimed {
    /// Back in the allocator.
    pub freed: u64,
    /// Still pinned by the IOMMU server: held for DMA until unpinned.
    pub held: u64,
    /// IOMMU pool frames kept (the SMMU may still walk them).
    pub pool_kept: u64,
    /// Page-table pages among the freed frames.
    pub tables: u64,
    /// The space's kernel quota, in page-table pages.
    pub table_quota: u64,
}
