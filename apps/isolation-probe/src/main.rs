//! Isolation probe task: tries what the kernel must refuse, one role per
//! run (`arg("role")`):
//!
//! - `intruder` reads `arg("addr")` and must be killed by the kernel;
//! - `badcalls` makes malformed and unauthorised syscalls and checks each
//!   error code, then checks that the echo server still answers;
//! - `nocaps` holds only the `edu` PCI capability and checks that it buys
//!   nothing more than that device's own BAR.
//!
//! Raw syscalls go through `userlib::raw` (safe: the kernel validates
//! every argument); this crate has no `unsafe`.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

mod cases;

use abi::Sysno;
use abi::syscall::{CallArgs, LOG_MAX, MSG_MAX, NO_CAP};
use userlib::ipc::Grant;
use userlib::raw::{check, probe_read, raw_syscall};
use userlib::{Error, SysResult, TaskInfo, log};

use cases::Cases;

userlib::entry!(main);

fn main(info: &TaskInfo<'static>) -> i32 {
    match info.arg("role") {
        Some("intruder") => intruder(info),
        Some("undefined") => {
            log!("undefined: executing UDF #0");
            userlib::raw::undefined_instruction()
        }
        Some("badcalls") => badcalls(info),
        Some("nocaps") => nocaps(info),
        other => {
            log!("isolation-probe: unknown role {other:?}");
            2
        }
    }
}

fn intruder(info: &TaskInfo<'_>) -> i32 {
    let parsed = info
        .arg("addr")
        .and_then(|a| a.strip_prefix("0x"))
        .and_then(|hex| u64::from_str_radix(hex, 16).ok());
    let Some(addr) = parsed else {
        log!(
            "intruder: bad addr argument {:?} (want 0x-prefixed hex)",
            info.arg("addr")
        );
        return 2;
    };
    log!("intruder: reading {addr:#x}");
    let _ = probe_read(addr);
    log!("intruder: read succeeded (isolation broken!)");
    1
}

/// A raw syscall's outcome.
fn raw(n: Sysno, args: [u64; 6]) -> SysResult<[u64; 4]> {
    check(raw_syscall(n as u64, args))
}

/// A `Call` built by hand, so that any field can be wrong.
fn raw_call(args: &CallArgs) -> SysResult<[u64; 4]> {
    raw(Sysno::Call, [args as *const CallArgs as u64, 0, 0, 0, 0, 0])
}

