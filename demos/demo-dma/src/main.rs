//! DMA isolation demos: what a compromised driver can aim its device at,
//! and what stops it. Each demo narrates `ATTEMPT: ...` and `STOPPED: ...
//! (by what)` lines and ends with exactly `demo <name>: PASS` or
//! `demo <name>: FAIL: <why>` (exit status 0 or 1); a demo fails whenever
//! the protection it shows did not hold. Roles (`arg("role")`):
//!
//! - `judge`: serves the `demo` endpoint, collects `arg("parts")` part
//!   results, checks the kernel image's checksum at the end, and prints
//!   the verdict of demo `arg("demo")`.
//! - `rogue-edu`: a compromised driver programs the `edu` DMA engine to
//!   write to IOVAs it never mapped, page after page, until the IOMMU
//!   server quarantines it (the server's `quarantine_after` is set low in
//!   the system description).
//! - `rogue-nvme`: a compromised NVMe driver (the real `nvme` crate with
//!   its test-only `demo-rogue` forged read) aims a read at the kernel
//!   image's physical address 0x4020_0000.
//! - `use-after-unmap`: a client unmaps a buffer and has its device write
//!   to the old IOVA; `arg("policy")` says whether the system description
//!   made it `strict` (must fault at once) or `deferred` (the stale window,
//!   bounded by `arg("window_us")`, then a fault).
//!
//! Never `unsafe`; every device address it gives a device on purpose is
//! either an IOVA the IOMMU server returned or one it deliberately never
//! mapped.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod rogue;
mod uau;

use alloc::string::String;

use abi::{Iova, PAGE_SIZE, StreamId};
use edu::{Direction, Edu};
use iommu_api::{Dir, FaultRecord, MAX_FAULT_RECORDS};
use iommu_client::Iommu;
use userlib::{DmaBuffer, MSG_MAX, RecvKind, TaskInfo, log};

userlib::entry!(main);

/// SMMUv3 event number of a translation fault.
pub const F_TRANSLATION: u16 = 0x10;

/// A part's outcome: `Err` names the protection that failed.
pub type Outcome = Result<(), String>;

fn main(info: &TaskInfo<'static>) -> i32 {
    let role = info.arg("role").unwrap_or("");
    if role == "judge" {
        return judge(info);
    }
    let outcome = match role {
        "rogue-edu" => rogue::edu(info),
        "rogue-nvme" => rogue::nvme(info),
        "use-after-unmap" => uau::run(info),
        other => Err(alloc::format!("unknown role {other:?}")),
    };
    let ok = outcome.is_ok();
    match info.cap("demo") {
        // A part of a demo: the judge gives the verdict.
        Some(judge) => {
            if let Err(why) = &outcome {
                log!("{role}: part FAILED: {why}");
            }
            report(judge, role, &outcome);
        }
        // A demo of its own.
        None => verdict(info.arg("demo").unwrap_or(role), &outcome),
    }
    if ok { 0 } else { 1 }
}

/// Prints the one verdict line of demo `name`.
fn verdict(name: &str, outcome: &Outcome) {
    match outcome {
        Ok(()) => log!("demo {name}: PASS"),
        Err(why) => log!("demo {name}: FAIL: {why}"),
    }
}

/// Sends a part's outcome to the judge: `[ok]` then the part's name and,
/// on failure, why.
fn report(judge: u32, part: &str, outcome: &Outcome) {
    let mut msg = [0u8; MSG_MAX];
    let text = match outcome {
        Ok(()) => String::from(part),
        Err(why) => alloc::format!("{part}: {why}"),
    };
    let n = text.len().min(MSG_MAX - 1);
    msg[0] = u8::from(outcome.is_ok());
    msg[1..=n].copy_from_slice(&text.as_bytes()[..n]);
    if let Err(e) = userlib::call(judge, &msg[..=n], &mut [], None, None) {
        log!("{part}: cannot report to the judge: {e}");
    }
}

