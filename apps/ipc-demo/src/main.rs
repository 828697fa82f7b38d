//! IPC demo task, one binary with three roles chosen by `arg("role")`:
//!
//! - `echo-server` serves `echo`, replying to each call with its bytes;
//! - `held-server` serves `held`, holding replies until `arg("waiters")`
//!   (default 2) callers wait, then answering all of them;
//! - `client` checks 100 echo round trips and one held reply.
//!
//! Servers never exit and never panic on what a client sends.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

use userlib::ipc::{FOREVER, MSG_MAX};
use userlib::{RecvInfo, RecvKind, TaskInfo, log};

userlib::entry!(main);

fn main(info: &TaskInfo<'static>) -> i32 {
    match info.arg("role") {
        Some("echo-server") => echo_server(info),
        Some("held-server") => held_server(info),
        Some("client") => client(info),
        other => {
            log!("ipc-demo: unknown role {other:?}");
            2
        }
    }
}

/// The serve capability for `name`: by name, else the task's only one.
fn serve_cap(info: &TaskInfo<'_>, name: &str) -> Option<u32> {
    let cap = userlib::cap_or_only(info, name);
    if cap.is_none() {
        log!("{name}: no capability named {name:?}");
    }
    cap
}

/// Waits for the next message; `None` after logging a refused `recv` (the
/// caller just tries again).
fn next(cap: u32, buf: &mut [u8], who: &str) -> Option<(RecvKind, RecvInfo)> {
    match userlib::recv(cap, buf, &mut [], FOREVER) {
        Ok(got) => userlib::ipc::kind(&got).map(|k| (k, got)),
        Err(e) => {
            log!("{who}: recv refused: {e}");
            // Do not spin on a persistent error.
            let _ = userlib::sleep(100_000);
            None
        }
    }
}

fn echo_server(info: &TaskInfo<'_>) -> i32 {
    let Some(cap) = serve_cap(info, "echo") else {
        return 1;
    };
    let mut buf = [0u8; MSG_MAX];
    loop {
        let Some((kind, got)) = next(cap, &mut buf, "echo") else {
            continue;
        };
        let answer: &[u8] = match kind {
            RecvKind::Call => &buf[..(got.len as usize).min(MSG_MAX)],
            RecvKind::ClientDied => {
                log!(
                    "echo: client badge {} died; answering its death notice",
                    got.badge
                );
                &[]
            }
            RecvKind::Notification | RecvKind::Timeout => continue,
        };
        if let Err(e) = userlib::reply(got.reply, answer) {
            log!("echo: reply to badge {} refused: {e}", got.badge);
        }
    }
}

fn held_server(info: &TaskInfo<'_>) -> i32 {
    let Some(cap) = serve_cap(info, "held") else {
        return 1;
    };
    let waiters = match userlib::arg_u64(info, "waiters", 2) {
        Ok(n) if n > 0 => n as usize,
        _ => {
            log!("held: bad waiters argument {:?}", info.arg("waiters"));
            return 1;
        }
    };
    let mut buf = [0u8; MSG_MAX];
    // (badge, reply token) of each caller kept waiting.
    let mut held: Vec<(u32, u64)> = Vec::with_capacity(waiters);
    loop {
        let Some((kind, got)) = next(cap, &mut buf, "held") else {
            continue;
        };
        match kind {
            RecvKind::Call => held.push((got.badge, got.reply)),
            RecvKind::ClientDied => {
                // Its held call, if any, died with it.
                held.retain(|&(badge, _)| badge != got.badge);
                if let Err(e) = userlib::reply(got.reply, &[]) {
                    log!("held: reply to dead badge {} refused: {e}", got.badge);
                }
                continue;
            }
            RecvKind::Notification | RecvKind::Timeout => continue,
        }
        if held.len() < waiters {
            continue;
        }
        let n = held.len();
        log!("held: answered {n} held replies");
        let mut text = [0u8; 32];
        let answer = released(n, &mut text);
        for (badge, token) in held.drain(..) {
            if let Err(e) = userlib::reply(token, answer) {
                log!("held: reply to badge {badge} refused: {e}");
            }
        }
    }
}

/// `released N` in `text`.
fn released(n: usize, text: &mut [u8; 32]) -> &[u8] {
    use core::fmt::Write;
    struct Cursor<'b>(&'b mut [u8], usize);
    impl Write for Cursor<'_> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let end = self.1 + s.len();
            self.0
                .get_mut(self.1..end)
                .ok_or(core::fmt::Error)?
                .copy_from_slice(s.as_bytes());
            self.1 = end;
            Ok(())
        }
    }
    let mut c = Cursor(text, 0);
    // 32 bytes hold "released " and any usize.
    let _ = write!(c, "released {n}");
    let len = c.1;
    &text[..len]
}

/// Number of echo round trips the client checks.
const ECHO_CALLS: usize = 100;

/// Payload of echo call `i`: 2 to `MSG_MAX` bytes, starting with `i`.
fn payload(i: usize, out: &mut [u8; MSG_MAX]) -> &[u8] {
    let len = 2 + (i * 37) % (MSG_MAX - 1);
    out[..2].copy_from_slice(&(i as u16).to_le_bytes());
    for (j, b) in out[2..len].iter_mut().enumerate() {
        *b = (i * 31 + j * 7) as u8;
    }
    &out[..len]
}

fn client(info: &TaskInfo<'_>) -> i32 {
    let (Some(echo), Some(held)) = (info.cap("echo"), info.cap("held")) else {
        log!("client: needs capabilities `echo` and `held`");
        return 1;
    };
    let mut msg = [0u8; MSG_MAX];
    let mut reply = [0u8; MSG_MAX];
    for i in 0..ECHO_CALLS {
        let sent = payload(i, &mut msg);
        match userlib::call(echo, sent, &mut reply, None, None) {
            Ok(n) if &reply[..n] == sent => {}
            Ok(n) => {
                log!(
                    "client: echo call {i}: reply of {n} bytes differs from the {} sent",
                    sent.len()
                );
                return 1;
            }
            Err(e) => {
                log!("client: echo call {i} refused: {e}");
                return 1;
            }
        }
    }
    let waiters = userlib::arg_u64(info, "waiters", 2).unwrap_or(2) as usize;
    let mut text = [0u8; 32];
    let expected = released(waiters, &mut text);
    match userlib::call(held, b"hold me", &mut reply, None, None) {
        Ok(n) if &reply[..n] == expected => {}
        Ok(n) => {
            log!(
                "client: held call: got {:?}, expected {:?}",
                core::str::from_utf8(&reply[..n]).unwrap_or("<not UTF-8>"),
                core::str::from_utf8(expected).unwrap_or("")
            );
            return 1;
        }
        Err(e) => {
            log!("client: held call refused: {e}");
            return 1;
        }
    }
    log!("client: {ECHO_CALLS} echo calls ok, held reply ok");
    0
}
