//! The syscall dispatcher: decodes a trapped syscall, checks every argument
//! in a fixed order (syscall number, then capability index and kind, then
//! pointers and lengths, then quota and state), and only then acts. A
//! refused call changes nothing and returns its error code as the status. Never
//! panics on task input.

use alloc::string::String;
use alloc::vec::Vec;
use core::mem::size_of;

use abi::syscall::{
    CallArgs, FOREVER, GRANT_COPY_MAX, GRANT_MAX_PAGES, GrantCopyOp, LOG_MAX, MSG_MAX, NO_CAP,
    PIN_BATCH_MAX, PinOp, PresentedKind, RECV_UNTIL, RecvArgs, RecvInfo,
};
use abi::{Error, PAGE_SIZE, SysResult, Sysno};

use kernel_core::ledger::PinRefusal;
use kernel_core::pci::regs::{self as pci_regs, Command};

use super::ipc::{self, set_result};
use super::{Cap, Kernel, OutgoingCall, State, TaskIdx};
use crate::arch::UserFrame;
use crate::timeout::us_to_ticks;
use crate::{arch, kprintln};

/// PCI configuration-space offsets a driver may not write: the six BAR
/// slots of a type-0 header and its expansion ROM BAR. The kernel assigned
/// them.
const PCI_BAR_REGS: core::ops::Range<u16> =
    pci_regs::BAR0..pci_regs::BAR0 + 4 * pci_regs::BARS_TYPE0 as u16;

/// Handles the syscall that task `t` trapped with (registers in its ctx).
pub fn dispatch(k: &mut Kernel, t: TaskIdx) {
    let x = k.tasks[t].ctx.syscall_args();
    k.counters.syscalls += 1;
    let Some(no) = Sysno::from_code(k.tasks[t].ctx.syscall_number()) else {
        set_result(k, t, Err(Error::BadSyscall));
        return;
    };
    let r: Option<SysResult<[u64; 3]>> = match no {
        Sysno::Log => Some(log(k, t, x[0], x[1]).map(|_| [0; 3])),
        Sysno::Exit => {
            super::lifecycle::end(k, t, super::End::Exited(x[0] as i32));
            None
        }
        Sysno::Yield => {
            k.resched = true;
            let prio = k.tasks[t].priority;
            let peers = k.highest_ready().is_some_and(|p| p >= prio);
            Some(Ok([u64::from(peers), 0, 0]))
        }
        Sysno::Call => {
            k.counters.ipc_calls += 1;
            call(k, t, x[0])
        }
        Sysno::Recv => recv(k, t, x[0], x[1]),
        Sysno::Reply => {
            k.counters.ipc_replies += 1;
            Some(reply(k, t, x[0], x[1], x[2]).map(|_| [0; 3]))
        }
        Sysno::ReplyRecv => {
            k.counters.ipc_replies += 1;
            // Which step an error belongs to goes in the first value
            // register, which an error leaves as it is.
            match reply(k, t, x[2], x[3], x[4]) {
                Err(e) => {
                    k.tasks[t]
                        .ctx
                        .set_syscall_ok([abi::syscall::REPLY_STEP_REFUSED, 0, 0]);
                    Some(Err(e))
                }
                Ok(()) => {
                    k.tasks[t].ctx.set_syscall_ok([0; 3]);
                    recv(k, t, x[0], x[1])
                }
            }
        }
        Sysno::Notify => Some(notify(k, t, x[0], x[1]).map(|_| [0; 3])),
        Sysno::Wait => wait(k, t, x[0]),
        Sysno::IrqAck => Some(irq_ack(k, t, x[0]).map(|_| [0; 3])),
        Sysno::DmaAlloc => Some(dma_alloc(k, t, x[0])),
        Sysno::MmioMap => Some(mmio_map(k, t, x[0])),
        Sysno::Time => Some(Ok([arch::counter(), arch::counter_hz(), 0])),
        Sysno::Sleep => sleep(k, t, x[0]),
        Sysno::PciConfigRead => Some(pci_config_read(k, t, x[0], x[1])),
        Sysno::PciConfigWrite => Some(pci_config_write(k, t, x[0], x[1], x[2]).map(|_| [0; 3])),
        Sysno::PciMapBar => Some(pci_map_bar(k, t, x[0], x[1])),
        Sysno::SmmuEnabled => Some(smmu_enabled(k, t, x[0]).map(|_| [0; 3])),
        Sysno::Integrity => {
            let (intact, sum) = crate::integrity::check();
            Some(Ok([u64::from(intact), sum, 0]))
        }
        Sysno::FramePins => Some(frame_pins(k, t, x[0], x[1], x[2], x[3])),
        Sysno::FrameStats => Some(frame_stats(k, t, x[0])),
        Sysno::KernelStats => Some(kernel_stats(k, t, x[0], x[1], x[2], x[3])),
        Sysno::GrantCopy => Some(grant_copy(k, t, x[0], x[1], x[2], x[3], x[4])),
    };
    if let Some(r) = r {
        set_result(k, t, r);
    }
}

