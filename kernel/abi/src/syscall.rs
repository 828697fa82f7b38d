//! The syscall ABI: numbers, register conventions and the argument blocks
//! some calls pass by pointer. One definition, used by the kernel's
//! dispatcher and by `userlib`'s wrappers.
//!
//! Convention: `svc #0` with the syscall number in x8 and arguments in
//! x0..x5. On return x0 is 0 on success or an [`Error`](crate::Error) code,
//! and results are in x1..x3. Registers other than x0..x3 are preserved.

crate::stable_codes! {
    /// Syscall numbers (x8). A number no variant has is answered with
    /// [`Error::BadSyscall`](crate::Error::BadSyscall).
    pub enum Sysno: u64 {
        /// `log(ptr, len)`: writes a line to the kernel console, prefixed with
        /// the task's name. At most [`LOG_MAX`] bytes.
        Log = 0,
        /// `exit(code)`: ends the calling task. Never returns.
        Exit = 1,
        /// `yield() -> peers`: gives the CPU to another ready task of equal
        /// priority; `peers` is 1 if there was one (it ran before the call
        /// returns), 0 if the caller kept the CPU.
        Yield = 2,
        /// `call(&CallArgs) -> reply_len`: sends a message on an endpoint the
        /// caller holds a call capability for, optionally with a page grant and
        /// a presented capability, and blocks until the server replies.
        Call = 3,
        /// `recv(&RecvArgs, &mut RecvInfo)`: waits for a message on an endpoint
        /// the caller serves, or for a notification, or for the timeout.
        Recv = 4,
        /// `reply(token, ptr, len)`: answers a call received earlier, now or
        /// much later (held replies). A reply longer than the caller's
        /// `reply_cap` is `BufferTooSmall` for both: the call ends with that
        /// error (the caller never waits for a reply that cannot land) and
        /// the token is used up.
        Reply = 5,
        /// `notify(cap, bits)`: ORs `bits` into the notification word of the
        /// task the notification capability names.
        Notify = 6,
        /// `wait(timeout_us) -> bits`: waits until the caller's notification
        /// word is non-zero (then clears and returns it) or the timeout.
        Wait = 7,
        /// `irq_ack(cap)`: re-enables an interrupt after its notification was
        /// handled.
        IrqAck = 8,
        /// `dma_alloc(pages) -> (va, len, pa)`: allocates zeroed, physically
        /// contiguous memory owned by the caller, within its quota, mapped
        /// read-write. Such memory can be granted (e.g. to the IOMMU server).
        /// `pa` is its physical address for the holder of an SMMU-owner
        /// capability (the IOMMU server puts it in SMMU tables), 0 for others:
        /// no other task ever learns a physical address.
        DmaAlloc = 9,
        /// `mmio_map(cap) -> (va, len)`: maps the MMIO region the capability
        /// names into the caller as device memory.
        MmioMap = 10,
        /// `time() -> (ticks, hz)`: the architected counter and its frequency.
        Time = 11,
        /// `sleep(us)`: blocks for at least `us` microseconds.
        Sleep = 12,
        /// `pci_config_read(cap, offset) -> value`: a 32-bit read of the PCI
        /// function's configuration space.
        PciConfigRead = 13,
        /// `pci_config_write(cap, offset, value)`: a 32-bit write (a wider
        /// `value` is refused); BAR registers are refused, bus mastering is
        /// refused until the IOMMU server has declared the SMMU enabled.
        PciConfigWrite = 14,
        /// `pci_map_bar(cap, bar) -> (va, len)`: maps a memory BAR of the
        /// function as device memory.
        PciMapBar = 15,
        /// `smmu_enabled(owner_cap)`: the IOMMU server declares that the SMMU
        /// translates (SMMUEN = 1, every unattached stream aborts). From then on
        /// drivers may enable bus mastering; before, DMA would bypass the SMMU.
        SmmuEnabled = 16,
        /// `integrity() -> (intact, checksum)`: recomputes the checksum of the
        /// kernel's code and read-only data taken at boot; `intact` is 1 when
        /// it is unchanged. Any task may ask: the isolation demos use it to show
        /// that rogue DMA aimed at the kernel image changed nothing.
        Integrity = 17,
        /// `frame_pins(owner_cap, op, ptr, count) -> (freed, pinned)`: the
        /// IOMMU server pins (`op` = [`PinOp::Pin`]) or unpins
        /// ([`PinOp::Unpin`]) a batch of `count` frames (at most
        /// [`PIN_BATCH_MAX`]) whose physical addresses are the `u64`s at
        /// `ptr`. A pinned frame never returns to the allocator: if its owner
        /// dies it is *held for DMA* until its last pin goes. The server pins
        /// every frame it maps for a device and unpins it once the sync that
        /// covers the unmap has completed. Only the holder of the SMMU-owner
        /// capability may (`WrongCapKind`). All or nothing: a pin of a frame
        /// that is not `dma_alloc` memory of a live task (kernel memory, page
        /// tables, the IOMMU pool, MMIO, free or held frames) is
        /// `NotDmaMemory`, an unpin of a frame not pinned that often is
        /// `NotPinned`, an unaligned address or unknown `op` is
        /// `BadArgument`; a refused batch changes nothing. Returns the held
        /// frames an unpin freed and the frames pinned now.
        FramePins = 18,
        /// `frame_stats(monitor_cap) -> FrameCounts::to_regs()`: the
        /// kernel's frame ledger by state (free, kernel, task, IOMMU pool,
        /// held for DMA) and the boot total, as [`FrameCounts`] packs them
        /// into three registers. Only the holder of a monitor capability
        /// may (`WrongCapKind`): what the whole machine holds is not every
        /// task's business. A soak's leak accounting reads it.
        FrameStats = 19,
        /// `kernel_stats(monitor_cap, ptr, len, flags) -> (bytes, tasks)`:
        /// what the kernel counted since boot, for measuring what an I/O
        /// costs: [`KernelCounters`] (`KernelCounters::BYTES` bytes at
        /// `ptr`), then [`LatencyPeaks`] (`LatencyPeaks::BYTES`), then one
        /// [`TASK_TIME_BYTES`]-byte record per task slot that fits in `len`
        /// (its name, NUL-padded to [`TASK_NAME_MAX`] bytes, and the counter
        /// ticks it ran, kernel time on its behalf included). `flags` bit 0
        /// ([`KERNEL_STATS_RESET_PEAKS`]) starts new peaks after reading
        /// them; other bits are `BadArgument`. Only the holder of a monitor
        /// capability may (`WrongCapKind`); `len` below the counters and
        /// peaks is `BufferTooSmall`. Returns the bytes written and the
        /// number of task slots.
        KernelStats = 20,
        /// `grant_copy(token, op, offset, ptr, len) -> copied`: a server
        /// copies between its own memory `[ptr, ptr + len)` and
        /// `[offset, offset + len)` of the grant that came with the call
        /// whose reply token is `token` (still waiting for this task's
        /// reply): [`GrantCopyOp::Read`] copies grant → caller,
        /// [`GrantCopyOp::Write`] caller → grant. This is how a message
        /// too large for [`MSG_MAX`] (an Ethernet frame) reaches a server
        /// that receives a grant only as physical frames. A grant is only
        /// ever `dma_alloc` memory (normal, read-write) of the client, which
        /// a device the server drives could read and write anyway: the copy
        /// gives the server nothing the grant did not. At most
        /// [`GRANT_COPY_MAX`] bytes per call (`TooLarge`), so the kernel's
        /// time in one syscall stays bounded. A token not waiting on this
        /// task is `BadReplyToken`; no grant, or a range outside it,
        /// `Denied`; the caller's range not readable (write) or writable
        /// (read) user memory, `BadAddress`; an unknown `op`,
        /// `BadArgument`. A refused call copies nothing; `len` 0 copies
        /// nothing and checks no more than `op`. Returns the bytes copied
        /// (`len`).
        GrantCopy = 21,
        /// `reply_recv(&RecvArgs, &mut RecvInfo, token, ptr, len)`: the
        /// [`Reply`](Sysno::Reply) of `token` with `ptr, len`, then the
        /// [`Recv`](Sysno::Recv) of the first two arguments, in one trap:
        /// a server's answer and its wait for the next request. On an
        /// error the first value register says which step refused: 1 the
        /// reply (nothing was received; the token is as `Reply` leaves it),
        /// 0 the receive (the reply went out).
        ReplyRecv = 22,
    }
}

