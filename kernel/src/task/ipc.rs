//! IPC: synchronous calls on endpoints with replies that a server may hold
//! and send much later, notifications (bits in a per-task word, also used
//! for interrupts), page grants, presented capabilities, timeouts and
//! death notices. Owns every state change between blocked and ready that a
//! message causes. Never copies more than `MSG_MAX` bytes, and never
//! delivers to memory it did not check when the receiver asked.

use core::mem::size_of;

use abi::syscall::{RecvInfo, RecvKind};
use abi::{Error, SysResult};

use kernel_core::death::TaskRef;

use super::{Kernel, OutgoingCall, State, TaskIdx, token};
use crate::arch::UserFrame;

/// Writes a syscall's results into `t`'s saved registers: status 0 and
/// the values, or the error code (`UserFrame`).
pub fn set_result(k: &mut Kernel, t: TaskIdx, r: SysResult<[u64; 3]>) {
    let frame = &mut k.tasks[t].ctx;
    match r {
        Ok(v) => frame.set_syscall_ok(v),
        Err(e) => frame.set_syscall_error(e.code()),
    }
}

/// `info` as the receiver sees it: each field little-endian at the offset
/// `RecvInfo`'s own layout gives it.
fn info_bytes(info: &RecvInfo) -> [u8; size_of::<RecvInfo>()] {
    let mut b = [0u8; size_of::<RecvInfo>()];
    macro_rules! put {
        ($($f:ident),* $(,)?) => {
            // Naming every field: one added to `RecvInfo` and not written
            // here does not compile.
            let RecvInfo { $($f),* } = *info;
            $(
                let v = $f.to_le_bytes();
                b[core::mem::offset_of!(RecvInfo, $f)..][..v.len()].copy_from_slice(&v);
            )*
        };
    }
    put!(
        kind,
        badge,
        len,
        frames,
        reply,
        notification,
        grant_va,
        grant_len,
        presented_kind,
        presented_a,
        presented_b,
        queued,
    );
    b
}

/// Completes a blocked receiver `s` with `info` (and wakes it). Its
/// pointers were checked writable when it called recv; the address space
/// has not lost mappings since (tasks cannot unmap).
fn complete_recv(k: &mut Kernel, s: TaskIdx, info: RecvInfo) {
    let State::RecvBlocked { info: info_ptr, .. } = k.tasks[s].state else {
        unreachable!("not receiving")
    };
    let space = k.tasks[s].space.as_ref().expect("receiver alive");
    let r = space.copy_out(info_ptr, &info_bytes(&info)).map(|_| [0; 3]);
    set_result(k, s, r);
    k.make_ready(s);
}

/// Granted frames' addresses copied to a receiver in one go.
const FRAME_CHUNK: usize = 64;

/// Tries to hand `caller`'s call to the server `s`, blocked in recv on the
/// call's endpoint. Returns false (and fails the call) if the server's
/// buffers cannot hold it; the server stays blocked.
pub fn deliver_call(k: &mut Kernel, s: TaskIdx, caller: TaskIdx) -> bool {
    let State::RecvBlocked { args, ep, .. } = k.tasks[s].state else {
        unreachable!("not receiving")
    };
    let call = k.tasks[caller]
        .call
        .as_ref()
        .expect("caller has a call in flight");
    let wants_frames = args.frames_cap > 0;
    if call.len as u64 > args.buf_cap || (wants_frames && call.grant.len() as u64 > args.frames_cap)
    {
        fail_call(k, caller, Error::BufferTooSmall);
        return false;
    }
    let space = k.tasks[s].space.as_ref().expect("receiver alive");
    let mut ok = space.copy_out(args.buf_ptr, &call.msg[..call.len]).is_ok();
    let delivered = if wants_frames { call.grant.len() } else { 0 };
    // In chunks, each one checked copy: frame by frame, every address
    // cost two walks of the receiver's tables (a 64-page grant, 128).
    let mut bytes = [0u8; 8 * FRAME_CHUNK];
    for (c, chunk) in call.grant[..delivered].chunks(FRAME_CHUNK).enumerate() {
        for (slot, f) in bytes.chunks_exact_mut(8).zip(chunk) {
            slot.copy_from_slice(&f.get().to_le_bytes());
        }
        let at = args.frames_ptr + (8 * FRAME_CHUNK * c) as u64;
        ok &= space.copy_out(at, &bytes[..8 * chunk.len()]).is_ok();
    }
    if !ok {
        fail_call(k, caller, Error::BadAddress);
        return false;
    }
    let call_id = k.tasks[caller].call_seq.wrapping_add(1);
    let info = RecvInfo {
        kind: RecvKind::Call as u32,
        badge: call.badge,
        len: call.len as u32,
        frames: delivered as u32,
        reply: token::encode(caller, k.tasks[caller].generation, call_id),
        notification: 0,
        grant_va: call.grant_va,
        grant_len: call.grant_len,
        presented_kind: call.presented.0,
        presented_a: call.presented.1,
        presented_b: call.presented.2,
        queued: k.endpoints[ep].senders.len() as u32,
    };
    k.tasks[caller].call_seq = call_id;
    k.tasks[caller].state = State::ReplyWait { server: s, call_id };
    complete_recv(k, s, info);
    true
}