fn cap(k: &Kernel, t: TaskIdx, index: u64) -> SysResult<Cap> {
    k.tasks[t]
        .caps
        .get(usize::try_from(index).map_err(|_| Error::BadCap)?)
        .copied()
        .ok_or(Error::BadCap)
}

fn space(k: &Kernel, t: TaskIdx) -> &crate::mm::user::AddressSpace {
    k.tasks[t]
        .space
        .as_ref()
        .expect("a running task has memory")
}

fn read_bytes<const N: usize>(k: &Kernel, t: TaskIdx, ptr: u64) -> SysResult<[u8; N]> {
    let mut b = [0u8; N];
    space(k, t).copy_in(ptr, &mut b)?;
    Ok(b)
}

/// Decodes a `#[repr(C)]` argument struct of little-endian integers from
/// its bytes, each field at the offset the struct's own layout gives it.
/// Every field must be named with its type: a missing field or a wrong
/// type does not compile.
macro_rules! decode {
    ($b:expr, $T:ident { $($f:ident: $ty:ty),* $(,)? }) => {
        $T {
            $($f: <$ty>::from_le_bytes(
                $b[core::mem::offset_of!($T, $f)..][..size_of::<$ty>()]
                    .try_into()
                    .expect("a field lies inside its struct"),
            )),*
        }
    };
}

fn read_call_args(k: &Kernel, t: TaskIdx, ptr: u64) -> SysResult<CallArgs> {
    let b: [u8; size_of::<CallArgs>()] = read_bytes(k, t, ptr)?;
    Ok(decode!(
        b,
        CallArgs {
            endpoint: u32,
            present_cap: u32,
            send_ptr: u64,
            send_len: u64,
            reply_ptr: u64,
            reply_cap: u64,
            grant_ptr: u64,
            grant_len: u64,
            forward: u64,
        }
    ))
}

fn read_recv_args(k: &Kernel, t: TaskIdx, ptr: u64) -> SysResult<RecvArgs> {
    let b: [u8; size_of::<RecvArgs>()] = read_bytes(k, t, ptr)?;
    let a = decode!(
        b,
        RecvArgs {
            endpoint: u32,
            flags: u32,
            buf_ptr: u64,
            buf_cap: u64,
            frames_ptr: u64,
            frames_cap: u64,
            timeout: u64,
        }
    );
    // Unknown flags are refused (the field was reserved as zero until
    // `RECV_UNTIL`; found by the fuzzer), so more can get a meaning later.
    if a.flags & !RECV_UNTIL != 0 {
        return Err(Error::BadArgument);
    }
    Ok(a)
}

