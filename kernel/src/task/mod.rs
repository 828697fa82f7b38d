//! Tasks and the kernel objects they use: the task table, capabilities,
//! endpoints, and the one lock that guards them. Owns every task's state,
//! saved registers and address space. Policy lives in `sched` (who runs),
//! `syscall` (what a task may ask), `ipc` (messages, notifications) and
//! `lifecycle` (load, fault, exit, death notices). Must never trust a value
//! read from a task before checking it.

pub mod ipc;
pub mod lifecycle;
pub mod loader;
pub mod sched;
pub mod syscall;

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::UnsafeCell;

use abi::syscall::{MSG_MAX, RecvArgs};
use abi::{PhysAddr, StreamId};
use hermit_sync::InterruptSpinMutex;
use kernel_core::death::{Ledger, Slot, TaskRef};
use kernel_core::pci::Function;

use crate::arch::{FpState, TrapFrame};
use crate::mm::user::AddressSpace;

/// Index of a task in the task table.
pub type TaskIdx = usize;

/// Number of scheduling priorities; a higher number is more urgent.
pub const PRIORITIES: usize = 16;

/// A capability: what one slot of a task's table lets it do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    /// Call (`serve == false`) or serve an endpoint; calls carry `badge`.
    Endpoint { ep: usize, serve: bool, badge: u32 },
    /// Set `bits` in `task`'s notification word.
    Notify { task: TaskIdx, bits: u64 },
    /// An interrupt delivered as `1 << bit` in the holder's notification word.
    Irq { intid: u32, bit: u8 },
    /// A block of device registers.
    Mmio { pa: PhysAddr, len: u64 },
    /// A PCI function (index into the kernel's enumeration).
    Pci { function: usize, sid: StreamId },
    /// The IOMMU server's mark: may declare the SMMU enabled.
    SmmuOwner,
    /// A monitor's mark: may read the frame ledger's totals.
    Monitor,
}

/// How a task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// It called exit with this code (101: it panicked).
    Exited(i32),
    /// The kernel stopped it after a fault.
    Faulted,
}

/// Where a task is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Waiting for the CPU.
    Ready,
    /// On the CPU.
    Running,
    /// Its call waits for the server of `ep` to receive it.
    SendBlocked { ep: usize },
    /// Its call was delivered; it waits for `server`'s reply to `call_id`.
    ReplyWait { server: TaskIdx, call_id: u32 },
    /// Waiting in recv on `ep`; delivery writes through `args` and `info`.
    RecvBlocked {
        ep: usize,
        args: RecvArgs,
        info: u64,
        deadline: Option<u64>,
    },
    /// Waiting for notification bits.
    WaitNotify { deadline: Option<u64> },
    /// Sleeping until `deadline` (counter ticks).
    Sleeping { deadline: u64 },
    /// Ended; its memory is reclaimed once every death notice of it
    /// (`Kernel::death_notices`) is answered.
    Dead,
}

impl State {
    /// The counter value at which a blocked task times out.
    pub fn deadline(&self) -> Option<u64> {
        match *self {
            State::RecvBlocked { deadline, .. } | State::WaitNotify { deadline } => deadline,
            State::Sleeping { deadline } => Some(deadline),
            _ => None,
        }
    }
}

/// A call in flight: the message copied out of the caller, and where its
/// reply goes.
#[derive(Clone, Debug)]
pub struct OutgoingCall {
    /// The endpoint.
    pub ep: usize,
    /// The caller's badge on it.
    pub badge: u32,
    /// Message bytes.
    pub msg: [u8; MSG_MAX],
    /// Message length.
    pub len: usize,
    /// Where the reply goes in the caller.
    pub reply_ptr: u64,
    /// Room for it.
    pub reply_cap: u64,
    /// Frames granted, checked to be the caller's DMA memory.
    pub grant: Vec<PhysAddr>,
    /// The caller's address of the grant.
    pub grant_va: u64,
    /// Granted bytes.
    pub grant_len: u64,
    /// (kind, a, b) of a presented capability.
    pub presented: (u32, u32, u32),
}

/// One task.
pub struct Task {
    /// Its name from the system description.
    pub name: String,
    /// Bumped each time the slot is reused, so stale reply tokens fail.
    pub generation: u16,
    /// Scheduling priority, higher is more urgent.
    pub priority: u8,
    /// Where it is.
    pub state: State,
    /// How it ended, once it has.
    pub end: Option<End>,
    /// Saved registers while it is not running.
    pub ctx: TrapFrame,
    /// Its FP/SIMD registers, saved and loaded by the vectors (boxed: the
    /// vectors hold its address while the task runs).
    pub fp: Box<UnsafeCell<FpState>>,
    /// Its memory; `None` once reclaimed.
    pub space: Option<AddressSpace>,
    /// Its capability table.
    pub caps: Vec<Cap>,
    /// Pending notification bits.
    pub notify_bits: u64,
    /// DMA quota and use, in pages.
    pub dma_quota: u64,
    /// Pages allocated with `dma_alloc`.
    pub dma_used: u64,
    /// Its call in flight.
    pub call: Option<OutgoingCall>,
    /// Sequence number of its latest call.
    pub call_seq: u32,
    /// Restart it (a fresh instance from the boot image) when it fails.
    pub restart: bool,
    /// Counter ticks it ran, kernel time on its behalf included.
    pub cpu_ticks: u64,
}

impl Task {
    /// Whether it serves an endpoint (a daemon: the run does not wait for
    /// it to end).
    pub fn is_server(&self) -> bool {
        self.caps
            .iter()
            .any(|c| matches!(c, Cap::Endpoint { serve: true, .. }))
    }
}

