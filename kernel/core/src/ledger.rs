//! The frame ledger: which accounted state every physical frame the
//! allocator was given at boot is in, and the pin table that keeps a frame
//! a device may reach from ever becoming free.
//!
//! States (exactly one per frame): **free** (in the allocator),
//! **kernel** (kernel-owned: the kernel's own tables and every task's page
//! tables), **task** (owned by a live task: its image, stack, info page and
//! `dma_alloc` memory), **IOMMU pool** (the `dma_alloc` memory of the
//! SMMU-owner task, which it hands to the SMMU), and **held for DMA** (a
//! dead task's frame that was still pinned when its owner's memory was
//! released).
//!
//! Who moves a frame: the allocator (free → kernel / task / pool), the
//! owner's release (kernel / task → free, or task → held when pinned; a
//! dead owner's pool frames are kept: an SMMU that may still walk them owns
//! them, until the kernel has stopped all DMA, `after_dma_stop`), and
//! the IOMMU server through pins: pin (task DMA memory only; the frame stays
//! in its state but may no longer become free) and unpin (held → free when
//! the last pin goes).
//!
//! It owns only bookkeeping: it never touches memory and never calls the
//! allocator (the kernel gives it what the allocator did, and frees what
//! it returns). It must never report a pinned frame as freed, never change
//! anything on a refused pin or unpin batch, and never panic on what a task
//! asks for.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use hashbrown::HashMap;

use abi::{PAGE_SHIFT, PhysAddr};

/// A frame number (physical address >> 12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frame(pub u64);

impl Frame {
    /// The frame holding `pa`, if `pa` is page aligned.
    pub fn of(pa: PhysAddr) -> Option<Frame> {
        pa.is_page_aligned()
            .then_some(Frame(pa.get() >> PAGE_SHIFT))
    }

    /// Its first byte.
    pub fn addr(self) -> PhysAddr {
        PhysAddr::new(self.0 << PAGE_SHIFT)
    }
}

/// Who an allocated run of frames belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The kernel (its tables, every task's page tables).
    Kernel,
    /// A task (by its slot): image, stack, info page; `dma` marks its
    /// `dma_alloc` memory, the only memory that may be pinned.
    Task {
        /// The task's slot.
        task: u32,
        /// `dma_alloc` memory.
        dma: bool,
    },
    /// The `dma_alloc` memory of the SMMU-owner task (by slot).
    Pool {
        /// The server's slot.
        task: u32,
    },
}

/// The frames in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Frames handed to the allocator at boot.
    pub boot: u64,
    /// In the allocator.
    pub free: u64,
    /// Kernel-owned.
    pub kernel: u64,
    /// Owned by live tasks.
    pub task: u64,
    /// The IOMMU pool (including a dead server's, kept).
    pub pool: u64,
    /// A dead task's frames still pinned.
    pub held: u64,
}

impl Totals {
    /// The sum of every state.
    pub fn sum(&self) -> u64 {
        self.free + self.kernel + self.task + self.pool + self.held
    }

    /// Whether the states add up to what the allocator got at boot.
    pub fn adds_up(&self) -> bool {
        self.sum() == self.boot
    }
}

/// Why a pin or unpin batch was refused (nothing changed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinRefusal {
    /// The address is not page aligned.
    Unaligned,
    /// The frame is free, or not RAM the allocator manages (MMIO, the
    /// kernel image, ...).
    NotAllocated,
    /// The frame is kernel memory (kernel tables, task page tables).
    Kernel,
    /// Task memory that is not `dma_alloc` memory (image, stack, slack).
    NotDma,
    /// The IOMMU pool (the server's own memory is not pinned).
    Pool,
    /// Its owner is dead: only unpinning is allowed.
    Held,
    /// An unpin of a frame not pinned (as often as the batch asks).
    NotPinned,
    /// The frame's pin count would overflow.
    TooManyPins,
    /// The kernel heap could not hold the batch's bookkeeping.
    NoMemory,
}

