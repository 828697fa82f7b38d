//! Block service test task, the same for every driver (it only speaks
//! `block-api`). It runs its role on capability `blk`, then on `blk2` if it
//! holds one (seed + 1). Roles (`arg("role")`):
//! - `pattern`: writes a distinct pattern (seed `arg("seed")`) to 16
//!   regions spread over the whole disk with 16 I/Os in flight, reads them
//!   back into a cleared buffer and checks every byte. The host checks the
//!   disk image afterwards with the same pattern function.
//! - `errors`: requests beyond the end, unaligned, oversized, outside the
//!   granted buffer, a reap with nothing in flight and a fault injection
//!   the driver does not allow, each refused with its error, after which a
//!   good I/O still works.
//! - `survive-restart`: writes the pattern region by region while its
//!   driver crashes (test system) and is restarted by the kernel: a call
//!   cut short by the crash (`PeerDead`) is retried until the restarted
//!   driver serves it; then everything is read back and checked.
//! - `fault`: a read whose buffer's mapping the driver removes while the
//!   command is in flight (test systems only): the device completes it as
//!   a success, the driver must report `DmaFault` from the IOMMU server's
//!   fault record, the buffer must be untouched, and the next I/O must work.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

use block_api::{
    BlockError, Completion, FLAG_INJECT_UNMAP, Info, Io, IoKind, MAX_IOS, SECTOR_SIZE,
    pattern_byte, pattern_regions,
};
use block_client::{Block, ClientError};
use userlib::{DmaBuffer, TaskInfo, log};

userlib::entry!(main);

/// Regions and their size in the pattern test.
const REGIONS: u64 = 16;
const REGION_SECTORS: u32 = 32;

fn main(info: &TaskInfo<'static>) -> i32 {
    if info.cap("blk").is_none() {
        log!("blk-test: needs capability `blk`");
        return 1;
    }
    let seed = userlib::arg_u64(info, "seed", 1).unwrap_or(1) as u32;
    // `blk` first, then `blk2` if the task holds it: one device after the
    // other, so the two never have I/O in flight at the same time (the
    // fault test needs that on QEMU before 9.1, whose one global DMA
    // bounce buffer a faulting read on one device can hold while the other
    // device's DMA needs it; see docs/PLATFORM.md).
    let mut code = 0;
    for (i, cap) in ["blk", "blk2"].into_iter().enumerate() {
        if let Some(blk) = info.cap(cap).map(Block::new) {
            code |= run_role(info, &blk, seed + i as u32);
        }
    }
    code
}

/// Runs this task's role on one block device; 0 on success.
fn run_role(info: &TaskInfo<'static>, blk: &Block, seed: u32) -> i32 {
    let geometry = match blk.info() {
        Ok(g) => g,
        Err(e) => {
            log!("blk-test: info refused: {e}");
            return 1;
        }
    };
    let device = match geometry.device_kind {
        1 => "nvme",
        2 => "virtio-blk",
        _ => "unknown device",
    };
    let result = match info.arg("role") {
        Some("pattern") => pattern(blk, &geometry, seed, device),
        Some("errors") => errors(blk, &geometry, device),
        Some("fault") => fault(blk, &geometry, seed, device),
        Some("survive-restart") => survive_restart(blk, seed, device),
        other => {
            log!("blk-test: unknown role {other:?}");
            return 1;
        }
    };
    // In a demo system the task also gives the demo's verdict.
    let demo = info.arg("demo");
    match result {
        Ok(()) => {
            if let Some(d) = demo {
                log!("demo {d}: PASS");
            }
            0
        }
        Err(why) => {
            log!("blk-test: FAILED on {device}: {why}");
            if let Some(d) = demo {
                log!("demo {d}: FAIL: {why}");
            }
            1
        }
    }
}

fn fill(
    buf: &mut DmaBuffer,
    at: u64,
    seed: u32,
    lba: u64,
    sectors: u32,
) -> Result<(), &'static str> {
    for s in 0..u64::from(sectors) {
        for i in 0..SECTOR_SIZE as u32 {
            buf.write::<u8>(
                at + s * SECTOR_SIZE + u64::from(i),
                pattern_byte(seed, lba + s, i),
            )
            .ok_or("buffer")?;
        }
    }
    Ok(())
}

fn matches(buf: &DmaBuffer, at: u64, seed: u32, lba: u64, sectors: u32) -> bool {
    (0..u64::from(sectors)).all(|s| {
        (0..SECTOR_SIZE as u32).all(|i| {
            buf.read::<u8>(at + s * SECTOR_SIZE + u64::from(i))
                == Some(pattern_byte(seed, lba + s, i))
        })
    })
}

