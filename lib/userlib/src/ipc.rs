//! Message passing: [`call`] (client side; [`Call`] is the same as a
//! protocol client's transport), [`recv`] and [`reply`] (server
//! side), and notifications ([`notify`], [`wait`], [`irq_ack`]).
//!
//! Empty buffers are passed as pointer 0, length 0.

use core::marker::PhantomData;

use abi::syscall::{CallArgs, GrantCopyOp, NO_CAP, RECV_UNTIL, REPLY_STEP_REFUSED, RecvArgs};
use abi::{SysResult, Sysno};

pub use abi::syscall::{FOREVER, GRANT_COPY_MAX, MSG_MAX, PresentedKind, RecvInfo, RecvKind};

use crate::raw::check;
use crate::sys::syscall;

/// Pages offered to the server with a call: a claim the kernel checks
/// (only memory from `dma_alloc` that the caller owns can be granted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// First byte granted (page offset kept); with `forward`, the offset
    /// into the forwarded grant.
    pub va: u64,
    /// Bytes granted.
    pub len: u64,
    /// 0, or the reply token of a received call whose grant this passes on.
    pub forward: u64,
}

impl Grant {
    /// A grant of `len` bytes at `va`, as the caller alleges.
    pub fn range(va: u64, len: u64) -> Grant {
        Grant {
            va,
            len,
            forward: 0,
        }
    }

    /// Passes on `len` bytes at `offset` of the grant that came with the
    /// received call `token` (not yet answered): the memory stays the
    /// client's and is never mapped in this task.
    pub fn forward(token: u64, offset: u64, len: u64) -> Grant {
        Grant {
            va: offset,
            len,
            forward: token,
        }
    }
}

fn ptr_of(buf: &[u8]) -> u64 {
    if buf.is_empty() {
        0
    } else {
        buf.as_ptr() as u64
    }
}

fn mut_ptr_of<T>(buf: &mut [T]) -> u64 {
    if buf.is_empty() {
        0
    } else {
        buf.as_mut_ptr() as u64
    }
}

/// Sends `msg` on the endpoint capability `endpoint`, with an optional
/// grant and presented capability, and waits for the reply, which lands in
/// `reply`. Returns the reply's length.
pub fn call(
    endpoint: u32,
    msg: &[u8],
    reply: &mut [u8],
    grant: Option<Grant>,
    present: Option<u32>,
) -> SysResult<usize> {
    let grant = grant.unwrap_or(Grant::range(0, 0));
    let args = CallArgs {
        endpoint,
        present_cap: present.unwrap_or(NO_CAP),
        send_ptr: ptr_of(msg),
        send_len: msg.len() as u64,
        reply_ptr: mut_ptr_of(reply),
        reply_cap: reply.len() as u64,
        grant_ptr: grant.va,
        grant_len: grant.len,
        forward: grant.forward,
    };
    let r = check(syscall(
        Sysno::Call as u64,
        [&args as *const CallArgs as u64, 0, 0, 0, 0, 0],
    ))?;
    Ok((r[1] as usize).min(reply.len()))
}

/// One call's way to a server, for the clients `ipc_proto::protocol!`
/// generates (every service's typed client: IOMMU, block): the endpoint,
/// plus the grant and the presented capability that ride along with the
/// message. A kernel refusal becomes `E` (the client crate's error type,
/// which also takes the protocol's own refusals).
pub struct Call<E> {
    endpoint: u32,
    grant: Option<Grant>,
    present: Option<u32>,
    _error: PhantomData<fn() -> E>,
}

impl<E> Call<E> {
    /// Calls through the call capability `endpoint`, with `grant` and
    /// `present` sent along (see [`call`]).
    pub const fn new(endpoint: u32, grant: Option<Grant>, present: Option<u32>) -> Self {
        Self {
            endpoint,
            grant,
            present,
            _error: PhantomData,
        }
    }
}

impl<E: From<abi::Error>> ipc_proto::Transport for Call<E> {
    type Error = E;
    fn call(&self, msg: &[u8], reply: &mut [u8; MSG_MAX]) -> Result<usize, E> {
        Ok(call(self.endpoint, msg, reply, self.grant, self.present)?)
    }
}

/// How long a receive waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Microseconds, or [`FOREVER`] (what a plain `u64` means).
    For(u64),
    /// Until [`crate::counter`] reaches this value. A server that keeps one
    /// deadline over many receives should wait this way: the kernel's
    /// timer is then not re-armed at every receive ([`abi::syscall::RECV_UNTIL`]).
    Until(u64),
}

impl From<u64> for Wait {
    fn from(us: u64) -> Wait {
        Wait::For(us)
    }
}