/// The value [`Sysno::ReplyRecv`] leaves in its first value register when
/// its reply step was refused (nothing was received).
pub const REPLY_STEP_REFUSED: u64 = 1;

crate::stable_codes! {
    /// The `op` of [`Sysno::GrantCopy`].
    pub enum GrantCopyOp: u64 {
        /// From the call's grant into the caller's memory.
        Read = 0,
        /// From the caller's memory into the call's grant.
        Write = 1,
    }
}

/// Most bytes one [`Sysno::GrantCopy`] call may copy (64 KiB): a bound on
/// the kernel's time in one syscall.
pub const GRANT_COPY_MAX: usize = 64 * 1024;

/// [`Sysno::KernelStats`] flag: start new [`LatencyPeaks`] after reading.
pub const KERNEL_STATS_RESET_PEAKS: u64 = 1;

/// Bytes before the task records in a [`Sysno::KernelStats`] answer: the
/// [`KernelCounters`], then the [`LatencyPeaks`].
pub const KERNEL_STATS_HEAD_BYTES: usize = KernelCounters::BYTES + LatencyPeaks::BYTES;

/// Bytes of a task name in a [`Sysno::KernelStats`] record.
pub const TASK_NAME_MAX: usize = 32;
/// Bytes of one task's record after the counters: name, then ticks.
pub const TASK_TIME_BYTES: usize = TASK_NAME_MAX + 8;

