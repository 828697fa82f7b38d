//! The loop itself: requests from clients, completions from the device,
//! buffer mappings through the IOMMU server. Owns the per-client and
//! per-slot bookkeeping. Never submits an I/O whose request did not pass
//! every check, and never reports an I/O complete before its buffer's
//! mapping is gone (for a strict driver, before the covering IOTLB
//! invalidation completed), except a timed-out (fenced) one: its client
//! gets the error at the deadline, but its slot stays taken and its
//! buffer mapped (so its IOVA cannot go to another I/O) until the device
//! releases it (`BlockDevice::released`). Requests reach it through the
//! protocol's generated dispatch (`requests.rs`).
//!
//! Nothing a client sends grows its memory without bound: each client's
//! in-flight plus unreaped I/Os are limited (`block_api::Limits`, its
//! `Account`), and so is the number of clients; over either a `Submit` is
//! refused with `Busy` before anything is mapped. The client table and
//! each client's completion queue are allocated fallibly, once, at their
//! full size, and never grow after that.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use abi::syscall::{FOREVER, GRANT_MAX_PAGES};
use abi::{Iova, PAGE_SIZE};
use block_api::{
    Account, BenchMode, BlockError, BlockStats, Completion, Completions, FLAG_INJECT_UNMAP, Io,
    IoKind, Limits, MAX_COMPLETIONS, MSG_MAX, Request, Response, SECTOR_SIZE,
};
use iommu_api::{Dir, Extent, FaultRecord, MAX_FAULT_RECORDS, MAX_MAP_ENTRIES, MAX_UNMAP_ENTRIES};
use iommu_client::{ClientError, Iommu};
use userlib::ipc::Grant;
use userlib::{RecvKind, log};

use crate::device::{BlockDevice, DeviceIo};

mod requests;

/// How the loop behaves.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Honour `FLAG_INJECT_UNMAP` (test systems only).
    pub fault_injection: bool,
    /// Polling interval while I/Os are in flight and the device has no
    /// interrupt; with an interrupt, the longest wait before checking for
    /// timeouts anyway.
    pub poll_us: u64,
    /// Name for log lines.
    pub name: &'static str,
    /// Accept `SetMode` (benchmark systems only).
    pub bench: bool,
    /// Test systems only: crash (undefined instruction) right after
    /// starting a batch once this many I/Os completed, so that the crash
    /// happens with I/Os on the device. `None` in every normal system.
    pub crash_after_ios: Option<u64>,
    /// Per-client and client-count limits.
    pub limits: Limits,
}

/// What the loop counted, for the benchmark's per-I/O figures.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    /// I/Os completed.
    pub ios: u64,
    /// `Submit` requests handled.
    pub submits: u64,
    /// `Reap` requests answered.
    pub reaps: u64,
    /// Calls to the IOMMU server: map, unmap, fault queries.
    pub iommu_maps: u64,
    /// Unmap calls.
    pub iommu_unmaps: u64,
    /// Fault queries.
    pub iommu_fault_queries: u64,
    /// I/Os failed because the IOMMU faulted their DMA.
    pub dma_faults: u64,
}

/// An I/O on the device.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    badge: u32,
    tag: u16,
    /// Device address of the buffer; `None` for a flush.
    iova: Option<Iova>,
    bytes: u64,
    /// Still mapped (false once a test injection removed the mapping).
    mapped: bool,
    /// Reported to its client already (timed out), but the device may
    /// still reach the buffer: slot and mapping stay until released.
    fenced: bool,
}

/// A client's call held until it has `min` completions.
#[derive(Clone, Copy, Debug)]
struct Waiting {
    token: u64,
    min: u16,
    max: u16,
    /// A `SubmitWait` (answered `Completed`), not a `Reap` (`Completions`).
    submitted: bool,
}

struct Client {
    badge: u32,
    /// In flight and unreaped, within the per-client limit.
    acct: Account,
    /// I/Os reported (timed out) whose buffers stay mapped, fenced.
    fenced: usize,
    /// Completions not yet reaped (`acct.unreaped()` of them); its
    /// capacity is the per-client limit, reserved when the client was
    /// added, so it never grows.
    done: VecDeque<Completion>,
    /// A held `Reap` or `SubmitWait`.
    reaping: Option<Waiting>,
    /// The client died: answer this death notice once nothing of it is in
    /// flight any more.
    death: Option<u64>,
}