fn log(k: &Kernel, t: TaskIdx, ptr: u64, len: u64) -> SysResult<()> {
    if len > LOG_MAX as u64 {
        return Err(Error::TooLarge);
    }
    let mut buf = [0u8; LOG_MAX];
    let buf = &mut buf[..len as usize];
    space(k, t).copy_in(ptr, buf)?;
    let text = String::from_utf8_lossy(buf);
    kprintln!("[{}] {}", k.tasks[t].name, text.trim_end());
    Ok(())
}

fn call(k: &mut Kernel, t: TaskIdx, args_ptr: u64) -> Option<SysResult<[u64; 3]>> {
    let result = (|| {
        let a = read_call_args(k, t, args_ptr)?;
        let Cap::Endpoint {
            ep,
            serve: false,
            badge,
        } = cap(k, t, a.endpoint.into())?
        else {
            return Err(Error::WrongCapKind);
        };
        let presented = match a.present_cap {
            NO_CAP => (PresentedKind::None as u32, 0, 0),
            i => match cap(k, t, i.into())? {
                Cap::Pci { function, sid } => (
                    PresentedKind::PciDevice as u32,
                    u32::from(k.pci[function].bdf.rid()),
                    sid.0,
                ),
                _ => return Err(Error::WrongCapKind),
            },
        };
        if a.send_len > MSG_MAX as u64 {
            return Err(Error::TooLarge);
        }
        let pages = a.grant_len.div_ceil(PAGE_SIZE) + u64::from(a.grant_ptr % PAGE_SIZE != 0);
        if pages > GRANT_MAX_PAGES as u64 {
            return Err(Error::TooLarge);
        }
        let s = space(k, t);
        let mut msg = [0u8; MSG_MAX];
        s.copy_in(a.send_ptr, &mut msg[..a.send_len as usize])?;
        let reply_cap = a.reply_cap.min(MSG_MAX as u64);
        s.check_writable(a.reply_ptr, reply_cap)?;
        let (grant, grant_va) = if a.grant_len == 0 {
            (Vec::new(), a.grant_ptr)
        } else if a.forward != 0 {
            forwarded_grant(k, t, a.forward, a.grant_ptr, a.grant_len)?
        } else {
            (s.grant_frames(a.grant_ptr, a.grant_len)?, a.grant_ptr)
        };
        Ok(OutgoingCall {
            ep,
            badge,
            msg,
            len: a.send_len as usize,
            reply_ptr: a.reply_ptr,
            reply_cap,
            grant,
            grant_va,
            grant_len: a.grant_len,
            presented,
        })
    })();
    match result {
        Ok(c) => {
            ipc::start_call(k, t, c);
            None
        }
        Err(e) => Some(Err(e)),
    }
}

/// The frames of `[offset, offset + len)` of the grant that came with the
/// call `token` names, which must be waiting for `t`'s reply: a server
/// passing its client's memory on (to the IOMMU server) without ever
/// mapping it. Returns the frames and the client's address of the range.
fn forwarded_grant(
    k: &Kernel,
    t: TaskIdx,
    token: u64,
    offset: u64,
    len: u64,
) -> SysResult<(Vec<abi::PhysAddr>, u64)> {
    let (c, generation, call_id) = super::token::decode(token);
    let caller = k.tasks.get(c).ok_or(Error::BadReplyToken)?;
    if caller.generation != generation || caller.state != (State::ReplyWait { server: t, call_id })
    {
        return Err(Error::BadReplyToken);
    }
    let call = caller.call.as_ref().ok_or(Error::BadReplyToken)?;
    let end = offset.checked_add(len).ok_or(Error::BadAddress)?;
    if call.grant.is_empty() || end > call.grant_len {
        return Err(Error::Denied);
    }
    let start_va = call.grant_va + offset;
    let first_page = call.grant_va & !(PAGE_SIZE - 1);
    let from = ((start_va & !(PAGE_SIZE - 1)) - first_page) / PAGE_SIZE;
    let to = ((start_va + len - 1) & !(PAGE_SIZE - 1)) - first_page;
    let to = to / PAGE_SIZE + 1;
    let frames = call
        .grant
        .get(from as usize..to as usize)
        .ok_or(Error::Denied)?;
    let mut out = Vec::new();
    out.try_reserve_exact(frames.len())
        .map_err(|_| Error::NoMemory)?;
    out.extend_from_slice(frames);
    Ok((out, start_va))
}