/// What the kernel counts since boot ([`Sysno::KernelStats`]): the costs
/// of a task handoff that an I/O path pays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// Address-space switches: TTBR0 writes that changed the value (the
    /// ASID), each of which costs QEMU a software-TLB flush.
    pub as_switches: u64,
    /// Syscalls taken.
    pub syscalls: u64,
    /// `Call` syscalls (IPC requests).
    pub ipc_calls: u64,
    /// `Reply` syscalls (IPC answers).
    pub ipc_replies: u64,
    /// Notifications delivered: `Notify` syscalls and device interrupts
    /// turned into notification bits.
    pub notifications: u64,
    /// Interrupts taken (the timer's included).
    pub interrupts: u64,
    /// Tasks woken by a deadline (a timed wait or sleep that ran out).
    pub timer_wakeups: u64,
    /// Writes of the timer's compare value (CNTV_CVAL_EL0, or the local
    /// APIC's one-shot count): re-arms for a nearer or later deadline and
    /// for the next tick. Under TCG each costs 9-23 µs (QEMU takes its
    /// global lock and re-arms a host timer).
    pub timer_writes: u64,
}

impl KernelCounters {
    /// Counters, in wire order.
    pub const FIELDS: usize = 8;
    /// Bytes on the wire: little-endian `u64`s in field order.
    pub const BYTES: usize = Self::FIELDS * 8;

    /// The counters in wire order.
    pub fn to_array(&self) -> [u64; Self::FIELDS] {
        [
            self.as_switches,
            self.syscalls,
            self.ipc_calls,
            self.ipc_replies,
            self.notifications,
            self.interrupts,
            self.timer_wakeups,
            self.timer_writes,
        ]
    }

    /// From the wire order.
    pub fn from_array(a: [u64; Self::FIELDS]) -> Self {
        let [
            as_switches,
            syscalls,
            ipc_calls,
            ipc_replies,
            notifications,
            interrupts,
            timer_wakeups,
            timer_writes,
        ] = a;
        Self {
            as_switches,
            syscalls,
            ipc_calls,
            ipc_replies,
            notifications,
            interrupts,
            timer_wakeups,
            timer_writes,
        }
    }

    /// `self - earlier`, field by field (saturating).
    pub fn since(&self, earlier: &Self) -> Self {
        let (a, b) = (self.to_array(), earlier.to_array());
        Self::from_array(core::array::from_fn(|i| a[i].saturating_sub(b[i])))
    }
}

/// Latency peaks the kernel measured since they were last reset
/// ([`Sysno::KernelStats`]), in µs. What a task's wake-up waits for: the
/// timer interrupt (late when the machine delivers it late, or the kernel
/// had IRQs masked), the kernel noticing the deadline, and the kernel's own
/// masked stretches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencyPeaks {
    /// Largest delay from the timer's compare value to its interrupt
    /// handler.
    pub timer_irq_late_us: u64,
    /// Largest delay from a task's deadline (timed wait or sleep) to the
    /// kernel making it ready.
    pub wake_late_us: u64,
    /// Longest time the kernel ran one trap with IRQs masked (idle waits
    /// excluded).
    pub irqs_masked_us: u64,
}

impl LatencyPeaks {
    /// Peaks, in wire order.
    pub const FIELDS: usize = 3;
    /// Bytes on the wire: little-endian `u64`s in field order.
    pub const BYTES: usize = Self::FIELDS * 8;