/// Ends `caller`'s call with `e` (it becomes ready with the error).
pub fn fail_call(k: &mut Kernel, caller: TaskIdx, e: Error) {
    k.tasks[caller].call = None;
    set_result(k, caller, Err(e));
    k.make_ready(caller);
}

/// Starts a call already validated and copied into `caller.call`.
pub fn start_call(k: &mut Kernel, caller: TaskIdx, call: OutgoingCall) {
    let ep = call.ep;
    let server = k.endpoints[ep].server;
    k.tasks[caller].call = Some(call);
    if k.tasks[server].end.is_some() {
        fail_call(k, caller, Error::PeerDead);
        return;
    }
    k.tasks[caller].state = State::SendBlocked { ep };
    if matches!(k.tasks[server].state, State::RecvBlocked { ep: e, .. } if e == ep) {
        k.endpoints[ep].senders.retain(|&t| t != caller);
        deliver_call(k, server, caller);
    } else {
        k.endpoints[ep].senders.push_back(caller);
    }
}

/// What a receiver finds waiting, in the order it is served: notification
/// bits, then death notices, then calls.
pub fn try_receive(k: &mut Kernel, s: TaskIdx) -> bool {
    let State::RecvBlocked { ep, .. } = k.tasks[s].state else {
        return false;
    };
    if k.tasks[s].notify_bits != 0 {
        let bits = core::mem::take(&mut k.tasks[s].notify_bits);
        let info = RecvInfo {
            kind: RecvKind::Notification as u32,
            notification: bits,
            ..Default::default()
        };
        complete_recv(k, s, info);
        return true;
    }
    // A notice of an instance that is no longer the dead one in its slot
    // (it restarted) is dropped, never issued for the new instance.
    let server = k.task_ref(s);
    let tasks = &k.tasks;
    let current = |d: TaskRef| {
        tasks
            .get(usize::from(d.index))
            .is_some_and(|x| x.generation == d.generation && x.state == State::Dead)
    };
    if let Some((notice, reply)) = k.death_notices.deliver(ep as u16, server, current) {
        let info = RecvInfo {
            kind: RecvKind::ClientDied as u32,
            badge: notice.badge,
            reply,
            ..Default::default()
        };
        complete_recv(k, s, info);
        return true;
    }
    while let Some(caller) = k.endpoints[ep].senders.pop_front() {
        if matches!(k.tasks[caller].state, State::SendBlocked { ep: e } if e == ep)
            && deliver_call(k, s, caller)
        {
            return true;
        }
    }
    false
}

/// ORs `bits` into `t`'s notification word and wakes it if it waits.
pub fn signal(k: &mut Kernel, t: TaskIdx, bits: u64) {
    if k.tasks[t].end.is_some() {
        return;
    }
    k.tasks[t].notify_bits |= bits;
    match k.tasks[t].state {
        State::WaitNotify { .. } => {
            let bits = core::mem::take(&mut k.tasks[t].notify_bits);
            set_result(k, t, Ok([bits, 0, 0]));
            k.make_ready(t);
        }
        State::RecvBlocked { .. } => {
            try_receive(k, t);
        }
        _ => {}
    }
}

/// A blocked task's deadline passed.
pub fn time_out(k: &mut Kernel, t: TaskIdx) {
    match k.tasks[t].state {
        State::RecvBlocked { .. } => {
            complete_recv(
                k,
                t,
                RecvInfo {
                    kind: RecvKind::Timeout as u32,
                    ..Default::default()
                },
            );
        }
        State::WaitNotify { .. } => {
            set_result(k, t, Err(Error::TimedOut));
            k.make_ready(t);
        }
        State::Sleeping { .. } => {
            set_result(k, t, Ok([0; 3]));
            k.make_ready(t);
        }
        _ => {}
    }
}

/// Answers the call that `token` names, from server `s`, with `msg`.
pub fn reply(k: &mut Kernel, s: TaskIdx, tok: u64, msg: &[u8]) -> SysResult<()> {
    if kernel_core::death::is_token(tok) {
        return super::lifecycle::acknowledge_death(k, s, tok);
    }
    let (t, generation, call_id) = token::decode(tok);
    let target = k.tasks.get(t).ok_or(Error::BadReplyToken)?;
    if target.generation != generation {
        return Err(Error::BadReplyToken);
    }
    if target.state != (State::ReplyWait { server: s, call_id }) {
        return Err(Error::BadReplyToken);
    }
    let call = target.call.as_ref().expect("a waiting caller has its call");
    if msg.len() as u64 > call.reply_cap {
        // The caller gave too little room: it learns so, instead of
        // waiting forever for a reply that can never land (found by the
        // fuzzer, seed 1). The token is used up.
        fail_call(k, t, Error::BufferTooSmall);
        return Err(Error::BufferTooSmall);
    }
    let reply_ptr = call.reply_ptr;
    let space = target.space.as_ref().expect("caller alive");
    // Checked writable when the call was made.
    let r = space
        .copy_out(reply_ptr, msg)
        .map(|_| [msg.len() as u64, 0, 0]);
    k.tasks[t].call = None;
    set_result(k, t, r);
    k.make_ready(t);
    Ok(())
}