/// Copies between the server `t`'s memory and the grant of the call
/// `token` names (see [`Sysno::GrantCopy`]): the op, the length, then the
/// token and the grant range (the same check as a forwarded grant), then
/// the server's own range, before any byte moves.
fn grant_copy(
    k: &Kernel,
    t: TaskIdx,
    token: u64,
    op: u64,
    offset: u64,
    ptr: u64,
    len: u64,
) -> SysResult<[u64; 3]> {
    let op = GrantCopyOp::from_code(op).ok_or(Error::BadArgument)?;
    if len > GRANT_COPY_MAX as u64 {
        return Err(Error::TooLarge);
    }
    if len == 0 {
        return Ok([0; 3]);
    }
    let (frames, start_va) = forwarded_grant(k, t, token, offset, len)?;
    space(k, t).copy_with_frames(
        ptr,
        &frames,
        start_va % PAGE_SIZE,
        len as usize,
        op == GrantCopyOp::Write,
    )?;
    Ok([len, 0, 0])
}

fn recv(k: &mut Kernel, t: TaskIdx, args_ptr: u64, info_ptr: u64) -> Option<SysResult<[u64; 3]>> {
    let checked = (|| {
        let a = read_recv_args(k, t, args_ptr)?;
        let Cap::Endpoint {
            ep, serve: true, ..
        } = cap(k, t, a.endpoint.into())?
        else {
            return Err(Error::WrongCapKind);
        };
        let s = space(k, t);
        s.check_writable(a.buf_ptr, a.buf_cap.min(MSG_MAX as u64))?;
        let frames_cap = a.frames_cap.min(GRANT_MAX_PAGES as u64);
        s.check_writable(a.frames_ptr, frames_cap * 8)?;
        s.check_writable(info_ptr, size_of::<RecvInfo>() as u64)?;
        Ok((
            ep,
            RecvArgs {
                buf_cap: a.buf_cap.min(MSG_MAX as u64),
                frames_cap,
                ..a
            },
        ))
    })();
    let (ep, args) = match checked {
        Ok(v) => v,
        Err(e) => return Some(Err(e)),
    };
    let until = args.flags & RECV_UNTIL != 0;
    let deadline = if until {
        Some(args.timeout)
    } else {
        deadline_after(args.timeout)
    };
    k.tasks[t].state = State::RecvBlocked {
        ep,
        args,
        info: info_ptr,
        deadline,
    };
    if ipc::try_receive(k, t) {
        // Delivered at once: `try_receive` made the task ready with its
        // result; it keeps the CPU.
        k.tasks[t].state = State::Running;
        return None;
    }
    // Nothing there and no time to wait: time out at once.
    let no_wait = if until {
        args.timeout <= arch::counter()
    } else {
        args.timeout == 0
    };
    if no_wait {
        ipc::time_out(k, t);
        k.tasks[t].state = State::Running;
    }
    None
}

fn deadline_after(us: u64) -> Option<u64> {
    (us != FOREVER).then(|| arch::counter().saturating_add(us_to_ticks(us)))
}

fn reply(k: &mut Kernel, t: TaskIdx, token: u64, ptr: u64, len: u64) -> SysResult<()> {
    if len > MSG_MAX as u64 {
        return Err(Error::TooLarge);
    }
    let mut msg = [0u8; MSG_MAX];
    space(k, t).copy_in(ptr, &mut msg[..len as usize])?;
    ipc::reply(k, t, token, &msg[..len as usize])
}