    /// The peaks in wire order.
    pub fn to_array(&self) -> [u64; Self::FIELDS] {
        [
            self.timer_irq_late_us,
            self.wake_late_us,
            self.irqs_masked_us,
        ]
    }

    /// From the wire order.
    pub fn from_array(a: [u64; Self::FIELDS]) -> Self {
        let [timer_irq_late_us, wake_late_us, irqs_masked_us] = a;
        Self {
            timer_irq_late_us,
            wake_late_us,
            irqs_masked_us,
        }
    }
}

/// The frame ledger's totals by state, as [`Sysno::FrameStats`] returns
/// them: each count in 32 bits (a frame is 4 KiB, so 16 TiB of RAM),
/// two per register.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameCounts {
    /// Frames the allocator can hand out.
    pub free: u32,
    /// Frames the kernel holds (its heap, task page tables, kernel stacks).
    pub kernel: u32,
    /// Frames tasks hold (images, stacks, heaps, `dma_alloc` memory).
    pub task: u32,
    /// The IOMMU server's pool (its page tables and queues).
    pub pool: u32,
    /// Frames of dead tasks a device may still reach (pinned).
    pub held: u32,
    /// Frames the ledger had at boot: the sum of the others.
    pub boot: u32,
}

impl FrameCounts {
    /// The three return registers.
    pub fn to_regs(self) -> [u64; 3] {
        let pair = |lo: u32, hi: u32| u64::from(lo) | u64::from(hi) << 32;
        [
            pair(self.free, self.kernel),
            pair(self.task, self.pool),
            pair(self.held, self.boot),
        ]
    }

    /// From the three return registers.
    pub fn from_regs(r: [u64; 3]) -> Self {
        let lo = |v: u64| v as u32;
        let hi = |v: u64| (v >> 32) as u32;
        Self {
            free: lo(r[0]),
            kernel: hi(r[0]),
            task: lo(r[1]),
            pool: hi(r[1]),
            held: lo(r[2]),
            boot: hi(r[2]),
        }
    }

    /// Whether the states add up to the boot total.
    pub fn consistent(&self) -> bool {
        [self.free, self.kernel, self.task, self.pool, self.held]
            .iter()
            .map(|&v| u64::from(v))
            .sum::<u64>()
            == u64::from(self.boot)
    }
}

crate::stable_codes! {
    /// The `op` of [`Sysno::FramePins`].
    pub enum PinOp: u64 {
        /// Pin every frame of the batch (once per occurrence).
        Pin = 0,
        /// Unpin every frame of the batch (once per occurrence).
        Unpin = 1,
    }
}

/// Most frames one [`Sysno::FramePins`] call may name.
pub const PIN_BATCH_MAX: usize = 4096;

/// Longest console line a task may log, in bytes.
pub const LOG_MAX: usize = 512;
/// Largest message payload (either direction), in bytes. It sets how many
/// I/Os one block `Submit` and how many ranges one IOMMU `Map` or `Unmap`
/// carry, hence how many IPC round trips (each two address-space switches)
/// an I/O costs: at 256 bytes (10 I/Os per `Submit`) the benchmark paid
/// 0.84 switches per I/O at QD32, at 1,024 (42) 0.25, and its bypass IOPS
/// rose 2.7× (docs/BENCHMARKS.md).
pub const MSG_MAX: usize = 1024;
/// Most pages one call may grant.
pub const GRANT_MAX_PAGES: usize = 512;
/// `timeout_us` meaning "wait forever".
pub const FOREVER: u64 = u64::MAX;
/// `present_cap` / capability index meaning "none".
pub const NO_CAP: u32 = u32::MAX;

/// Arguments of [`Sysno::Call`], read by the kernel from the caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct CallArgs {
    /// Capability index of the endpoint (call right).
    pub endpoint: u32,
    /// A capability the caller shows the server (e.g. a PCI device), or
    /// [`NO_CAP`]. The server learns what it is, not the capability itself.
    pub present_cap: u32,
    /// The request message.
    pub send_ptr: u64,
    /// Its length, at most [`MSG_MAX`].
    pub send_len: u64,
    /// Where the reply goes.
    pub reply_ptr: u64,
    /// Room for the reply, at most [`MSG_MAX`] is ever written.
    pub reply_cap: u64,
    /// Start of memory the caller owns and grants for this call (page
    /// offset kept), or 0. With `forward` set: the offset into the grant
    /// being forwarded.
    pub grant_ptr: u64,
    /// Bytes granted (0: no grant). At most [`GRANT_MAX_PAGES`] pages.
    pub grant_len: u64,
    /// 0, or the reply token of a call this task received and has not yet
    /// answered: the grant is then a sub-range of that call's grant (memory
    /// its caller owns), passed on without the caller's memory ever being
    /// mapped here. This is how a driver lets the IOMMU server map its
    /// client's buffer for the device (zero copy).
    pub forward: u64,
}