impl core::fmt::Display for PinRefusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            PinRefusal::Unaligned => "not page aligned",
            PinRefusal::NotAllocated => "not allocated task memory (free, MMIO or outside RAM)",
            PinRefusal::Kernel => "kernel memory (kernel or page tables)",
            PinRefusal::NotDma => "task memory that is not DMA memory",
            PinRefusal::Pool => "the IOMMU pool",
            PinRefusal::Held => "held for DMA (its owner is dead)",
            PinRefusal::NotPinned => "not pinned",
            PinRefusal::TooManyPins => "pinned too often",
            PinRefusal::NoMemory => "beyond what the kernel heap can track now",
        })
    }
}

/// Misuse of the ledger by the kernel itself (a kernel bug, never task input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedgerError {
    /// More frames allocated than are free.
    NotEnoughFree,
    /// A run overlapping an allocated run or a held frame.
    Overlap,
    /// No run starts at this frame.
    UnknownRun,
}

/// What releasing a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Runs (first frame, count) now free: the kernel returns them to the
    /// allocator (see [`buddy_chunks`]).
    pub freed: Vec<(Frame, u64)>,
    /// Frames that were pinned: now held for DMA.
    pub held: u64,
    /// IOMMU pool frames kept (never freed: the SMMU may still walk them).
    pub pool_kept: u64,
}

#[derive(Clone, Copy, Debug)]
struct Run {
    /// Frames taken from the allocator.
    frames: u64,
    /// Frames the owner may use (the rest is the allocator's round-up).
    pages: u64,
    owner: Owner,
    /// A pool run whose owner is dead: kept, never freed.
    orphaned: bool,
}

/// Batches of at most this many frames are sorted on the stack; larger
/// ones (up to `PIN_BATCH_MAX`) in a heap buffer reserved fallibly.
const INLINE_FRAMES: usize = 64;

/// Runs `f` on `batch`'s frame numbers, sorted (equal frames adjacent),
/// after checking every address is page aligned (the first one that is
/// not, in batch order, is the refusal).
fn with_sorted_frames<T>(
    batch: &[PhysAddr],
    f: impl FnOnce(&[u64]) -> Result<T, (PhysAddr, PinRefusal)>,
) -> Result<T, (PhysAddr, PinRefusal)> {
    let frame = |&pa: &PhysAddr| {
        Frame::of(pa)
            .map(|f| f.0)
            .ok_or((pa, PinRefusal::Unaligned))
    };
    if batch.len() <= INLINE_FRAMES {
        let mut buf = [0u64; INLINE_FRAMES];
        for (slot, pa) in buf.iter_mut().zip(batch) {
            *slot = frame(pa)?;
        }
        let frames = &mut buf[..batch.len()];
        frames.sort_unstable();
        return f(frames);
    }
    let mut frames = Vec::new();
    frames
        .try_reserve_exact(batch.len())
        .map_err(|_| (batch[0], PinRefusal::NoMemory))?;
    for pa in batch {
        frames.push(frame(pa)?);
    }
    frames.sort_unstable();
    f(&frames)
}

/// How often a frame occurs in a batch (a group of equal frames).
fn count(group: &[u64]) -> u32 {
    u32::try_from(group.len()).unwrap_or(u32::MAX)
}

/// The pin table's hasher: fixed, so that the ledger can be built in a
/// `static`. Its keys are frame numbers, which no task chooses.
type PinHasher = foldhash::fast::FixedState;

/// The ledger. See the module documentation.
#[derive(Debug, Default)]
pub struct FrameLedger {
    totals: Totals,
    runs: BTreeMap<u64, Run>,
    pins: HashMap<u64, u32, PinHasher>,
    held: BTreeSet<u64>,
}

impl FrameLedger {
    /// An empty ledger.
    pub const fn new() -> Self {
        Self {
            totals: Totals {
                boot: 0,
                free: 0,
                kernel: 0,
                task: 0,
                pool: 0,
                held: 0,
            },
            runs: BTreeMap::new(),
            pins: HashMap::with_hasher(PinHasher::with_seed(0)),
            held: BTreeSet::new(),
        }
    }

    /// `count` frames were handed to the allocator at boot.
    pub fn add_free(&mut self, count: u64) {
        self.totals.boot += count;
        self.totals.free += count;
    }