/// An IPC endpoint.
pub struct Endpoint {
    /// Its name.
    pub name: String,
    /// The task serving it.
    pub server: TaskIdx,
    /// Whether the server wants `ClientDied` messages.
    pub death_notices: bool,
    /// Callers waiting for the server to receive.
    pub senders: VecDeque<TaskIdx>,
}

/// An interrupt bound to a task.
#[derive(Clone, Copy, Debug)]
pub struct IrqBinding {
    /// The task that holds the capability.
    pub task: TaskIdx,
    /// Its notification bit.
    pub bit: u8,
    /// Masked until the task acknowledges it.
    pub masked: bool,
}

/// Everything the syscalls act on.
pub struct Kernel {
    /// The task table.
    pub tasks: Vec<Task>,
    /// The endpoints.
    pub endpoints: Vec<Endpoint>,
    /// Death notices owed: queued on their endpoints, or delivered and
    /// awaiting their one answer (the dead task's memory waits for them).
    pub death_notices: Ledger<Box<[Slot]>>,
    /// The running task.
    pub current: Option<TaskIdx>,
    /// Ready queues, one per priority.
    pub ready: [VecDeque<TaskIdx>; PRIORITIES],
    /// Task-owned interrupts by INTID.
    pub irqs: BTreeMap<u32, IrqBinding>,
    /// Set by the IOMMU server once the SMMU translates: bus mastering may
    /// be enabled from then on.
    pub smmu_enabled: bool,
    /// A tick asked for round-robin among equal priorities.
    pub resched: bool,
    /// The PCI functions found at boot.
    pub pci: Vec<Function>,
    /// The boot image, the device tree and the PA size, kept to restart
    /// tasks from.
    pub boot: Option<(
        bootimage::BootImage<'static>,
        kernel_core::dt::Platform<'static>,
        u8,
    )>,
    /// Free frames once the tasks were loaded: when every task has ended
    /// and been reclaimed, the count must be back to this plus what their
    /// loading took (checked at the end of the run).
    pub frames_free_before_load: usize,
    /// What an I/O path's handoffs cost, counted since boot
    /// (`Sysno::KernelStats`).
    pub counters: abi::KernelCounters,
    /// The task address space installed (root table, tag), if any.
    pub user_space: Option<(abi::PhysAddr, abi::Asid)>,
    /// When the running task's time was last charged (counter ticks).
    pub charged_at: u64,
    /// The deadline the timer was last armed for and whose it is;
    /// forgotten on every timer interrupt ([`kernel_core::alarm`]).
    pub armed: Option<(u64, TaskIdx)>,
}

/// The kernel's objects. Taken with interrupts masked (the kernel never
/// runs with them unmasked except while idle, when it does not hold this).
pub static KERNEL: InterruptSpinMutex<Option<Kernel>> = InterruptSpinMutex::new(None);

/// Reply tokens of calls: task index, generation and call id in one `u64`.
/// A token is valid only while that very call waits for its reply. Bit 63
/// is never set (task indices are below 2^15): tokens with it set name
/// death notices ([`kernel_core::death::TOKEN_TAG`]), issued and checked
/// by `Kernel::death_notices`.
pub mod token {
    /// Encodes a token.
    pub fn encode(task: usize, generation: u16, call_id: u32) -> u64 {
        (((task as u64) & 0x7fff) << 48) | (u64::from(generation) << 32) | u64::from(call_id)
    }

    /// Decodes a token: (task, generation, call id).
    pub fn decode(t: u64) -> (usize, u16, u32) {
        ((t >> 48) as usize, (t >> 32) as u16, t as u32)
    }
}

impl Kernel {
    /// Task `t`'s current instance, as the death-notice ledger names it
    /// (task indices and generations fit: at most `MAX_TASKS` tasks).
    pub fn task_ref(&self, t: TaskIdx) -> TaskRef {
        TaskRef {
            index: t as u16,
            generation: self.tasks[t].generation,
        }
    }
}

/// Runs `f` on the kernel's objects with the running task's index.
pub fn with_current(f: impl FnOnce(&mut Kernel, TaskIdx)) {
    let mut guard = KERNEL.lock();
    let k = guard.as_mut().expect("tasks exist once user mode runs");
    if let Some(t) = k.current {
        f(k, t);
    }
}

/// The timer ticked: equal-priority tasks take turns.
pub fn on_tick() {
    if let Some(k) = KERNEL.lock().as_mut() {
        k.resched = true;
        k.counters.interrupts += 1;
        // The interrupt handler re-armed the tick: what the timer was armed
        // for is gone.
        k.armed = None;
    }
}

/// A task-owned interrupt fired: mask it until the task acknowledges it and
/// set its notification bit. Returns false if no task owns `intid`.
pub fn on_irq(intid: u32) -> bool {
    let mut guard = KERNEL.lock();
    let Some(k) = guard.as_mut() else {
        return false;
    };
    let Some(b) = k.irqs.get_mut(&intid) else {
        return false;
    };
    b.masked = true;
    let (task, bit) = (b.task, b.bit);
    crate::arch::irq::mask(intid);
    ipc::signal(k, task, 1 << bit);
    k.counters.interrupts += 1;
    k.counters.notifications += 1;
    true
}

/// Installs the loaded tasks and runs the first one. Never returns: the
/// run ends in the scheduler when nothing can run any more.
pub fn start(k: Kernel) -> ! {
    *KERNEL.lock() = Some(k);
    crate::arch::allow_user_counter();
    let mut frame = TrapFrame::default();
    sched::schedule(&mut frame);
    crate::arch::enter_user(&frame)
}