impl Client {
    /// Nothing of it is held: it can leave the table.
    fn idle(&self) -> bool {
        self.acct == Account::default()
            && self.fenced == 0
            && self.done.is_empty()
            && self.reaping.is_none()
            && self.death.is_none()
    }

    /// Queues a completion (dropped for a dead client). The queue's room
    /// was reserved for the limit, which `acct` enforces; should it be
    /// full anyway, it may grow only fallibly.
    fn complete(&mut self, c: Completion, name: &str) {
        let queued = self.death.is_none();
        self.acct.completed(queued);
        if queued {
            if self.done.len() == self.done.capacity() && self.done.try_reserve(1).is_err() {
                log!(
                    "{name}: no memory for a completion of client {}: dropped",
                    self.badge
                );
                self.acct.reaped(1);
                return;
            }
            self.done.push_back(c);
        }
    }
}

struct Loop<'a, D> {
    /// The device; `None` only while a mode switch restarts it.
    dev: Option<D>,
    iommu: &'a Iommu,
    cfg: Config,
    info: block_api::Info,
    slots: Vec<Option<InFlight>>,
    /// Clients with state here; capacity `cfg.limits.clients`, reserved
    /// at start.
    clients: Vec<Client>,
    /// Fault records not yet matched to a completed I/O (its completion
    /// may come in a later batch).
    faults: Vec<FaultRecord>,
    counters: Counters,
    /// An IOMMU call said the server is gone (`PeerDead`) or no longer
    /// knows this driver (`NotAttached`: a restarted server starts from
    /// nothing). The loop then ends the task (see [`EXIT_IOMMU_LOST`]).
    iommu_lost: core::cell::Cell<bool>,
}

/// The exit code of a driver whose IOMMU server died or restarted. The
/// kernel turned bus mastering off and the server's restart dropped this
/// driver's domain, so its device state is gone: it ends, and a driver the
/// system description marks `restart` comes back from its boot image,
/// opens its device afresh and attaches to the new server.
pub const EXIT_IOMMU_LOST: i32 = 3;

/// Serves the block protocol on `endpoint` for `dev`, forever.
pub fn serve<D: BlockDevice>(dev: D, iommu: &Iommu, endpoint: u32, cfg: Config) -> ! {
    let info = dev.info();
    let mut clients = Vec::new();
    if clients
        .try_reserve_exact(usize::from(cfg.limits.clients))
        .is_err()
    {
        log!("{}: no memory for {} clients", cfg.name, cfg.limits.clients);
        userlib::exit(1);
    }
    let mut l = Loop {
        slots: alloc::vec![None; usize::from(info.queue_depth)],
        dev: Some(dev),
        iommu,
        cfg,
        info,
        clients,
        faults: Vec::new(),
        counters: Counters::default(),
        iommu_lost: core::cell::Cell::new(false),
    };
    let mut buf = [0u8; MSG_MAX];
    // The grant's frames go to the IOMMU server by forwarding; the driver
    // never needs them.
    let mut frames: [u64; 0] = [];
    let irq = l.dev().irq();
    loop {
        if l.iommu_lost.get() {
            log!(
                "{}: the IOMMU server is gone or restarted: ending so that the kernel restarts this driver",
                l.cfg.name
            );
            userlib::exit(EXIT_IOMMU_LOST);
        }
        let busy = l.slots.iter().any(Option::is_some);
        let timeout = if busy { l.cfg.poll_us } else { FOREVER };
        let got = match userlib::recv(endpoint, &mut buf, &mut frames, timeout) {
            Ok(g) => g,
            Err(e) => {
                log!("{}: recv refused: {e}", l.cfg.name);
                continue;
            }
        };
        match userlib::ipc::kind(&got) {
            Some(RecvKind::Call) => {
                let msg = &buf[..(got.len as usize).min(MSG_MAX)];
                l.call(got.badge, msg, got.reply, got.grant_va, got.grant_len);
            }
            Some(RecvKind::Notification) => {
                if let Some((cap, bit)) = irq
                    && got.notification & bit != 0
                {
                    l.dev_mut().on_interrupt();
                    l.complete();
                    let _ = userlib::irq_ack(cap);
                }
            }
            Some(RecvKind::ClientDied) => l.client_died(got.badge, got.reply),
            Some(RecvKind::Timeout) => l.complete(),
            None => {}
        }
    }
}