/// An address well inside this task's own read-only, executable text.
fn text_page() -> u64 {
    let f: fn(&TaskInfo<'static>) -> i32 = main;
    (f as usize as u64) & !(abi::PAGE_SIZE - 1)
}

/// Mapped nowhere in any task (below every ELF image).
const UNMAPPED: u64 = 0x1000;
/// A kernel (TTBR1) address.
const KERNEL_VA: u64 = 0xffff_0000_4020_0000;

fn badcalls(info: &TaskInfo<'_>) -> i32 {
    let mut c = Cases::new("badcalls");
    let Some(echo) = info.cap("echo") else {
        log!("badcalls: needs capability `echo`");
        return 1;
    };
    // The notification capability: named `notify`, else the other one.
    let Some(note) = info.cap("notify").or_else(|| {
        info.caps()
            .find(|(name, _)| *name != "echo")
            .map(|(_, i)| i)
    }) else {
        log!("badcalls: needs a notification capability besides `echo`");
        return 1;
    };
    let quota = match userlib::arg_u64(info, "quota", 4) {
        Ok(q) => q,
        Err(text) => {
            log!("badcalls: bad quota argument {text:?}");
            return 1;
        }
    };
    let text = text_page();
    let mut reply = [0u8; MSG_MAX];
    let line = [b'x'; LOG_MAX + 1];

    // (1) The syscall number.
    c.refused("syscall 99", raw_n(99), Error::BadSyscall);

    // (2) Capability index and kind.
    c.refused(
        "notify forged cap 40",
        userlib::notify(40, 1),
        Error::BadCap,
    );
    c.refused(
        "call forged cap 0xfffffff0",
        userlib::call(0xffff_fff0, b"hi", &mut reply, None, None),
        Error::BadCap,
    );
    c.refused(
        "call on notify cap",
        userlib::call(note, b"hi", &mut reply, None, None),
        Error::WrongCapKind,
    );
    c.refused(
        "recv on call cap",
        userlib::recv(echo, &mut reply, &mut [], 0),
        Error::WrongCapKind,
    );
    c.refused(
        "irq_ack on notify cap",
        userlib::irq_ack(note),
        Error::WrongCapKind,
    );

    // (3) Pointers and lengths.
    c.refused(
        "log kernel pointer",
        raw(Sysno::Log, [KERNEL_VA, 16, 0, 0, 0, 0]),
        Error::BadAddress,
    );
    c.refused(
        "log unmapped pointer",
        raw(Sysno::Log, [UNMAPPED, 16, 0, 0, 0, 0]),
        Error::BadAddress,
    );
    c.refused(
        "log ptr+len overflow",
        raw(Sysno::Log, [u64::MAX - 7, 16, 0, 0, 0, 0]),
        Error::BadAddress,
    );
    c.refused(
        "log LOG_MAX+1 bytes",
        raw(
            Sysno::Log,
            [line.as_ptr() as u64, line.len() as u64, 0, 0, 0, 0],
        ),
        Error::TooLarge,
    );
    c.refused(
        "call args unmapped",
        raw(Sysno::Call, [UNMAPPED, 0, 0, 0, 0, 0]),
        Error::BadAddress,
    );
    c.refused(
        "call send MSG_MAX+1 bytes",
        userlib::call(echo, &line[..MSG_MAX + 1], &mut reply, None, None),
        Error::TooLarge,
    );
    let msg = *b"hi";
    c.refused(
        "call reply into own text",
        raw_call(&CallArgs {
            endpoint: echo,
            present_cap: NO_CAP,
            send_ptr: msg.as_ptr() as u64,
            send_len: msg.len() as u64,
            reply_ptr: text,
            reply_cap: 16,
            grant_ptr: 0,
            grant_len: 0,
            forward: 0,
        }),
        Error::BadAddress,
    );
    c.refused(
        "grant unmapped range",
        userlib::call(
            echo,
            b"hi",
            &mut reply,
            Some(Grant::range(UNMAPPED, 4096)),
            None,
        ),
        Error::BadAddress,
    );
    c.refused("dma_alloc(0)", userlib::dma_alloc(0), Error::BadArgument);
    c.refused(
        "forward a grant with a forged token",
        userlib::call(
            echo,
            b"hi",
            &mut reply,
            Some(Grant::forward(0x0001_0000_0000_0001, 0, 4096)),
            None,
        ),
        Error::BadReplyToken,
    );

    // (4) Ownership, quota and state.
    c.refused(
        "grant own text",
        userlib::call(
            echo,
            b"hi",
            &mut reply,
            Some(Grant::range(text, 4096)),
            None,
        ),
        Error::Denied,
    );
    c.refused(
        "dma_alloc(quota+1)",
        userlib::dma_alloc(quota + 1),
        Error::OverQuota,
    );
    c.refused(
        "reply bad token",
        userlib::reply(0x1234_5678, b"x"),
        Error::BadReplyToken,
    );

    // Positive control: the kernel and the echo server are unharmed.
    let ping = *b"still here";
    if let Some(n) = c.allowed(
        "echo after bad calls",
        userlib::call(echo, &ping, &mut reply, None, None),
    ) && reply[..n] != ping
    {
        c.broken(
            "echo reply after bad calls",
            "reply differs from the message",
        );
    }
    c.finish()
}

/// Syscall number `n`, with no arguments.
fn raw_n(n: u64) -> SysResult<[u64; 4]> {
    check(raw_syscall(n, [0; 6]))
}

/// The edu device's identification register (BAR0 offset 0): major 1,
/// minor 0, device 0xed.
const EDU_ID: u64 = 0x0100_00ed;
/// PCI configuration offsets [PCI-3.0 §6.2].
const PCI_COMMAND: u32 = 0x04;
const PCI_BAR0: u32 = 0x10;
/// Command register: bus master enable [PCI-3.0 §6.2.2].
const COMMAND_BUS_MASTER: u32 = 1 << 2;

fn nocaps(info: &TaskInfo<'_>) -> i32 {
    let mut c = Cases::new("nocaps");
    let Some(edu) = info.cap("edu") else {
        log!("nocaps: needs capability `edu`");
        return 1;
    };
    c.refused("mmio_map(edu)", userlib::mmio_map(edu), Error::WrongCapKind);
    c.refused("mmio_map(7)", userlib::mmio_map(7), Error::BadCap);
    c.refused(
        "pci_config_read(3, 0)",
        userlib::pci_config_read(3, 0),
        Error::BadCap,
    );
    if let Some(bar) = c.allowed(
        "pci_map_bar(edu, 0)",
        userlib::DeviceRegion::pci_bar(edu, 0),
    ) {
        match bar.read(userlib::Reg::<u32>::at(0)) {
            Some(id) => c.value("edu id register", id as u64, EDU_ID),
            None => c.broken("edu id register", "BAR0 shorter than 4 bytes"),
        }
    }
    c.refused(
        "pci_config_write(edu, BAR0)",
        userlib::pci_config_write(edu, PCI_BAR0, 0),
        Error::Denied,
    );
    if let Some(cmd) = c.allowed(
        "pci_config_read(edu, COMMAND)",
        userlib::pci_config_read(edu, PCI_COMMAND),
    ) {
        // Low half only: the status half has write-1-to-clear bits.
        let value = (cmd & 0xffff) | COMMAND_BUS_MASTER;
        c.refused(
            "pci_config_write(edu, bus master)",
            userlib::pci_config_write(edu, PCI_COMMAND, value),
            Error::Denied,
        );
        // A value wider than the 32-bit register is refused, not truncated
        // into an allowed write (the low half alone would be harmless).
        c.refused(
            "pci_config_write(edu, COMMAND, 33-bit value)",
            raw(
                Sysno::PciConfigWrite,
                [
                    edu as u64,
                    PCI_COMMAND as u64,
                    (1 << 32) | u64::from(cmd & 0xffff),
                    0,
                    0,
                    0,
                ],
            ),
            Error::BadArgument,
        );
        if let Some(after) = c.allowed(
            "pci_config_read(edu, COMMAND) after the refused writes",
            userlib::pci_config_read(edu, PCI_COMMAND),
        ) {
            c.value(
                "edu COMMAND register unchanged",
                u64::from(after & 0xffff),
                u64::from(cmd & 0xffff),
            );
        }
    }
    c.finish()
}
