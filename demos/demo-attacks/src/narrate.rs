//! The narration every demo shares: `ATTEMPT:` / `STOPPED:` lines, checks
//! of what must be unchanged afterwards, the verdict line, raw requests to
//! the IOMMU server (so that a field the typed client fixes can be wrong),
//! and the notification handshake between a demo's tasks.

use alloc::format;
use alloc::string::String;
use core::fmt;

use abi::{Iova, PAGE_SIZE, StreamId};
use edu::Edu;
use iommu_api::{Dir, MSG_MAX, Request, Response, Stats};
use iommu_client::{ClientError, Iommu};
use userlib::ipc::Grant;
use userlib::{DmaBuffer, Error, TaskInfo, log};

/// How long a task waits for its peer before the demo fails (µs).
const PEER_TIMEOUT_US: u64 = 30_000_000;

/// A refusal as the narration prints it: who refused, and the exact code.
pub struct Shown(pub ClientError);

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            ClientError::Sys(e) => write!(f, "kernel {e:?}"),
            ClientError::Api(e) => write!(f, "server {e:?}"),
        }
    }
}

/// One task's part of a demo: its attempts and checks, and the first
/// thing that went wrong.
pub struct Demo {
    /// The demo's name (`demo <name>: PASS`).
    name: &'static str,
    /// The first failure, if any.
    failure: Option<String>,
}

impl Demo {
    /// A demo part named `name`, nothing failed yet.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            failure: None,
        }
    }

    /// Records a failure (the first one is the verdict's reason).
    pub fn fail(&mut self, why: String) {
        log!("UNEXPECTED: {why}");
        if self.failure.is_none() {
            self.failure = Some(why);
        }
    }

    /// Whether nothing failed so far.
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }

    /// Narrates `attempt`, which must be refused with exactly `want`;
    /// `by` says what stops it.
    pub fn refused<T>(
        &mut self,
        attempt: &str,
        result: Result<T, ClientError>,
        want: ClientError,
        by: &str,
    ) {
        log!("ATTEMPT: {attempt}");
        match result {
            Err(e) if e == want => log!("STOPPED: {} (by {by})", Shown(e)),
            Err(e) => self.fail(format!(
                "{attempt}: refused with {} instead of {}",
                Shown(e),
                Shown(want)
            )),
            Ok(_) => self.fail(format!("{attempt}: it succeeded (wanted {})", Shown(want))),
        }
    }

    /// Narrates a step that must succeed (setting the stage, or a check
    /// that the victim is unharmed); `None` if it failed.
    pub fn step<T, E: fmt::Display>(&mut self, what: &str, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(format!("{what}: {e}"));
                None
            }
        }
    }

    /// Narrates a check that must hold.
    pub fn check(&mut self, what: &str, holds: bool) {
        if holds {
            log!("CHECK: {what}: yes");
        } else {
            self.fail(format!("{what}: no"));
        }
    }

    /// Checks that the server's `Stats` for this task show nothing mapped.
    pub fn nothing_mapped(&mut self, iommu: &Iommu) {
        if let Some(s) = self.step("Stats", iommu.stats()) {
            log!(
                "stats for this client: {} maps, {} bytes of IOVA in use",
                s.maps,
                s.iova_bytes_in_use
            );
            self.check(
                "the server holds no mapping for this client (0 maps, 0 bytes of IOVA in use)",
                s.maps == 0 && s.iova_bytes_in_use == 0,
            );
        }
    }

    /// Ends the demo: the verdict line and the exit status.
    pub fn finish(self) -> i32 {
        match self.failure {
            None => {
                log!("demo {}: PASS", self.name);
                0
            }
            Some(why) => {
                log!("demo {}: FAIL: {why}", self.name);
                1
            }
        }
    }

    /// Ends a helper task's part (the verdict is printed by another task):
    /// notifies `peer` with `ok_bit` or `broken_bit`; returns the exit
    /// status.
    pub fn report(mut self, role: &str, peer: u32, ok_bit: u64, broken_bit: u64) -> i32 {
        let bit = if self.ok() { ok_bit } else { broken_bit };
        if let Err(e) = userlib::notify(peer, bit) {
            self.fail(format!("notify the reporting task: {e:?}"));
        }
        match &self.failure {
            None => {
                log!("{role}: every attempt was stopped");
                0
            }
            Some(why) => {
                log!("{role}: broken: {why}");
                1
            }
        }
    }

    /// Turns a missing capability or argument into a failed demo.
    pub fn need<T>(&mut self, what: &str, v: Option<T>) -> Option<T> {
        if v.is_none() {
            self.fail(format!("the system description gives no {what}"));
        }
        v
    }

    /// The capabilities `names` of `info`, in that order; `None` unless
    /// every one is there (each missing one is a failure, as [`need`](Self::need)).
    pub fn caps<const N: usize>(
        &mut self,
        info: &TaskInfo<'_>,
        names: [&str; N],
    ) -> Option<[u32; N]> {
        let found = names.map(|name| self.need(&format!("capability `{name}`"), info.cap(name)));
        let mut caps = [0; N];
        for (slot, cap) in caps.iter_mut().zip(found) {
            *slot = cap?;
        }
        Some(caps)
    }

    /// Sets the stage for a legitimate edu owner: attaches `dev`, turns bus
    /// mastering on, opens the device, and maps one page of fresh DMA
    /// memory for it (both directions).
    pub fn edu_with_page(
        &mut self,
        iommu: &Iommu,
        dev: u32,
    ) -> Option<(StreamId, Edu, DmaBuffer, Iova)> {
        let sid = self.step("attach edu", iommu.attach(dev, edu::DMA_BITS))?;
        self.step("bus master enable", userlib::pci_enable_bus_master(dev))?;
        let edu = self.step("edu open", Edu::open(dev))?;
        let buf = self.step("dma_alloc", DmaBuffer::alloc(1))?;
        let iova = self.step(
            "map",
            iommu.map_one(buf.grant(), Dir::Bidirectional, 0, PAGE_SIZE),
        )?;
        Some((sid, edu, buf, iova))
    }
}