/// Arguments of [`Sysno::Recv`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct RecvArgs {
    /// Capability index of the endpoint (serve right).
    pub endpoint: u32,
    /// [`RECV_UNTIL`] or zero; any other bit is refused (`BadArgument`).
    pub flags: u32,
    /// Where the message goes.
    pub buf_ptr: u64,
    /// Its room in bytes.
    pub buf_cap: u64,
    /// Where the granted pages' physical addresses go (one `u64` each).
    pub frames_ptr: u64,
    /// Room, in entries. 0: the receiver does not want the frame list (it
    /// may still forward the grant); a call whose grant does not fit a
    /// non-zero room is refused with `BufferTooSmall`.
    pub frames_cap: u64,
    /// Microseconds to wait, or [`FOREVER`]; with [`RECV_UNTIL`], the
    /// counter value to wait until (user mode's counter, the clock of
    /// `Time`; one already passed times out at once).
    pub timeout: u64,
}

/// [`RecvArgs::flags`]: `timeout` is the counter value to wait until, not
/// a length. A server that keeps one deadline across many receives then
/// hands the kernel the same value each time, and the kernel's timer is
/// not re-armed for it (a relative timeout lands on another counter value
/// at every receive; writing the timer's compare register costs 9–21 µs
/// under QEMU TCG).
pub const RECV_UNTIL: u32 = 1;

/// What [`Sysno::Recv`] delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum RecvKind {
    /// A call: `badge`, `len`, `reply`, grant and presented capability are
    /// valid.
    Call = 1,
    /// The notification word was non-zero: `notification` holds the bits
    /// (now cleared).
    Notification = 2,
    /// The timeout expired with nothing delivered.
    Timeout = 3,
    /// A client holding a call capability on this endpoint died. `badge`
    /// names it; `reply` must be answered once every resource the server
    /// holds for it is released (the kernel reuses the client's memory only
    /// after that reply).
    ClientDied = 4,
}

impl RecvKind {
    /// The kind for a raw value.
    pub fn from_u32(v: u32) -> Option<RecvKind> {
        match v {
            1 => Some(RecvKind::Call),
            2 => Some(RecvKind::Notification),
            3 => Some(RecvKind::Timeout),
            4 => Some(RecvKind::ClientDied),
            _ => None,
        }
    }
}

/// Kinds of capability a caller can present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum PresentedKind {
    /// Nothing presented.
    None = 0,
    /// A PCI function: `a` = requester ID (bus:dev.fn), `b` = StreamID.
    PciDevice = 1,
}

/// Filled in by [`Sysno::Recv`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct RecvInfo {
    /// A [`RecvKind`] value.
    pub kind: u32,
    /// The caller's badge (set by the system description, unforgeable).
    pub badge: u32,
    /// Message length in bytes.
    pub len: u32,
    /// Number of granted pages written to `frames_ptr`.
    pub frames: u32,
    /// The reply token for [`Sysno::Reply`].
    pub reply: u64,
    /// Notification bits (for [`RecvKind::Notification`]).
    pub notification: u64,
    /// The caller's virtual address of the grant (page offset included).
    pub grant_va: u64,
    /// Granted bytes.
    pub grant_len: u64,
    /// A [`PresentedKind`] value.
    pub presented_kind: u32,
    /// Presented capability, first datum.
    pub presented_a: u32,
    /// Presented capability, second datum.
    pub presented_b: u32,
    /// For a call: how many more calls were queued on the endpoint when it
    /// was delivered (a hint: more may come at any time; callers that died
    /// meanwhile may still be counted). Zero for the other kinds.
    pub queued: u32,
}

