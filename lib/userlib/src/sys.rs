//! Every `unsafe` block of userlib, and nothing else: the syscall
//! instruction and the other instructions only an architecture has (in
//! `sys/aarch64.rs` and `sys/x86_64.rs`, the one place that picks one),
//! the task-info page, the heap's backing store, the probe load, the
//! vector-register probe, and the
//! construction of the shared [`mmio::Region`] over memory the kernel
//! mapped for this task (DMA and device memory), whose volatile accessors
//! are the only way to reach it. Everything above this module is safe code.
//!
//! It must never hand out a `&` or `&mut` to DMA or device memory.

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, Ordering};

use abi::syscall::{PinOp, layout};
use abi::{PAGE_SIZE, PhysAddr, SysResult, Sysno};
use mmio::{Reg, Value};

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
use aarch64 as arch;
#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
use self::x86_64 as arch;

pub(crate) use arch::{
    VECTOR_REGISTERS, counter, dsb_st, hold_vector_registers, probe_read, syscall,
    undefined_instruction,
};

/// Pins (`op` = [`PinOp::Pin`]) or unpins a batch of frames by physical
/// address (only with the SMMU-owner capability: the IOMMU server pins what
/// it maps for a device and unpins after the covering sync). All or
/// nothing. Returns (held frames the unpin freed, frames pinned now).
pub fn frame_pins(owner_cap: u32, op: PinOp, frames: &[PhysAddr]) -> SysResult<(u64, u64)> {
    // `PhysAddr` is a `#[repr(transparent)]` u64: the kernel reads the
    // slice as `count` little-endian u64s through its own checked copy.
    let r = crate::raw::check(syscall(
        Sysno::FramePins as u64,
        [
            u64::from(owner_cap),
            op.code(),
            frames.as_ptr() as u64,
            frames.len() as u64,
            0,
            0,
        ],
    ))?;
    Ok((r[1], r[2]))
}

/// The task-info page, as the kernel mapped it.
pub(crate) fn task_info_page() -> &'static [u8] {
    // SAFETY: the kernel maps `PAGE_SIZE` bytes of read-only memory at
    // `layout::TASK_INFO` before the task starts and never unmaps or
    // changes them; nothing in the task can write there (read-only).
    unsafe { core::slice::from_raw_parts(layout::TASK_INFO as *const u8, PAGE_SIZE as usize) }
}

/// Size of the task heap, in bytes.
pub(crate) const HEAP_SIZE: usize = 1 << 20;

#[repr(C, align(4096))]
struct HeapSpace(UnsafeCell<[u8; HEAP_SIZE]>);

// SAFETY: the bytes are only ever touched through the allocator, which
// hands out disjoint blocks under its lock.
unsafe impl Sync for HeapSpace {}

static HEAP_SPACE: HeapSpace = HeapSpace(UnsafeCell::new([0; HEAP_SIZE]));
static HEAP_READY: AtomicBool = AtomicBool::new(false);

#[global_allocator]
static HEAP: taskheap::TaskHeap = taskheap::TaskHeap::new();

/// Gives the heap its backing store (idempotent).
pub(crate) fn init_heap() {
    if HEAP_READY.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: `HEAP_SPACE` is a static used by nothing but the allocator,
    // and the flag above lets this run once, so the range is added once.
    unsafe { HEAP.init(HEAP_SPACE.0.get() as usize, HEAP_SIZE) }
}

/// Memory the kernel mapped for this task by a successful `dma_alloc`,
/// `mmio_map` or `pci_map_bar`: the only way to make one is [`Region::map`],
/// so `va..va+len` is always mapped and owned by this task. Accessed only
/// through the shared [`mmio::Region`]'s single volatile loads and stores,
/// never through references, because a device may read or write it at any
/// time. Not `Send`/`Sync`: tasks are single-threaded.
#[derive(Debug)]
pub struct Region {
    mem: mmio::Region,
    /// Physical address, as `dma_alloc` reports it to the SMMU owner (0
    /// for everyone else and for device mappings).
    pa: u64,
    _not_sync: PhantomData<*mut u8>,
}

impl Region {
    /// Runs a mapping syscall (`DmaAlloc`, `MmioMap` or `PciMapBar`), which
    /// returns the mapping in x1 (address) and x2 (length), and for
    /// `DmaAlloc` by the SMMU owner its physical address in x3.
    pub(crate) fn map(n: Sysno, args: [u64; 6]) -> SysResult<Region> {
        debug_assert!(matches!(
            n,
            Sysno::DmaAlloc | Sysno::MmioMap | Sysno::PciMapBar
        ));
        let r = crate::raw::check(syscall(n as u64, args))?;
        let (va, len) = (r[1] as usize, r[2] as usize);
        // SAFETY: the kernel just mapped `va..va + len` read-write into this
        // task (device memory or DMA memory) and never unmaps it while the
        // task lives; this `Region` is its only handle, nothing in userlib
        // makes a reference to it, and the task is single-threaded.
        let mem = unsafe { mmio::Region::new(core::ptr::with_exposed_provenance_mut(va), len) };
        Ok(Region {
            mem,
            pa: r[3],
            _not_sync: PhantomData,
        })
    }

    /// First address of the mapping.
    pub fn va(&self) -> u64 {
        self.mem.addr() as u64
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> u64 {
        self.mem.len() as u64
    }

    /// Physical address (0 unless the kernel told it: see `pa`).
    pub fn pa(&self) -> u64 {
        self.pa
    }

    /// Whether the mapping is empty (never, for a kernel mapping).
    pub fn is_empty(&self) -> bool {
        self.mem.is_empty()
    }

    /// One volatile load of `reg`; `None` if out of range or unaligned.
    pub fn read<T: Value>(&self, reg: Reg<T>) -> Option<T> {
        self.mem.read(reg).ok()
    }

    /// One volatile store of `value` to `reg`; `None` if out of range or
    /// unaligned.
    pub fn write<T: Value>(&self, reg: Reg<T>, value: T) -> Option<()> {
        self.mem.write(reg, value).ok()
    }
}