    /// The frames in each state.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    fn counter(&mut self, o: Owner) -> &mut u64 {
        match o {
            Owner::Kernel => &mut self.totals.kernel,
            Owner::Task { .. } => &mut self.totals.task,
            Owner::Pool { .. } => &mut self.totals.pool,
        }
    }

    /// The allocator handed out `frames` frames from `first` (of which the
    /// owner uses `pages`) to `owner`.
    pub fn allocated(
        &mut self,
        first: Frame,
        frames: u64,
        pages: u64,
        owner: Owner,
    ) -> Result<(), LedgerError> {
        if frames == 0 || pages > frames {
            return Err(LedgerError::Overlap);
        }
        if self.totals.free < frames {
            return Err(LedgerError::NotEnoughFree);
        }
        let end = first.0.checked_add(frames).ok_or(LedgerError::Overlap)?;
        let before = self.runs.range(..end).next_back();
        if before.is_some_and(|(s, r)| s + r.frames > first.0)
            || self.held.range(first.0..end).next().is_some()
        {
            return Err(LedgerError::Overlap);
        }
        self.runs.insert(
            first.0,
            Run {
                frames,
                pages,
                owner,
                orphaned: false,
            },
        );
        self.totals.free -= frames;
        *self.counter(owner) += frames;
        Ok(())
    }

    /// The owner gives back the run starting at `first`: its unpinned
    /// frames become free, its pinned frames held for DMA; an IOMMU pool
    /// run is kept (never freed).
    pub fn release(&mut self, first: Frame) -> Result<Released, LedgerError> {
        let run = *self.runs.get(&first.0).ok_or(LedgerError::UnknownRun)?;
        let mut out = Released::default();
        if let Owner::Pool { .. } = run.owner {
            if !run.orphaned {
                out.pool_kept = run.frames;
                if let Some(r) = self.runs.get_mut(&first.0) {
                    r.orphaned = true;
                }
            }
            return Ok(out);
        }
        self.runs.remove(&first.0);
        *self.counter(run.owner) -= run.frames;
        let mut f = first.0;
        let end = first.0 + run.frames;
        while f < end {
            if self.pins.contains_key(&f) {
                self.held.insert(f);
                out.held += 1;
                f += 1;
                continue;
            }
            let start = f;
            while f < end && !self.pins.contains_key(&f) {
                f += 1;
            }
            out.freed.push((Frame(start), f - start));
        }
        self.totals.held += out.held;
        self.totals.free += run.frames - out.held;
        Ok(out)
    }

    /// The pinnable frames of the run holding `f` (`start..end`: the
    /// owner's `dma_alloc` pages), or why `f` may not be pinned. A held
    /// frame is in no run (a run never overlaps a held frame), so every
    /// frame of the range returned is pinnable.
    fn pinnable_range(&self, f: u64) -> Result<core::ops::Range<u64>, PinRefusal> {
        if self.held.contains(&f) {
            return Err(PinRefusal::Held);
        }
        let Some((&start, run)) = self.runs.range(..=f).next_back() else {
            return Err(PinRefusal::NotAllocated);
        };
        if f >= start + run.frames {
            return Err(PinRefusal::NotAllocated);
        }
        match run.owner {
            Owner::Kernel => Err(PinRefusal::Kernel),
            Owner::Pool { .. } => Err(PinRefusal::Pool),
            Owner::Task { dma: false, .. } => Err(PinRefusal::NotDma),
            Owner::Task { dma: true, .. } if f >= start + run.pages => Err(PinRefusal::NotDma),
            Owner::Task { dma: true, .. } => Ok(start..start + run.pages),
        }
    }

    /// Pins every frame of `batch` (a frame may appear more than once: it
    /// is pinned that often). All or nothing: the first refused frame and
    /// why, with nothing changed.
    pub fn pin(&mut self, batch: &[PhysAddr]) -> Result<(), (PhysAddr, PinRefusal)> {
        with_sorted_frames(batch, |frames| {
            // Frames sorted: consecutive ones mostly share a run, looked
            // up once.
            let mut run = 0..0;
            let mut new = 0;
            for g in frames.chunk_by(|a, b| a == b) {
                let (f, k) = (g[0], count(g));
                let pa = Frame(f).addr();
                if !run.contains(&f) {
                    run = self.pinnable_range(f).map_err(|why| (pa, why))?;
                }
                match self.pins.get(&f) {
                    None => new += 1,
                    Some(have) if have.checked_add(k).is_none() => {
                        return Err((pa, PinRefusal::TooManyPins));
                    }
                    Some(_) => {}
                }
            }
            self.pins
                .try_reserve(new)
                .map_err(|_| (Frame(frames[0]).addr(), PinRefusal::NoMemory))?;
            for g in frames.chunk_by(|a, b| a == b) {
                *self.pins.entry(g[0]).or_insert(0) += count(g);
            }
            Ok(())
        })
    }

    /// Unpins every frame of `batch`. All or nothing. Returns the held
    /// frames whose last pin went: they are free now, for the kernel to
    /// give back to the allocator.
    pub fn unpin(&mut self, batch: &[PhysAddr]) -> Result<Vec<Frame>, (PhysAddr, PinRefusal)> {
        with_sorted_frames(batch, |frames| {
            let mut freed = 0;
            for g in frames.chunk_by(|a, b| a == b) {
                let (f, k) = (g[0], count(g));
                match self.pins.get(&f) {
                    Some(&have) if have >= k => {
                        freed += usize::from(have == k && self.held.contains(&f));
                    }
                    _ => return Err((Frame(f).addr(), PinRefusal::NotPinned)),
                }
            }
            let mut out = Vec::new();
            out.try_reserve_exact(freed)
                .map_err(|_| (Frame(frames[0]).addr(), PinRefusal::NoMemory))?;
            for g in frames.chunk_by(|a, b| a == b) {
                let (f, k) = (g[0], count(g));
                if let Some(left) = self.pins.get_mut(&f)
                    && *left > k
                {
                    *left -= k;
                    continue;
                }
                self.pins.remove(&f);
                if self.held.remove(&f) {
                    self.totals.held -= 1;
                    self.totals.free += 1;
                    out.push(Frame(f));
                }
            }
            Ok(out)
        })
    }

    /// Pins on `pa`'s frame.
    pub fn pins_of(&self, pa: PhysAddr) -> u32 {
        Frame::of(pa).map_or(0, |f| self.pins.get(&f.0).copied().unwrap_or(0))
    }

    /// Frames pinned (once or more).
    pub fn pinned_frames(&self) -> u64 {
        self.pins.len() as u64
    }

    /// Frames a task (slot) owns now, and its IOMMU pool frames.
    pub fn task_frames(&self, task: u32) -> u64 {
        self.runs
            .values()
            .filter(|r| match r.owner {
                Owner::Task { task: t, .. } | Owner::Pool { task: t } => t == task,
                Owner::Kernel => false,
            })
            .map(|r| r.frames)
            .sum()
    }

    /// Recomputes every state's total from the runs and the held set and
    /// checks them against the running counters, that they add up to the
    /// boot total, and that every held frame is pinned. `Err` names the
    /// first disagreement.
    pub fn audit(&self) -> Result<Totals, &'static str> {
        let mut t = Totals {
            boot: self.totals.boot,
            free: self.totals.free,
            held: self.held.len() as u64,
            ..Totals::default()
        };
        for r in self.runs.values() {
            match r.owner {
                Owner::Kernel => t.kernel += r.frames,
                Owner::Task { .. } => t.task += r.frames,
                Owner::Pool { .. } => t.pool += r.frames,
            }
        }
        if t != self.totals {
            return Err("the running totals disagree with the runs and the held frames");
        }
        if !t.adds_up() {
            return Err("the states do not add up to the frames handed out at boot");
        }
        if self.held.iter().any(|f| !self.pins.contains_key(f)) {
            return Err("a held frame has no pin");
        }
        Ok(t)
    }
}

/// Splits `[first, first + count)` into naturally aligned power-of-two
/// chunks (what a buddy allocator takes back).
pub fn buddy_chunks(first: Frame, count: u64) -> impl Iterator<Item = (Frame, u64)> {
    let (mut f, end) = (first.0, first.0 + count);
    core::iter::from_fn(move || {
        if f >= end {
            return None;
        }
        let align = if f == 0 {
            1 << 63
        } else {
            1u64 << f.trailing_zeros()
        };
        let mut size = align;
        while size > end - f {
            size >>= 1;
        }
        let chunk = (Frame(f), size);
        f += size;
        Some(chunk)
    })
}

mod after_dma_stop;
pub use after_dma_stop::AfterDmaStop;

#[cfg(test)]
mod tests;