/// Fixed places in every task's address space.
pub mod layout {
    /// Top of the initial stack (the stack grows down from here).
    pub const STACK_TOP: u64 = 0x0000_7fff_0000_0000;
    /// Stack size given to every task.
    pub const STACK_SIZE: u64 = 64 * 1024;
    /// The read-only task information page (name, capability names,
    /// arguments): its address is also passed in x0 at entry, and the
    /// task's incarnation (0 at boot, +1 at each restart) in x1.
    pub const TASK_INFO: u64 = 0x0000_7ffe_0000_0000;
    /// Where `dma_alloc` places memory.
    pub const DMA_BASE: u64 = 0x0000_1000_0000_0000;
    /// Where `mmio_map` and `pci_map_bar` place device memory.
    pub const MMIO_BASE: u64 = 0x0000_2000_0000_0000;
    /// ELF segments must lie below this address.
    pub const IMAGE_LIMIT: u64 = 0x0000_0100_0000_0000;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ABI as shipped: every syscall's number. A renumbering, a
    /// reordering, a syscall missing from `ALL` (hence answered
    /// `BadSyscall`) or one added without an entry here fails.
    const GOLDEN: [(Sysno, u64); 23] = [
        (Sysno::Log, 0),
        (Sysno::Exit, 1),
        (Sysno::Yield, 2),
        (Sysno::Call, 3),
        (Sysno::Recv, 4),
        (Sysno::Reply, 5),
        (Sysno::Notify, 6),
        (Sysno::Wait, 7),
        (Sysno::IrqAck, 8),
        (Sysno::DmaAlloc, 9),
        (Sysno::MmioMap, 10),
        (Sysno::Time, 11),
        (Sysno::Sleep, 12),
        (Sysno::PciConfigRead, 13),
        (Sysno::PciConfigWrite, 14),
        (Sysno::PciMapBar, 15),
        (Sysno::SmmuEnabled, 16),
        (Sysno::Integrity, 17),
        (Sysno::FramePins, 18),
        (Sysno::FrameStats, 19),
        (Sysno::KernelStats, 20),
        (Sysno::GrantCopy, 21),
        (Sysno::ReplyRecv, 22),
    ];

    #[test]
    fn numbers_are_the_golden_ones() {
        assert_eq!(Sysno::ALL.len(), GOLDEN.len());
        for (s, (want, code)) in Sysno::ALL.iter().zip(GOLDEN) {
            assert_eq!((*s, s.code()), (want, code));
            assert_eq!(s.name(), format!("{s:?}"));
        }
    }

    #[test]
    fn frame_counts_round_trip_through_registers() {
        let c = FrameCounts {
            free: u32::MAX,
            kernel: 1,
            task: 0x8000_0000,
            pool: 1024,
            held: 0,
            boot: 7,
        };
        assert_eq!(FrameCounts::from_regs(c.to_regs()), c);
        assert!(!c.consistent());
        let ok = FrameCounts {
            free: 10,
            kernel: 2,
            task: 3,
            pool: 4,
            held: 1,
            boot: 20,
        };
        assert!(ok.consistent());
    }

    #[test]
    fn kernel_counters_round_trip_and_subtract() {
        let a = KernelCounters::from_array([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(a.to_array(), [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(a.timer_writes, 8);
        let b = KernelCounters::from_array([11, 12, 13, 14, 15, 16, 17, 18]);
        assert_eq!(b.since(&a).to_array(), [10; 8]);
        assert_eq!(a.since(&b), KernelCounters::default());
    }

    #[test]
    fn pin_ops_are_the_golden_ones() {
        assert_eq!(PinOp::ALL.map(PinOp::code), [0, 1]);
        assert_eq!(PinOp::from_code(2), None);
    }

    #[test]
    fn grant_copy_ops_are_the_golden_ones() {
        assert_eq!(GrantCopyOp::ALL.map(GrantCopyOp::code), [0, 1]);
        assert_eq!(GrantCopyOp::from_code(2), None);
    }

    #[test]
    fn every_syscall_is_dispatchable_and_numbers_are_unique() {
        for s in Sysno::ALL {
            assert_eq!(Sysno::from_code(s.code()), Some(s));
        }
        let mut codes = Sysno::ALL.map(Sysno::code);
        codes.sort_unstable();
        assert!(codes.windows(2).all(|w| w[0] < w[1]), "duplicate number");
    }

    #[test]
    fn all_lists_every_number_from_code_knows() {
        let known = (0..=4096)
            .chain([u64::from(u32::MAX), u64::MAX])
            .filter_map(Sysno::from_code);
        for s in known {
            assert!(Sysno::ALL.contains(&s), "{s:?} missing from ALL");
        }
        assert_eq!(Sysno::from_code(23), None);
        assert_eq!(Sysno::from_code(u64::MAX), None);
    }
}