/// One request built by hand: any grant, any presented capability (the
/// typed client always presents a device with `Attach` and grants with
/// `Map`). Returns what the server answered, reduced to success or error.
pub fn raw_request(
    endpoint: u32,
    req: &Request<'_>,
    grant: Option<Grant>,
    present: Option<u32>,
) -> Result<(), ClientError> {
    let mut msg = [0u8; MSG_MAX];
    let len = req.encode(&mut msg)?;
    raw_bytes(endpoint, req, &msg[..len], grant, present)
}

/// Sends `msg` (meant as a request of `req`'s kind) as it is.
pub fn raw_bytes(
    endpoint: u32,
    req: &Request<'_>,
    msg: &[u8],
    grant: Option<Grant>,
    present: Option<u32>,
) -> Result<(), ClientError> {
    let mut reply = [0u8; MSG_MAX];
    let got = userlib::call(endpoint, msg, &mut reply, grant, present)?;
    Response::decode(req.op(), &reply[..got])?;
    Ok(())
}

/// Waits until this task's notification word has shown every bit group
/// of `groups` at least once (a group: any of its bits); returns every bit
/// seen. `Err` after [`PEER_TIMEOUT_US`] without progress.
pub fn await_peers(groups: &[u64]) -> Result<u64, Error> {
    let mut seen = 0;
    while !groups.iter().all(|g| seen & g != 0) {
        seen |= userlib::wait(PEER_TIMEOUT_US)?;
    }
    Ok(seen)
}

/// Logs a client's counters.
pub fn log_stats(who: &str, s: &Stats) {
    log!(
        "stats for {who}: {} maps, {} unmaps, {} bytes of IOVA in use",
        s.maps,
        s.unmaps,
        s.iova_bytes_in_use
    );
}

impl Demo {
    /// Proves that a legitimate owner is unaffected by the attempts: a DMA
    /// round trip through its mapping at `iova` (RAM → edu → RAM) brings its
    /// pattern back; it then unmaps, maps and unmaps again itself; its
    /// counters show exactly that work (2 maps, 2 unmaps, no fault, nothing
    /// left mapped). `who` names it in the narration.
    pub fn owner_unaffected(
        &mut self,
        who: &str,
        iommu: &Iommu,
        edu: &mut Edu,
        buf: &mut DmaBuffer,
        iova: Iova,
        copy: u64,
    ) -> Option<()> {
        use edu::Direction;
        use iommu_api::Extent;
        let pattern = |i: u64| (i as u8).wrapping_mul(13).wrapping_add(5);
        for i in 0..copy {
            buf.write::<u8>(i, pattern(i))?;
        }
        self.step(
            "DMA to the device",
            edu.dma(Direction::ToDevice, iova.get(), 0, copy),
        )?;
        for i in 0..copy {
            buf.write::<u8>(i, 0)?;
        }
        self.step("DMA to RAM", edu.dma(Direction::ToRam, iova.get(), 0, copy))?;
        let landed = (0..copy).all(|i| buf.read::<u8>(i) == Some(pattern(i)));
        self.check(
            &format!("{who}'s device still DMAs through its mapping (data round-tripped)"),
            landed,
        );
        self.step("unmap", iommu.unmap(&[Extent::new(iova.get(), PAGE_SIZE)]))?;
        let again = self.step(
            "map again",
            iommu.map_one(buf.grant(), Dir::Bidirectional, 0, PAGE_SIZE),
        )?;
        self.step(
            "unmap again",
            iommu.unmap(&[Extent::new(again.get(), PAGE_SIZE)]),
        )?;
        log!("{who}: unmapped its mapping itself, mapped and unmapped again");
        let s = self.step("Stats", iommu.stats())?;
        log_stats(who, &s);
        self.check(
            &format!("{who}'s counters show its own work only (2 maps, 2 unmaps, no fault, 0 bytes in use)"),
            s.maps == 2 && s.unmaps == 2 && s.faults == 0 && s.iova_bytes_in_use == 0,
        );
        Some(())
    }
}