fn notify(k: &mut Kernel, t: TaskIdx, c: u64, bits: u64) -> SysResult<()> {
    let Cap::Notify {
        task,
        bits: allowed,
    } = cap(k, t, c)?
    else {
        return Err(Error::WrongCapKind);
    };
    if bits == 0 {
        return Err(Error::BadArgument);
    }
    if bits & !allowed != 0 {
        return Err(Error::Denied);
    }
    ipc::signal(k, task, bits);
    k.counters.notifications += 1;
    Ok(())
}

fn wait(k: &mut Kernel, t: TaskIdx, timeout_us: u64) -> Option<SysResult<[u64; 3]>> {
    if k.tasks[t].notify_bits != 0 {
        return Some(Ok([core::mem::take(&mut k.tasks[t].notify_bits), 0, 0]));
    }
    if timeout_us == 0 {
        return Some(Err(Error::TimedOut));
    }
    k.tasks[t].state = State::WaitNotify {
        deadline: deadline_after(timeout_us),
    };
    None
}

fn sleep(k: &mut Kernel, t: TaskIdx, us: u64) -> Option<SysResult<[u64; 3]>> {
    if us == 0 {
        k.resched = true;
        return Some(Ok([0; 3]));
    }
    k.tasks[t].state = State::Sleeping {
        deadline: arch::counter().saturating_add(us_to_ticks(us)),
    };
    None
}

fn irq_ack(k: &mut Kernel, t: TaskIdx, c: u64) -> SysResult<()> {
    let Cap::Irq { intid, .. } = cap(k, t, c)? else {
        return Err(Error::WrongCapKind);
    };
    if let Some(b) = k.irqs.get_mut(&intid)
        && b.masked
    {
        b.masked = false;
        crate::arch::irq::unmask(intid);
    }
    Ok(())
}

fn dma_alloc(k: &mut Kernel, t: TaskIdx, pages: u64) -> SysResult<[u64; 3]> {
    if pages == 0 {
        return Err(Error::BadArgument);
    }
    let task = &mut k.tasks[t];
    if task
        .dma_used
        .checked_add(pages)
        .is_none_or(|u| u > task.dma_quota)
    {
        return Err(Error::OverQuota);
    }
    let owner = task.caps.contains(&Cap::SmmuOwner);
    let (va, len, pa) = task
        .space
        .as_mut()
        .expect("running")
        .dma_alloc(pages, owner)?;
    task.dma_used += pages;
    Ok([va, len, if owner { pa.get() } else { 0 }])
}

fn smmu_enabled(k: &mut Kernel, t: TaskIdx, c: u64) -> SysResult<()> {
    let Cap::SmmuOwner = cap(k, t, c)? else {
        return Err(Error::WrongCapKind);
    };
    if !k.smmu_enabled {
        k.smmu_enabled = true;
        kprintln!(
            "kernel: {} declares the SMMU enabled; bus mastering is now allowed",
            k.tasks[t].name
        );
    }
    Ok(())
}

/// The frame ledger's totals for a monitor (see [`Sysno::FrameStats`]).
fn frame_stats(k: &Kernel, t: TaskIdx, c: u64) -> SysResult<[u64; 3]> {
    let Cap::Monitor = cap(k, t, c)? else {
        return Err(Error::WrongCapKind);
    };
    // Recounted from the ledger, not its running totals: a soak checks
    // the real state. A disagreement is a kernel bug; it is reported here
    // and the run's end fails on it.
    let t = match crate::mm::frames::audit() {
        Ok(t) => t,
        Err(why) => {
            kprintln!("kernel: frames: FAIL: accounting inconsistent: {why}");
            crate::mm::frames::totals()
        }
    };
    let c = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    Ok(abi::FrameCounts {
        free: c(t.free),
        kernel: c(t.kernel),
        task: c(t.task),
        pool: c(t.pool),
        held: c(t.held),
        boot: c(t.boot),
    }
    .to_regs())
}