/// Runs `ios` on `buf`, up to `MAX_IOS` per submit, all in flight before
/// the first reap; fails on any error completion.
fn run(blk: &Block, buf: &DmaBuffer, ios: &[Io]) -> Result<(), &'static str> {
    for chunk in ios.chunks(MAX_IOS) {
        blk.submit(buf, chunk).map_err(|e| log_err("submit", e))?;
    }
    let mut left = ios.len();
    let mut out = [Completion {
        tag: 0,
        status: Ok(()),
    }; 16];
    while left > 0 {
        let n = blk.reap(1, &mut out).map_err(|e| log_err("reap", e))?;
        for c in &out[..n] {
            if let Err(e) = c.status {
                log!("blk-test: I/O {} failed: {e}", c.tag);
                return Err("an I/O failed");
            }
        }
        left -= n;
    }
    Ok(())
}

fn log_err(what: &str, e: ClientError) -> &'static str {
    log!("blk-test: {what} refused: {e}");
    "request refused"
}

fn pattern(blk: &Block, g: &Info, seed: u32, device: &str) -> Result<(), &'static str> {
    let region_bytes = u64::from(REGION_SECTORS) * SECTOR_SIZE;
    let pages = (REGIONS * region_bytes).div_ceil(abi::PAGE_SIZE);
    let mut buf = DmaBuffer::alloc(pages).map_err(|_| "dma_alloc")?;
    let regions: Vec<(u64, u32)> = pattern_regions(g.sectors, REGIONS, REGION_SECTORS).collect();
    let io = |k: usize, kind| Io {
        tag: k as u16,
        kind,
        flags: 0,
        sectors: regions[k].1,
        lba: regions[k].0,
        offset: k as u64 * region_bytes,
    };
    for (k, &(lba, n)) in regions.iter().enumerate() {
        fill(&mut buf, k as u64 * region_bytes, seed, lba, n)?;
    }
    let writes: Vec<Io> = (0..regions.len()).map(|k| io(k, IoKind::Write)).collect();
    run(blk, &buf, &writes)?;
    let flush = [Io {
        tag: 100,
        kind: IoKind::Flush,
        flags: 0,
        sectors: 0,
        lba: 0,
        offset: 0,
    }];
    run(blk, &buf, &flush)?;
    for i in 0..pages * abi::PAGE_SIZE {
        buf.write::<u8>(i, 0).ok_or("buffer")?;
    }
    let reads: Vec<Io> = (0..regions.len()).map(|k| io(k, IoKind::Read)).collect();
    run(blk, &buf, &reads)?;
    for (k, &(lba, n)) in regions.iter().enumerate() {
        if !matches(&buf, k as u64 * region_bytes, seed, lba, n) {
            log!("blk-test: region {k} (sector {lba}) reads back wrong");
            return Err("data mismatch");
        }
    }
    log!(
        "blk-test: {device}: wrote {} regions of {} KiB across {} sectors (first at 0, last at {}) and read them back byte for byte",
        regions.len(),
        region_bytes / 1024,
        g.sectors,
        regions.last().map_or(0, |r| r.0)
    );
    Ok(())
}

fn errors(blk: &Block, g: &Info, device: &str) -> Result<(), &'static str> {
    let buf = DmaBuffer::alloc(2).map_err(|_| "dma_alloc")?;
    let read = |lba, sectors, offset, flags| Io {
        tag: 1,
        kind: IoKind::Read,
        flags,
        sectors,
        lba,
        offset,
    };
    let big = g.max_transfer / SECTOR_SIZE as u32 + 8;
    let cases: [(&str, Io, BlockError); 6] = [
        (
            "beyond the end of the disk",
            read(g.sectors, 1, 0, 0),
            BlockError::OutOfRange,
        ),
        (
            "straddling the end of the disk",
            read(g.sectors - 1, 2, 0, 0),
            BlockError::OutOfRange,
        ),
        (
            "unaligned buffer offset",
            read(0, 1, 100, 0),
            BlockError::Unaligned,
        ),
        (
            "larger than max_transfer",
            read(0, big, 0, 0),
            BlockError::TooLarge,
        ),
        (
            "outside the granted buffer",
            read(0, 8, 6144, 0),
            BlockError::NotGranted,
        ),
        (
            "fault injection not allowed",
            read(0, 1, 0, FLAG_INJECT_UNMAP),
            BlockError::NotPermitted,
        ),
    ];
    let mut wrong = 0;
    for (name, io, want) in cases {
        match blk.submit(&buf, &[io]) {
            Err(ClientError::Block(e)) if e == want => {
                log!("blk-test: {device}: {name}: refused with {e} (expected {want})")
            }
            other => {
                log!("blk-test: {device}: {name}: got {other:?}, expected {want}");
                wrong += 1;
            }
        }
    }
    let mut out = [Completion {
        tag: 0,
        status: Ok(()),
    }; 1];
    match blk.reap(1, &mut out) {
        Err(ClientError::Block(BlockError::NothingInFlight)) => {
            log!("blk-test: {device}: reap with nothing in flight: refused with NothingInFlight")
        }
        other => {
            log!("blk-test: {device}: reap with nothing in flight: got {other:?}");
            wrong += 1;
        }
    }
    // The driver is unharmed.
    blk.io(&buf, read(0, 8, 0, 0))
        .map_err(|e| log_err("read after refusals", e))?;
    if wrong > 0 {
        return Err("a bad request was not refused as expected");
    }
    log!("blk-test: {device}: all 7 bad requests refused as expected; a good read still works");
    Ok(())
}