/// Waits (microseconds, [`FOREVER`], or a [`Wait`]) on the endpoint this
/// task serves through capability `endpoint`, or for a notification. A
/// call's message lands in `buf`, its granted frames' physical addresses
/// in `frames`. A timeout is `Ok` with kind [`RecvKind::Timeout`].
pub fn recv(
    endpoint: u32,
    buf: &mut [u8],
    frames: &mut [u64],
    wait: impl Into<Wait>,
) -> SysResult<RecvInfo> {
    let args = recv_args(endpoint, buf, frames, wait.into());
    let mut info = RecvInfo::default();
    check(syscall(
        Sysno::Recv as u64,
        [
            &args as *const RecvArgs as u64,
            &mut info as *mut RecvInfo as u64,
            0,
            0,
            0,
            0,
        ],
    ))?;
    Ok(info)
}

/// Answers the call `token` names with `msg` ([`reply`]), then waits as
/// [`recv`] does, in one trap: a server's answer and its wait for the next
/// request. Returns both outcomes: a refused reply (the caller died, a bad
/// token, a reply longer than the caller's room) is its own error, and the
/// receive still happens.
pub fn reply_recv(
    token: u64,
    msg: &[u8],
    endpoint: u32,
    buf: &mut [u8],
    frames: &mut [u64],
    wait: impl Into<Wait>,
) -> (SysResult<()>, SysResult<RecvInfo>) {
    let wait = wait.into();
    let args = recv_args(endpoint, buf, frames, wait);
    let mut info = RecvInfo::default();
    let regs = syscall(
        Sysno::ReplyRecv as u64,
        [
            &args as *const RecvArgs as u64,
            &mut info as *mut RecvInfo as u64,
            token,
            ptr_of(msg),
            msg.len() as u64,
            0,
        ],
    );
    match check(regs) {
        Ok(_) => (Ok(()), Ok(info)),
        Err(e) if regs[1] == REPLY_STEP_REFUSED => (Err(e), recv(endpoint, buf, frames, wait)),
        Err(e) => (Ok(()), Err(e)),
    }
}

/// The argument block of a receive into `buf` and `frames`.
fn recv_args(endpoint: u32, buf: &mut [u8], frames: &mut [u64], wait: Wait) -> RecvArgs {
    let (flags, timeout) = match wait {
        Wait::For(us) => (0, us),
        Wait::Until(at) => (RECV_UNTIL, at),
    };
    RecvArgs {
        endpoint,
        flags,
        buf_ptr: mut_ptr_of(buf),
        buf_cap: buf.len() as u64,
        frames_ptr: mut_ptr_of(frames),
        frames_cap: frames.len() as u64,
        timeout,
    }
}

/// The kind of what [`recv`] delivered, if the kernel sent a known one.
pub fn kind(info: &RecvInfo) -> Option<RecvKind> {
    RecvKind::from_u32(info.kind)
}

/// Answers the call whose reply token is `token` with `msg`.
pub fn reply(token: u64, msg: &[u8]) -> SysResult<()> {
    check(syscall(
        Sysno::Reply as u64,
        [token, ptr_of(msg), msg.len() as u64, 0, 0, 0],
    ))
    .map(|_| ())
}

/// ORs `bits` into the notification word the capability `cap` names.
pub fn notify(cap: u32, bits: u64) -> SysResult<()> {
    check(syscall(
        Sysno::Notify as u64,
        [cap as u64, bits, 0, 0, 0, 0],
    ))
    .map(|_| ())
}

/// Waits up to `timeout_us` for this task's notification word to become
/// non-zero; returns (and clears) its bits.
pub fn wait(timeout_us: u64) -> SysResult<u64> {
    check(syscall(Sysno::Wait as u64, [timeout_us, 0, 0, 0, 0, 0])).map(|r| r[1])
}

/// Re-enables the interrupt the capability `cap` names.
pub fn irq_ack(cap: u32) -> SysResult<()> {
    check(syscall(Sysno::IrqAck as u64, [cap as u64, 0, 0, 0, 0, 0])).map(|_| ())
}

/// Copies `[offset, offset + buf.len())` of the grant that came with the
/// received call `token` (not yet answered) into `buf`: how a server reads
/// data too large for a message. At most [`GRANT_COPY_MAX`] bytes.
pub fn grant_read(token: u64, offset: u64, buf: &mut [u8]) -> SysResult<usize> {
    grant_copy(token, GrantCopyOp::Read, offset, mut_ptr_of(buf), buf.len())
}

/// Copies `data` into `[offset, offset + data.len())` of the grant that
/// came with the received call `token` (not yet answered). At most
/// [`GRANT_COPY_MAX`] bytes.
pub fn grant_write(token: u64, offset: u64, data: &[u8]) -> SysResult<usize> {
    grant_copy(token, GrantCopyOp::Write, offset, ptr_of(data), data.len())
}

fn grant_copy(token: u64, op: GrantCopyOp, offset: u64, ptr: u64, len: usize) -> SysResult<usize> {
    let r = check(syscall(
        Sysno::GrantCopy as u64,
        [token, op.code(), offset, ptr, len as u64, 0],
    ))?;
    Ok(r[1] as usize)
}