fn reply(token: u64, r: Result<Response<'_>, BlockError>) {
    let mut out = [0u8; MSG_MAX];
    let n = Response::encode_result(r, &mut out);
    // A caller that died meanwhile makes this fail; its death notice follows.
    let _ = userlib::reply(token, &out[..n]);
}

impl<D: BlockDevice> Loop<'_, D> {
    /// Passes an IOMMU call's result on, noting a lost server.
    fn lost<T>(&self, r: Result<T, ClientError>) -> Result<T, ClientError> {
        if let Err(e) = &r
            && e.server_lost()
        {
            self.iommu_lost.set(true);
        }
        r
    }

    fn dev(&self) -> &D {
        self.dev
            .as_ref()
            .expect("the device is up outside a mode switch")
    }

    fn dev_mut(&mut self) -> &mut D {
        self.dev
            .as_mut()
            .expect("the device is up outside a mode switch")
    }

    fn client(&mut self, badge: u32) -> Option<&mut Client> {
        self.clients.iter_mut().find(|c| c.badge == badge)
    }

    /// The client's entry, added if it fits the client limit and its
    /// completion queue can be allocated at full size; `Busy` otherwise.
    fn add_client(&mut self, badge: u32) -> Result<&mut Client, BlockError> {
        if let Some(i) = self.clients.iter().position(|c| c.badge == badge) {
            return Ok(&mut self.clients[i]);
        }
        self.cfg.limits.admit_client(self.clients.len())?;
        let mut done = VecDeque::new();
        if done
            .try_reserve_exact(usize::from(self.cfg.limits.per_client))
            .is_err()
        {
            log!(
                "{}: no memory for client {badge}'s completions",
                self.cfg.name
            );
            return Err(BlockError::Busy);
        }
        // Within the capacity reserved at start: no allocation.
        self.clients.push(Client {
            badge,
            acct: Account::default(),
            fenced: 0,
            done,
            reaping: None,
            death: None,
        });
        let last = self.clients.len() - 1;
        Ok(&mut self.clients[last])
    }

    /// Drops the entry of a client that holds nothing (after a refused
    /// first `Submit`: the refusal changes nothing).
    fn forget_if_idle(&mut self, badge: u32) {
        self.clients.retain(|c| c.badge != badge || !c.idle());
    }

    fn call(&mut self, badge: u32, msg: &[u8], token: u64, grant_va: u64, grant_len: u64) {
        match Request::decode(msg) {
            Err(e) => reply(token, Err(e)),
            Ok(r) => r.dispatch(requests::Call {
                l: self,
                badge,
                token,
                grant_va,
                grant_len,
            }),
        }
    }

    /// Every check, before anything is mapped or started.
    fn check(
        &self,
        badge: u32,
        ios: &[Io],
        grant_va: u64,
        grant_len: u64,
    ) -> Result<(), BlockError> {
        let capacity = self.info.sectors;
        for (i, io) in ios.iter().enumerate() {
            if io.flags & !FLAG_INJECT_UNMAP != 0 {
                return Err(BlockError::Malformed);
            }
            if io.flags & FLAG_INJECT_UNMAP != 0 && !self.cfg.fault_injection {
                return Err(BlockError::NotPermitted);
            }
            if ios[..i].iter().any(|o| o.tag == io.tag)
                || self
                    .slots
                    .iter()
                    .flatten()
                    .any(|s| s.badge == badge && s.tag == io.tag && !s.fenced)
            {
                return Err(BlockError::QueueFull);
            }
            if io.kind == IoKind::Flush {
                if io.sectors != 0 || io.flags != 0 {
                    return Err(BlockError::Malformed);
                }
                continue;
            }
            if io.sectors == 0 {
                return Err(BlockError::Malformed);
            }
            if io.bytes() > u64::from(self.info.max_transfer) {
                return Err(BlockError::TooLarge);
            }
            if io
                .lba
                .checked_add(u64::from(io.sectors))
                .is_none_or(|end| end > capacity)
            {
                return Err(BlockError::OutOfRange);
            }
            if !io.offset.is_multiple_of(SECTOR_SIZE) || !grant_va.is_multiple_of(SECTOR_SIZE) {
                return Err(BlockError::Unaligned);
            }
            if grant_len == 0
                || io
                    .offset
                    .checked_add(io.bytes())
                    .is_none_or(|end| end > grant_len)
            {
                return Err(BlockError::NotGranted);
            }
        }
        if grant_len.div_ceil(PAGE_SIZE) as usize >= GRANT_MAX_PAGES {
            return Err(BlockError::TooLarge);
        }
        if self.slots.iter().filter(|s| s.is_none()).count() < ios.len() {
            return Err(BlockError::QueueFull);
        }
        Ok(())
    }

    fn submit(
        &mut self,
        badge: u32,
        ios: &[Io],
        token: u64,
        grant_va: u64,
        grant_len: u64,
    ) -> Result<(), BlockError> {
        self.counters.submits += 1;
        // The client's limit first: nothing is mapped for a client over it.
        let limits = self.cfg.limits;
        let admitted = self
            .add_client(badge)
            .and_then(|c| c.acct.admit(ios.len(), &limits));
        if let Err(e) = admitted {
            self.forget_if_idle(badge);
            return Err(e);
        }
        let r = self.start(badge, ios, token, grant_va, grant_len);
        match r {
            Ok(()) => {
                if let Some(c) = self.client(badge) {
                    // Admitted above, and nothing ran for this client since.
                    let _ = c.acct.started(ios.len(), &limits);
                }
            }
            Err(_) => self.forget_if_idle(badge),
        }
        r?;
        if self
            .cfg
            .crash_after_ios
            .is_some_and(|n| self.counters.ios >= n)
        {
            log!(
                "{}: CRASHING ON PURPOSE (test) with {} I/Os on the device",
                self.cfg.name,
                ios.len()
            );
            userlib::raw::undefined_instruction();
        }
        Ok(())
    }

    /// Checks, maps and starts an admitted batch; all or nothing.
    fn start(
        &mut self,
        badge: u32,
        ios: &[Io],
        token: u64,
        grant_va: u64,
        grant_len: u64,
    ) -> Result<(), BlockError> {
        self.check(badge, ios, grant_va, grant_len)?;
        // Map the client's own buffers, by direction, forwarding its grant.
        let grant = Grant::forward(token, 0, grant_len);
        let mut iovas: Vec<Option<Iova>> = alloc::vec![None; ios.len()];
        for (kind, dir) in [
            (IoKind::Read, Dir::FromDevice),
            (IoKind::Write, Dir::ToDevice),
        ] {
            let picked: Vec<usize> = (0..ios.len()).filter(|&i| ios[i].kind == kind).collect();
            for chunk in picked.chunks(MAX_MAP_ENTRIES) {
                let ranges: Vec<Extent> = chunk
                    .iter()
                    .map(|&i| Extent::new(ios[i].offset, ios[i].bytes()))
                    .collect();
                let mut out = [Iova::new(0); MAX_MAP_ENTRIES];
                self.counters.iommu_maps += 1;
                if let Err(e) =
                    self.lost(self.iommu.map(grant, dir, &ranges, &mut out[..chunk.len()]))
                {
                    log!("{}: mapping a client buffer failed: {e}", self.cfg.name);
                    self.unmap_now(ios, &iovas);
                    return Err(BlockError::Iommu);
                }
                for (k, &i) in chunk.iter().enumerate() {
                    iovas[i] = Some(out[k]);
                }
            }
        }
        // Test injection: the mapping disappears before the device sees the
        // command, so its DMA faults while the command is in flight.
        let injected: Vec<Extent> = (0..ios.len())
            .filter(|&i| ios[i].flags & FLAG_INJECT_UNMAP != 0)
            .filter_map(|i| iovas[i].map(|v| Extent::new(v.get(), ios[i].bytes())))
            .collect();
        if !injected.is_empty() {
            self.counters.iommu_unmaps += 1;
            if let Err(e) = self.lost(self.iommu.unmap(&injected)) {
                log!("{}: injected unmap failed: {e}", self.cfg.name);
            }
        }
        let mut dev_ios = Vec::with_capacity(ios.len());
        let mut free = (0..self.slots.len()).filter(|&s| self.slots[s].is_none());
        for (i, io) in ios.iter().enumerate() {
            let slot = free.next().ok_or(BlockError::QueueFull)?;
            dev_ios.push(DeviceIo {
                slot: slot as u16,
                kind: io.kind,
                lba: io.lba,
                sectors: io.sectors,
                iova: iovas[i].unwrap_or(Iova::new(0)),
                bytes: if io.kind == IoKind::Flush {
                    0
                } else {
                    io.bytes()
                },
            });
        }
        drop(free);
        if let Err(e) = self.dev_mut().submit(&dev_ios) {
            self.unmap_now(ios, &iovas);
            return Err(e);
        }
        for (i, d) in dev_ios.iter().enumerate() {
            self.slots[usize::from(d.slot)] = Some(InFlight {
                badge,
                tag: ios[i].tag,
                iova: iovas[i],
                bytes: d.bytes,
                mapped: ios[i].flags & FLAG_INJECT_UNMAP == 0,
                fenced: false,
            });
        }
        Ok(())
    }

    /// Undoes the mappings of a refused batch.
    fn unmap_now(&mut self, ios: &[Io], iovas: &[Option<Iova>]) {
        let ranges: Vec<Extent> = (0..ios.len())
            .filter(|&i| ios[i].flags & FLAG_INJECT_UNMAP == 0)
            .filter_map(|i| iovas[i].map(|v| Extent::new(v.get(), ios[i].bytes())))
            .collect();
        for chunk in ranges.chunks(MAX_UNMAP_ENTRIES) {
            self.counters.iommu_unmaps += 1;
            let _ = self.lost(self.iommu.unmap(chunk));
        }
    }

    fn reap(&mut self, badge: u32, token: u64, min: u16, max: u16) {
        let Some(c) = self
            .client(badge)
            .filter(|c| usize::from(min) <= c.acct.in_flight() + c.acct.unreaped())
        else {
            reply(token, Err(BlockError::NothingInFlight));
            return;
        };
        if c.reaping.is_some() {
            // Another call of the same client waits already: one at a time.
            reply(token, Err(BlockError::Busy));
            return;
        }
        c.reaping = Some(Waiting {
            token,
            min,
            max,
            submitted: false,
        });
        self.answer_reaps();
    }

    /// `Submit`, then a held `Reap` counting the I/Os just started; every
    /// refusal comes before anything starts. `call` is the call's (reply
    /// token, grant address, grant length).
    fn submit_wait(
        &mut self,
        badge: u32,
        ios: &[Io],
        call: (u64, u64, u64),
        min: u16,
        max: u16,
    ) -> Result<(), BlockError> {
        let (token, grant_va, grant_len) = call;
        let (waiting, outstanding) = self.client(badge).map_or((false, 0), |c| {
            (c.reaping.is_some(), c.acct.in_flight() + c.acct.unreaped())
        });
        if waiting {
            return Err(BlockError::Busy);
        }
        if usize::from(min) > outstanding + ios.len() {
            return Err(BlockError::NothingInFlight);
        }
        self.submit(badge, ios, token, grant_va, grant_len)?;
        // `submit` added the client (its entry stays while I/Os are in
        // flight).
        if let Some(c) = self.client(badge) {
            c.reaping = Some(Waiting {
                token,
                min,
                max,
                submitted: true,
            });
        }
        self.answer_reaps();
        Ok(())
    }

    fn answer_reaps(&mut self) {
        let counters = &mut self.counters;
        for c in &mut self.clients {
            let Some(Waiting {
                token,
                min,
                max,
                submitted,
            }) = c.reaping
            else {
                continue;
            };
            if c.done.len() < usize::from(min) {
                continue;
            }
            let n = c.done.len().min(usize::from(max)).min(MAX_COMPLETIONS);
            let mut batch = [Completion {
                tag: 0,
                status: Ok(()),
            }; MAX_COMPLETIONS];
            for (slot, done) in batch.iter_mut().zip(c.done.drain(..n)) {
                *slot = done;
            }
            c.acct.reaped(n);
            c.reaping = None;
            let done = Completions::new(&batch[..n]);
            let answer = if submitted {
                Response::Completed(done)
            } else {
                counters.reaps += 1;
                Response::Completions(done)
            };
            reply(token, Ok(answer));
        }
    }

    /// Collects what the device completed, unmaps the buffers in as few
    /// requests as possible, matches IOMMU fault records to the I/Os, and
    /// answers waiting `Reap`s and death notices. An I/O the device
    /// fenced is answered now but keeps its slot and mapping; a slot the
    /// device released is unmapped and freed.
    fn complete(&mut self) {
        let mut done = Vec::new();
        let mut released = Vec::new();
        self.dev_mut().completions(&mut done);
        self.dev_mut().released(&mut released);
        if done.is_empty() && released.is_empty() {
            return;
        }
        let mut finished: Vec<(InFlight, Result<(), BlockError>)> = Vec::new();
        for (slot, status) in done {
            let fence = status.is_err() && self.dev().is_fenced(slot);
            let Some(entry) = self.slots.get_mut(usize::from(slot)) else {
                continue;
            };
            let Some(f) = entry.as_mut().filter(|f| !f.fenced) else {
                continue;
            };
            if fence {
                f.fenced = true;
                let f = *f;
                log!(
                    "{}: slot {slot} timed out: fenced (its slot and its buffer's mapping at IOVA {:#x} stay reserved until the device is done with it)",
                    self.cfg.name,
                    f.iova.map_or(0, |v| v.get())
                );
                self.counters.ios += 1;
                let name = self.cfg.name;
                if let Some(c) = self.client(f.badge) {
                    c.fenced += 1;
                    c.complete(Completion { tag: f.tag, status }, name);
                }
            } else {
                finished.push((*f, status));
                *entry = None;
            }
        }
        let mut lifted: Vec<InFlight> = Vec::new();
        for slot in released {
            let Some(entry) = self.slots.get_mut(usize::from(slot)) else {
                continue;
            };
            if let Some(f) = entry.take_if(|f| f.fenced) {
                log!(
                    "{}: slot {slot}: fence lifted: unmapping its buffer (IOVA {:#x}, {} bytes)",
                    self.cfg.name,
                    f.iova.map_or(0, |v| v.get()),
                    f.bytes
                );
                let badge = f.badge;
                lifted.push(f);
                if let Some(c) = self.clients.iter_mut().find(|c| c.badge == badge) {
                    c.fenced = c.fenced.saturating_sub(1);
                }
            }
        }
        let ranges: Vec<Extent> = finished
            .iter()
            .map(|(f, _)| f)
            .chain(lifted.iter())
            .filter(|f| f.mapped)
            .filter_map(|f| f.iova.map(|v| Extent::new(v.get(), f.bytes)))
            .collect();
        let mut pending_faults = 0;
        for chunk in ranges.chunks(MAX_UNMAP_ENTRIES) {
            self.counters.iommu_unmaps += 1;
            match self.lost(self.iommu.unmap(chunk)) {
                Ok(n) => pending_faults = pending_faults.max(n),
                Err(e) => log!("{}: unmapping completed buffers failed: {e}", self.cfg.name),
            }
        }
        // An injected I/O was unmapped early: its faults are certain to be
        // reported only by asking.
        if pending_faults > 0 || finished.iter().any(|(f, _)| !f.mapped) {
            self.fetch_faults();
        }
        for (f, status) in finished {
            let faulted = f.iova.is_some_and(|v| {
                let (lo, hi) = (v.get() & !(PAGE_SIZE - 1), v.get() + f.bytes);
                let hit = self
                    .faults
                    .iter()
                    .position(|r| (lo..hi).contains(&r.iova.get()));
                hit.map(|i| self.faults.swap_remove(i)).is_some()
            });
            let status = match status {
                Ok(()) if faulted => {
                    self.counters.dma_faults += 1;
                    Err(BlockError::DmaFault)
                }
                s => s,
            };
            self.counters.ios += 1;
            let name = self.cfg.name;
            if let Some(c) = self.client(f.badge) {
                c.complete(Completion { tag: f.tag, status }, name);
            }
        }
        self.answer_reaps();
        self.answer_deaths();
    }

    fn fetch_faults(&mut self) {
        loop {
            let mut recs = [FaultRecord::EMPTY; MAX_FAULT_RECORDS];
            self.counters.iommu_fault_queries += 1;
            let n = match self.lost(self.iommu.faults(&mut recs)) {
                Ok(n) => n,
                Err(e) => {
                    log!("{}: fault query failed: {e}", self.cfg.name);
                    return;
                }
            };
            for r in &recs[..n] {
                log!(
                    "{}: the IOMMU reports a DMA fault (event {:#x}, {}) at IOVA {:#x}, {} records",
                    self.cfg.name,
                    r.kind,
                    if r.write { "write" } else { "read" },
                    r.iova.get(),
                    r.count
                );
                if self.faults.len() < 64 {
                    self.faults.push(*r);
                }
            }
            if n < MAX_FAULT_RECORDS {
                return;
            }
        }
    }

    /// The loop's counters with the IOMMU server's for this driver.
    fn stats(&self) -> Result<BlockStats, BlockError> {
        let s = self.lost(self.iommu.stats()).map_err(|e| {
            log!("{}: IOMMU stats refused: {e}", self.cfg.name);
            BlockError::Iommu
        })?;
        let c = self.counters;
        Ok(BlockStats {
            ios: c.ios,
            submits: c.submits,
            reaps: c.reaps,
            iommu_map_calls: c.iommu_maps,
            iommu_unmap_calls: c.iommu_unmaps,
            iommu_fault_calls: c.iommu_fault_queries,
            dma_faults: c.dma_faults,
            unmapped_ranges: s.unmaps,
            tlbi_commands: s.tlbi_commands,
            cmd_syncs: s.syncs,
            doorbells: s.doorbells,
            server_ticks: s.server_ticks,
            max_stale_window_us: s.max_stale_window_us,
            server_map_ticks: s.map_ticks,
            server_unmap_ticks: s.unmap_ticks,
            server_flush_ticks: s.flush_ticks,
            server_pin_ticks: s.pin_ticks,
        })
    }

    /// A benchmark request may run: this is a benchmark system
    /// (`NotPermitted` otherwise) and nothing is in flight (`QueueFull`).
    fn bench_quiet(&self) -> Result<(), BlockError> {
        if !self.cfg.bench {
            return Err(BlockError::NotPermitted);
        }
        if self.slots.iter().flatten().any(|f| !f.fenced) {
            return Err(BlockError::QueueFull);
        }
        Ok(())
    }

    /// Benchmark counter reset, with nothing in flight: the IOMMU
    /// server's for this driver (which completes its pending
    /// invalidations first), then ours.
    fn reset_stats(&mut self) -> Result<(), BlockError> {
        self.bench_quiet()?;
        self.lost(self.iommu.reset_stats()).map_err(|e| {
            log!("{}: IOMMU stats reset refused: {e}", self.cfg.name);
            BlockError::Iommu
        })?;
        self.counters = Counters::default();
        Ok(())
    }

    /// Benchmark mode switch: with nothing in flight, stop the device,
    /// have the IOMMU server change this driver's policy (which also
    /// resets its counters there), restart the device, reset ours.
    fn set_mode(&mut self, mode: BenchMode) -> Result<(), BlockError> {
        self.bench_quiet()?;
        let iommu = self.iommu;
        self.dev_mut().stop(iommu)?;
        // The device is quiesced: fenced buffers are free to go.
        self.complete();
        let switched = crate::policy::apply(self.iommu, mode);
        let dev = self
            .dev
            .take()
            .expect("the device is up outside a mode switch");
        // Bring the device back whatever the switch did: the driver must
        // keep serving.
        match dev.restart(self.iommu) {
            Ok(d) => self.dev = Some(d),
            Err(e) => {
                log!(
                    "{}: the device did not come back after a mode switch: {e}",
                    self.cfg.name
                );
                userlib::exit(1);
            }
        }
        switched.map_err(|e| {
            log!(
                "{}: the IOMMU server refused mode {}: {e}",
                self.cfg.name,
                mode.name()
            );
            BlockError::Iommu
        })?;
        self.info = self.dev().info();
        self.counters = Counters::default();
        log!("{}: IOMMU mode now {}", self.cfg.name, mode.name());
        Ok(())
    }

    fn client_died(&mut self, badge: u32, token: u64) {
        let Some(c) = self.client(badge) else {
            // Nothing of it was ever held here.
            let _ = userlib::reply(token, &[]);
            return;
        };
        c.acct.reaped(c.done.len());
        c.done.clear();
        c.reaping = None;
        c.death = Some(token);
        self.answer_deaths();
    }

    /// A dead client's memory may be reused once none of its buffers is
    /// mapped for the device any more: its in-flight I/Os completed and its
    /// fenced ones were released (and all were unmapped, synchronously for
    /// a strict driver). Then a flush makes sure even deferred
    /// invalidations completed.
    fn answer_deaths(&mut self) {
        while let Some(i) = self
            .clients
            .iter()
            .position(|c| c.death.is_some() && c.acct.in_flight() == 0 && c.fenced == 0)
        {
            if let Err(e) = self.lost(self.iommu.flush()) {
                log!(
                    "{}: flush before releasing a dead client failed: {e}",
                    self.cfg.name
                );
            }
            let c = self.clients.swap_remove(i);
            if let Some(token) = c.death {
                let _ = userlib::reply(token, &[]);
            }
        }
    }
}
