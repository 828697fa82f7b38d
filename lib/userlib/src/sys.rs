//! Every `unsafe` block of userlib, and nothing else: the `svc` instruction,
//! the task-info page, the heap's backing store, the probe load, the
//! vector-register probe, and the
//! construction of the shared [`mmio::Region`] over memory the kernel
//! mapped for this task (DMA and device memory), whose volatile accessors
//! are the only way to reach it. Everything above this module is safe code.
//!
//! It must never hand out a `&` or `&mut` to DMA or device memory.

use core::arch::asm;
use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, Ordering};

use abi::syscall::{PinOp, layout};
use abi::{PAGE_SIZE, PhysAddr, SysResult, Sysno};
use buddy_system_allocator::LockedHeap;
use mmio::{Reg, Value};

/// Issues `svc #0` with `n` in x8 and `a` in x0..x5; returns x0..x3.
#[inline(always)]
pub(crate) fn syscall(n: u64, a: [u64; 6]) -> [u64; 4] {
    let (r0, r1, r2, r3): (u64, u64, u64, u64);
    // SAFETY: `svc #0` enters the kernel, which checks every argument
    // against this task's own capabilities and address space, and changes
    // only x0..x3 (declared as outputs) and memory this task named by a
    // pointer (the asm is not `nomem`, so the compiler assumes any exposed
    // memory may be read or written). It does not touch the stack.
    unsafe {
        asm!(
            "svc #0",
            inlateout("x0") a[0] => r0,
            inlateout("x1") a[1] => r1,
            inlateout("x2") a[2] => r2,
            inlateout("x3") a[3] => r3,
            in("x4") a[4],
            in("x5") a[5],
            in("x8") n,
            options(nostack),
        );
    }
    [r0, r1, r2, r3]
}

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

/// Data synchronisation barrier for stores: every store this task made
/// before it is observable (by a device too) before any access after it.
pub(crate) fn dsb_st() {
    // SAFETY: DSB ST only orders memory accesses; EL0 may execute it.
    unsafe { asm!("dsb st", options(nostack, preserves_flags)) }
}

/// Executes a permanently undefined instruction: see
/// [`crate::raw::undefined_instruction`].
pub(crate) fn undefined_instruction() -> ! {
    // SAFETY: UDF touches no memory and no register; it traps to the
    // kernel, which ends the task (it never returns here).
    unsafe { asm!("udf #0", options(noreturn, nomem, nostack)) }
}

/// Loads one byte from `addr`, whatever it is: see [`crate::raw::probe_read`].
pub(crate) fn probe_read(addr: u64) -> u64 {
    let v: u64;
    // SAFETY: a single byte load in asm creates no Rust reference and
    // cannot be misaligned. If `addr` is not readable by this task the
    // kernel ends the task on the fault; if it is, the load only reads.
    unsafe {
        asm!(
            "ldrb {v:w}, [{a}]",
            a = in(reg) addr,
            v = lateout(reg) v,
            options(nostack, readonly, preserves_flags),
        );
    }
    v
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
static HEAP: LockedHeap<32> = LockedHeap::empty();

/// Gives the heap its backing store (idempotent).
pub(crate) fn init_heap() {
    if HEAP_READY.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: `HEAP_SPACE` is a static used by nothing but the allocator,
    // and the flag above lets this run once, so the range is added once.
    unsafe { HEAP.lock().init(HEAP_SPACE.0.get() as usize, HEAP_SIZE) }
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

/// Loads `pattern` into v0..v31, then `rounds` times makes the `yield`
/// syscall and spins for `spin_ticks` counter ticks (long enough for the
/// scheduler tick to take the CPU away), touching no vector register, and
/// finally stores v0..v31. A kernel that keeps each task's FP/SIMD state
/// returns `pattern` unchanged; anything else is a kernel bug.
pub(crate) fn hold_vector_registers(
    pattern: &[u128; 32],
    rounds: u64,
    spin_ticks: u64,
) -> [u128; 32] {
    let mut out = [0u128; 32];
    // SAFETY: reads 512 bytes from `pattern` and writes 512 bytes to `out`
    // (both live, 16-byte aligned arrays of 32 u128) with no reference
    // alive to either during the asm; the `svc` (yield) changes x0..x3,
    // which are declared clobbered with every register the asm itself
    // changes (x8, x9..x14, v0..v31, the flags); it does not touch the
    // stack.
    unsafe {
        asm!(
            "ldp q0, q1, [x9, #0]",
            "ldp q2, q3, [x9, #32]",
            "ldp q4, q5, [x9, #64]",
            "ldp q6, q7, [x9, #96]",
            "ldp q8, q9, [x9, #128]",
            "ldp q10, q11, [x9, #160]",
            "ldp q12, q13, [x9, #192]",
            "ldp q14, q15, [x9, #224]",
            "ldp q16, q17, [x9, #256]",
            "ldp q18, q19, [x9, #288]",
            "ldp q20, q21, [x9, #320]",
            "ldp q22, q23, [x9, #352]",
            "ldp q24, q25, [x9, #384]",
            "ldp q26, q27, [x9, #416]",
            "ldp q28, q29, [x9, #448]",
            "ldp q30, q31, [x9, #480]",
            "2:",
            "mov x8, #{yield_no}",
            "svc #0",
            "mrs x13, cntvct_el0",
            "add x14, x13, x12",
            "3:",
            "mrs x13, cntvct_el0",
            "cmp x13, x14",
            "b.lo 3b",
            "subs x11, x11, #1",
            "b.ne 2b",
            "stp q0, q1, [x10, #0]",
            "stp q2, q3, [x10, #32]",
            "stp q4, q5, [x10, #64]",
            "stp q6, q7, [x10, #96]",
            "stp q8, q9, [x10, #128]",
            "stp q10, q11, [x10, #160]",
            "stp q12, q13, [x10, #192]",
            "stp q14, q15, [x10, #224]",
            "stp q16, q17, [x10, #256]",
            "stp q18, q19, [x10, #288]",
            "stp q20, q21, [x10, #320]",
            "stp q22, q23, [x10, #352]",
            "stp q24, q25, [x10, #384]",
            "stp q26, q27, [x10, #416]",
            "stp q28, q29, [x10, #448]",
            "stp q30, q31, [x10, #480]",
            yield_no = const Sysno::Yield as u64,
            inout("x9") pattern.as_ptr() => _,
            inout("x10") out.as_mut_ptr() => _,
            inout("x11") rounds.max(1) => _,
            inout("x12") spin_ticks => _,
            out("x13") _,
            out("x14") _,
            out("x0") _,
            out("x1") _,
            out("x2") _,
            out("x3") _,
            out("x8") _,
            out("v0") _,
            out("v1") _,
            out("v2") _,
            out("v3") _,
            out("v4") _,
            out("v5") _,
            out("v6") _,
            out("v7") _,
            out("v8") _,
            out("v9") _,
            out("v10") _,
            out("v11") _,
            out("v12") _,
            out("v13") _,
            out("v14") _,
            out("v15") _,
            out("v16") _,
            out("v17") _,
            out("v18") _,
            out("v19") _,
            out("v20") _,
            out("v21") _,
            out("v22") _,
            out("v23") _,
            out("v24") _,
            out("v25") _,
            out("v26") _,
            out("v27") _,
            out("v28") _,
            out("v29") _,
            out("v30") _,
            out("v31") _,
            options(nostack),
        );
    }
    out
}