/// The judge of a demo made of several part tasks.
fn judge(info: &TaskInfo<'static>) -> i32 {
    let name = info.arg("demo").unwrap_or("?");
    let parts = userlib::arg_u64(info, "parts", 1).unwrap_or(1);
    let timeout_s = userlib::arg_u64(info, "timeout_s", 120).unwrap_or(120);
    let Some(ep) = info.cap("demo") else {
        log!("demo {name}: FAIL: the judge needs capability `demo` (serve)");
        return 1;
    };
    let (_, hz) = userlib::time().unwrap_or((0, 1));
    let deadline = userlib::counter().saturating_add(timeout_s.saturating_mul(hz.max(1)));
    let mut failures: alloc::vec::Vec<String> = alloc::vec::Vec::new();
    let mut got = 0;
    let mut buf = [0u8; MSG_MAX];
    while got < parts {
        let now = userlib::counter();
        if now >= deadline {
            failures.push(alloc::format!(
                "only {got} of {parts} parts reported within {timeout_s} s"
            ));
            break;
        }
        let left_us = (deadline - now).saturating_mul(1_000_000) / hz.max(1);
        let r = match userlib::recv(ep, &mut buf, &mut [], left_us.max(1)) {
            Ok(r) => r,
            Err(e) => {
                failures.push(alloc::format!("recv refused: {e}"));
                break;
            }
        };
        if userlib::ipc::kind(&r) != Some(RecvKind::Call) {
            continue;
        }
        let len = (r.len as usize).min(MSG_MAX);
        got += 1;
        if len == 0 || buf[0] != 1 {
            let text = core::str::from_utf8(&buf[1..len.max(1)]).unwrap_or("?");
            failures.push(String::from(text));
        }
        let _ = userlib::reply(r.reply, &[]);
    }
    match userlib::kernel_integrity() {
        Ok((true, sum)) => log!(
            "judge: kernel code and read-only data unchanged since boot (checksum {sum:#018x})"
        ),
        Ok((false, sum)) => {
            log!("BREACH: kernel image changed (checksum now {sum:#018x})");
            if !failures.iter().any(|f| f.contains("BREACH")) {
                failures.push(String::from("BREACH: kernel image changed"));
            }
        }
        Err(e) => failures.push(alloc::format!("kernel integrity unknown: {e}")),
    }
    let outcome = match failures.first() {
        None => Ok(()),
        Some(_) => Err(failures.join("; ")),
    };
    verdict(name, &outcome);
    if outcome.is_ok() { 0 } else { 1 }
}

/// Attaches the edu device `dev` (its 28-bit DMA width), turns bus
/// mastering on and opens it.
pub fn open_edu(iommu: &Iommu, dev: u32) -> Result<(StreamId, Edu), String> {
    let sid = iommu
        .attach(dev, edu::DMA_BITS)
        .map_err(|e| alloc::format!("attach: {e}"))?;
    userlib::pci_enable_bus_master(dev).map_err(|e| alloc::format!("bus master enable: {e}"))?;
    let edu = Edu::open(dev).map_err(|e| alloc::format!("edu open: {e}"))?;
    Ok((sid, edu))
}

/// Shows that `edu` works through the IOMMU: a two-page buffer whose first
/// page holds `pattern` (mapped to the device) and whose second is zero
/// (mapped from the device); `copy` bytes go RAM → edu → RAM and must land
/// in the second page. Returns the buffer and the two IOVAs.
pub fn edu_round_trip(
    iommu: &Iommu,
    edu: &mut Edu,
    copy: u64,
    pattern: fn(u64) -> u8,
) -> Result<(DmaBuffer, Iova, Iova), String> {
    let mut buf = DmaBuffer::alloc(2).map_err(|e| alloc::format!("dma_alloc: {e}"))?;
    for i in 0..PAGE_SIZE {
        buf.write::<u8>(i, pattern(i)).ok_or("fill")?;
        buf.write::<u8>(PAGE_SIZE + i, 0).ok_or("fill")?;
    }
    let src = iommu
        .map_one(buf.grant(), Dir::ToDevice, 0, PAGE_SIZE)
        .map_err(|e| alloc::format!("map: {e}"))?;
    let dst = iommu
        .map_one(buf.grant(), Dir::FromDevice, PAGE_SIZE, PAGE_SIZE)
        .map_err(|e| alloc::format!("map: {e}"))?;
    for (dir, iova) in [(Direction::ToDevice, src), (Direction::ToRam, dst)] {
        edu.dma(dir, iova.get(), 0, copy)
            .map_err(|e| alloc::format!("DMA: {e}"))?;
    }
    if !(0..copy).all(|i| buf.read::<u8>(PAGE_SIZE + i) == Some(pattern(i))) {
        return Err("DMA through the device's own mapping did not land".into());
    }
    Ok((buf, src, dst))
}

/// Checks the kernel image against its boot-time checksum; a change is a
/// breach (logged as such).
pub fn kernel_unchanged(who: &str) -> Result<u64, String> {
    match userlib::kernel_integrity() {
        Ok((true, sum)) => Ok(sum),
        Ok((false, sum)) => {
            log!("{who}: BREACH: kernel image changed (checksum now {sum:#018x})");
            Err(String::from("BREACH: kernel image changed"))
        }
        Err(e) => Err(alloc::format!("cannot read the kernel's checksum: {e}")),
    }
}

/// Drains this client's fault records from the IOMMU server and returns
/// those of stream `sid` (page, write, count), at most `MAX_FAULT_RECORDS`.
pub fn faults_of(iommu: &Iommu, sid: StreamId) -> Result<alloc::vec::Vec<FaultRecord>, String> {
    let mut out = [FaultRecord::EMPTY; MAX_FAULT_RECORDS];
    let n = iommu
        .faults(&mut out)
        .map_err(|e| alloc::format!("fault query refused: {e}"))?;
    Ok(out[..n].iter().copied().filter(|f| f.sid == sid).collect())
}

/// The record of a translation fault on `iova`'s page, if any.
pub fn fault_on(records: &[FaultRecord], iova: u64) -> Option<&FaultRecord> {
    let page = iova & !(PAGE_SIZE - 1);
    records
        .iter()
        .find(|f| f.kind == F_TRANSLATION && f.iova.get() & !(PAGE_SIZE - 1) == page)
}