/// What the kernel counted, and each task slot's run time, for a monitor
/// (see [`Sysno::KernelStats`]).
fn kernel_stats(
    k: &Kernel,
    t: TaskIdx,
    c: u64,
    ptr: u64,
    len: u64,
    flags: u64,
) -> SysResult<[u64; 3]> {
    let Cap::Monitor = cap(k, t, c)? else {
        return Err(Error::WrongCapKind);
    };
    if flags & !abi::KERNEL_STATS_RESET_PEAKS != 0 {
        return Err(Error::BadArgument);
    }
    const HEAD: usize = abi::KERNEL_STATS_HEAD_BYTES;
    let len = usize::try_from(len).map_err(|_| Error::BadArgument)?;
    if len < HEAD {
        return Err(Error::BufferTooSmall);
    }
    let slots = ((len - HEAD) / abi::TASK_TIME_BYTES).min(k.tasks.len());
    // Bounded by the task table (at most MAX_TASKS records): the kernel
    // heap gives it or the call is refused.
    let mut out = Vec::new();
    out.try_reserve_exact(HEAD + slots * abi::TASK_TIME_BYTES)
        .map_err(|_| Error::NoMemory)?;
    // Peaks are reset only once the copy-out has succeeded.
    let reset = flags & abi::KERNEL_STATS_RESET_PEAKS != 0;
    let peaks = crate::latency::peaks(false);
    // The timer counts its own writes (its interrupt handler re-arms
    // without the kernel's lock).
    let counters = abi::KernelCounters {
        timer_writes: crate::arch::timer::writes(),
        ..k.counters
    };
    for v in counters.to_array().into_iter().chain(peaks.to_array()) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for task in &k.tasks[..slots] {
        let mut name = [0u8; abi::TASK_NAME_MAX];
        let n = task.name.len().min(abi::TASK_NAME_MAX);
        name[..n].copy_from_slice(&task.name.as_bytes()[..n]);
        out.extend_from_slice(&name);
        out.extend_from_slice(&task.cpu_ticks.to_le_bytes());
    }
    space(k, t).copy_out(ptr, &out)?;
    if reset {
        crate::latency::peaks(true);
    }
    Ok([out.len() as u64, slots as u64, 0])
}

/// Pins or unpins a batch of frames for the IOMMU server (see
/// [`Sysno::FramePins`]): every argument is checked, then the whole batch
/// by the frame ledger, before anything changes.
fn frame_pins(
    k: &mut Kernel,
    t: TaskIdx,
    c: u64,
    op: u64,
    ptr: u64,
    count: u64,
) -> SysResult<[u64; 3]> {
    let Cap::SmmuOwner = cap(k, t, c)? else {
        return Err(Error::WrongCapKind);
    };
    let op = PinOp::from_code(op).ok_or(Error::BadArgument)?;
    if count == 0 {
        return Err(Error::BadArgument);
    }
    if count > PIN_BATCH_MAX as u64 {
        return Err(Error::TooLarge);
    }
    // A batch of up to `INLINE_PINS` frames is read onto the kernel stack;
    // a larger one (at most 64 KiB, freed before the call returns) into
    // the kernel heap: a heap that cannot give it is `NoMemory`, never a
    // panic.
    const INLINE_PINS: usize = 64;
    let n = count as usize;
    let mut inline = [abi::PhysAddr::new(0); INLINE_PINS];
    let mut heap: Vec<abi::PhysAddr> = Vec::new();
    let batch: &mut [abi::PhysAddr] = if n <= INLINE_PINS {
        &mut inline[..n]
    } else {
        heap.try_reserve_exact(n).map_err(|_| Error::NoMemory)?;
        heap.resize(n, abi::PhysAddr::new(0));
        &mut heap
    };
    let mut bytes = [0u8; 8 * INLINE_PINS];
    for (i, chunk) in batch.chunks_mut(INLINE_PINS).enumerate() {
        let bytes = &mut bytes[..chunk.len() * 8];
        let at = ptr
            .checked_add((i * INLINE_PINS * 8) as u64)
            .ok_or(Error::BadAddress)?;
        space(k, t).copy_in(at, bytes)?;
        for (pa, b) in chunk.iter_mut().zip(bytes.chunks_exact(8)) {
            *pa = abi::PhysAddr::new(u64::from_le_bytes(b.try_into().unwrap_or([0xff; 8])));
        }
    }
    let batch = &*batch;
    let refused = |(pa, why): (abi::PhysAddr, PinRefusal)| {
        kprintln!(
            "kernel: {} {op:?} of {count} frames refused, nothing changed: frame {pa:#x} is {why}",
            k.tasks[t].name
        );
        match why {
            PinRefusal::Unaligned => Error::BadArgument,
            PinRefusal::NotPinned => Error::NotPinned,
            PinRefusal::NoMemory => Error::NoMemory,
            _ => Error::NotDmaMemory,
        }
    };
    let freed = match op {
        PinOp::Pin => crate::mm::frames::pin(batch).map(|()| 0),
        PinOp::Unpin => crate::mm::frames::unpin(batch),
    }
    .map_err(refused)?;
    let pinned = crate::mm::frames::pinned();
    if freed > 0 {
        kprintln!(
            "kernel: {freed} frames held for DMA freed: their last pin went ({pinned} frames pinned now)"
        );
    }
    Ok([freed as u64, pinned, 0])
}