fn fault(blk: &Block, g: &Info, seed: u32, device: &str) -> Result<(), &'static str> {
    let lba = g.sectors / 2 - g.sectors / 2 % 8;
    let sectors = 8;
    let mut buf = DmaBuffer::alloc(1).map_err(|_| "dma_alloc")?;
    fill(&mut buf, 0, seed, lba, sectors)?;
    let io = |kind, flags| Io {
        tag: 7,
        kind,
        flags,
        sectors,
        lba,
        offset: 0,
    };
    blk.io(&buf, io(IoKind::Write, 0))
        .map_err(|e| log_err("write", e))?;
    for i in 0..abi::PAGE_SIZE {
        buf.write::<u8>(i, 0xa5).ok_or("buffer")?;
    }
    match blk.io(&buf, io(IoKind::Read, FLAG_INJECT_UNMAP)) {
        Err(ClientError::Block(BlockError::DmaFault)) => {}
        other => {
            log!(
                "blk-test: {device}: read with its mapping removed in flight ended {other:?}, expected DmaFault"
            );
            return Err("the DMA fault was not reported");
        }
    }
    if !(0..abi::PAGE_SIZE).all(|i| buf.read::<u8>(i) == Some(0xa5)) {
        return Err("the faulted read changed the buffer");
    }
    log!(
        "blk-test: {device}: read with its mapping removed in flight: DmaFault reported, buffer untouched"
    );
    blk.io(&buf, io(IoKind::Read, 0))
        .map_err(|e| log_err("read after the fault", e))?;
    if !matches(&buf, 0, seed, lba, sectors) {
        return Err("the data on disk is corrupted");
    }
    log!(
        "blk-test: {device}: the next read returns the data written before: nothing else corrupted"
    );
    Ok(())
}

/// Retries `op` while the driver is away (crashed, restarting): `PeerDead`
/// from the kernel, or a refusal while the device is not back yet.
fn retrying(
    what: &str,
    retries: &mut u32,
    mut op: impl FnMut() -> Result<(), ClientError>,
) -> Result<(), &'static str> {
    for _ in 0..200 {
        match op() {
            Ok(()) => return Ok(()),
            Err(ClientError::Sys(abi::Error::PeerDead)) | Err(ClientError::Block(_)) => {
                if *retries == 0 {
                    log!(
                        "blk-test: {what}: the driver went away under an I/O; retrying until it is back"
                    );
                }
                *retries += 1;
                let _ = userlib::sleep(20_000);
            }
            Err(e) => return Err(log_err(what, e)),
        }
    }
    Err("the driver did not come back")
}

fn survive_restart(blk: &Block, seed: u32, device: &str) -> Result<(), &'static str> {
    let mut retries = 0;
    let mut g = None;
    retrying("info", &mut retries, || blk.info().map(|i| g = Some(i)))?;
    let g = g.ok_or("no geometry")?;
    let region_bytes = u64::from(REGION_SECTORS) * SECTOR_SIZE;
    let regions: Vec<(u64, u32)> = pattern_regions(g.sectors, REGIONS, REGION_SECTORS).collect();
    let mut buf =
        DmaBuffer::alloc(region_bytes.div_ceil(abi::PAGE_SIZE)).map_err(|_| "dma_alloc")?;
    for (k, &(lba, n)) in regions.iter().enumerate() {
        fill(&mut buf, 0, seed, lba, n)?;
        let io = Io {
            tag: k as u16,
            kind: IoKind::Write,
            flags: 0,
            sectors: n,
            lba,
            offset: 0,
        };
        retrying("write", &mut retries, || blk.io(&buf, io))?;
    }
    for (k, &(lba, n)) in regions.iter().enumerate() {
        let io = Io {
            tag: k as u16,
            kind: IoKind::Read,
            flags: 0,
            sectors: n,
            lba,
            offset: 0,
        };
        retrying("read", &mut retries, || blk.io(&buf, io))?;
        if !matches(&buf, 0, seed, lba, n) {
            log!("blk-test: region {k} (sector {lba}) reads back wrong after the restart");
            return Err("data mismatch");
        }
    }
    if retries == 0 {
        return Err("the driver never went away: the crash did not happen");
    }
    log!(
        "blk-test: {device}: survived a driver crash and restart: all {} regions written and read back ({retries} retries)",
        regions.len()
    );
    Ok(())
}