fn mmio_map(k: &mut Kernel, t: TaskIdx, c: u64) -> SysResult<[u64; 3]> {
    let Cap::Mmio { pa, len } = cap(k, t, c)? else {
        return Err(Error::WrongCapKind);
    };
    let va = k.tasks[t]
        .space
        .as_mut()
        .expect("running")
        .map_device(pa, len)?;
    Ok([va, len, 0])
}

fn pci_function(k: &Kernel, t: TaskIdx, c: u64) -> SysResult<usize> {
    match cap(k, t, c)? {
        Cap::Pci { function, .. } => Ok(function),
        _ => Err(Error::WrongCapKind),
    }
}

fn config_offset(offset: u64) -> SysResult<u16> {
    if offset >= 4096 || !offset.is_multiple_of(4) {
        return Err(Error::BadArgument);
    }
    Ok(offset as u16)
}

fn pci_config_read(k: &Kernel, t: TaskIdx, c: u64, offset: u64) -> SysResult<[u64; 3]> {
    let f = pci_function(k, t, c)?;
    let off = config_offset(offset)?;
    Ok([u64::from(crate::pci::config_read(k.pci[f].bdf, off)), 0, 0])
}

fn pci_config_write(k: &Kernel, t: TaskIdx, c: u64, offset: u64, value: u64) -> SysResult<()> {
    let f = pci_function(k, t, c)?;
    let off = config_offset(offset)?;
    // A 32-bit register: a wider value is refused, never truncated.
    let value = u32::try_from(value).map_err(|_| Error::BadArgument)?;
    if PCI_BAR_REGS.contains(&off) || off == pci_regs::ROM_BAR {
        return Err(Error::Denied);
    }
    let bus_master = Command(value as u16).contains(Command::BUS_MASTER);
    if off == pci_regs::COMMAND && bus_master && !k.smmu_enabled {
        return Err(Error::Denied);
    }
    crate::pci::config_write(k.pci[f].bdf, off, value);
    Ok(())
}

fn pci_map_bar(k: &mut Kernel, t: TaskIdx, c: u64, bar: u64) -> SysResult<[u64; 3]> {
    let f = pci_function(k, t, c)?;
    let bar = u8::try_from(bar).map_err(|_| Error::BadArgument)?;
    let b = k.pci[f].bar(bar).copied().ok_or(Error::BadArgument)?;
    let pa = b.addr.ok_or(Error::BadArgument)?.cpu;
    if b.kind == kernel_core::pci::BarKind::Io {
        return Err(Error::BadArgument);
    }
    let va = k.tasks[t]
        .space
        .as_mut()
        .expect("running")
        .map_device(pa, b.size)?;
    Ok([va, b.size, 0])
}
