//! The SMMUv3 hardware layer: the one place that touches the SMMU's
//! registers and queues. Typed register access (`smmuv3::regs`), the
//! command queue (bounded wait for room, one doorbell per batch, CMD_SYNC
//! completion polled with a deadline, command errors detected through
//! GERROR ^ GERRORN and skipped), the event queue, and bring-up and enable
//! in the order the architecture asks, from what the ID registers say.
//! Decides nothing about clients or mappings: that is `iommu_core::server`.

use abi::{PhysAddr, StreamId};
use iommu_core::server::{HwError, SmmuHw};
use smmuv3::cmd::{Command, Sync as CmdSync};
use smmuv3::idr::Features;
use smmuv3::queue::{Pos, Ring};
use smmuv3::regs::{self, Cr0, Cr1, Cr2, GError, IrqCtrl, QueueBase, QueueKind};
use userlib::{Counter, DeviceRegion, Reg, log, poll_until};

use crate::pool::Pool;

/// log2 of the command queue's entries (16 bytes each): 4 KiB of queue.
const CMDQ_LOG2: u8 = 8;
/// log2 of the event queue's entries (32 bytes each): 512 KiB, unless the
/// task's `evtq_log2` argument says otherwise. Generous on purpose: QEMU
/// writes ~1,025 records for one faulted 4 KiB transfer.
pub const EVTQ_LOG2: u8 = 14;
/// Deadline for register acknowledgements (CR0ACK, IRQ_CTRLACK, GBPA).
const ACK_TIMEOUT_US: u64 = 100_000;
/// Deadline for a CMD_SYNC to complete, or for the queue to make room.
const CMDQ_TIMEOUT_US: u64 = 1_000_000;

/// Why the SMMU cannot be used.
#[derive(Debug)]
pub enum BringUpError {
    /// The ID registers do not decode.
    Idr(smmuv3::Error),
    /// A feature this server needs is missing (named).
    Missing(&'static str),
    /// The pool could not hold the queues.
    NoMemory,
    /// A register never acknowledged.
    Hw(HwError),
    /// A register value could not be encoded.
    Encode(smmuv3::Error),
}

impl core::fmt::Display for BringUpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BringUpError::Idr(e) => write!(f, "ID registers do not decode: {e:?}"),
            BringUpError::Missing(what) => write!(f, "this server needs {what}"),
            BringUpError::NoMemory => f.write_str("the pool cannot hold the queues"),
            BringUpError::Hw(e) => write!(f, "the SMMU did not acknowledge: {e:?}"),
            BringUpError::Encode(e) => write!(f, "a register value does not encode: {e:?}"),
        }
    }
}

/// Counts of what the hardware layer did, for the cost figures.
#[derive(Clone, Copy, Debug, Default)]
pub struct HwCounters {
    /// Commands written to the queue (CMD_SYNC included).
    pub commands: u64,
    /// CMDQ_PROD writes.
    pub doorbells: u64,
    /// CMD_SYNCs issued.
    pub syncs: u64,
    /// Event records read.
    pub events: u64,
    /// Event-queue overflows seen.
    pub event_overflows: u64,
    /// Commands the SMMU refused (CMDQ_ERR).
    pub command_errors: u64,
    /// Counter ticks spent in the kernel's pin and unpin calls (the
    /// server's time accounting charges them apart).
    pub pin_ticks: u64,
}

struct Queue {
    base: PhysAddr,
    ring: Ring,
    /// Our index: PROD for the command queue, CONS for the event queue.
    pos: Pos,
    /// The command queue's CONS as last read: never ahead of the real one
    /// (the SMMU only moves it forward), so room computed from it is never
    /// more than there is. Saves a register read per enqueue.
    seen: Pos,
    entry_bytes: u64,
}

/// The SMMU, brought up by [`Smmu::probe`].
pub struct Smmu {
    regs: DeviceRegion,
    features: Features,
    pool: Pool,
    cmdq: Queue,
    evtq: Queue,
    clock: Counter,
    /// The SMMU-owner capability, for pinning frames in the kernel.
    owner: Option<u32>,
    /// What it did.
    pub counters: HwCounters,
    /// The state bring-up found the SMMU in.
    pub found: Found,
    /// StreamID of the last event record read (an overflow is charged to
    /// its owner).
    last_sid: Option<StreamId>,
}

/// The state [`Smmu::probe`] found the SMMU in: at boot, reset values; in
/// a restarted instance, what the kernel's stop left (SMMUEN = 0, the
/// queues off, GBPA aborting) and any error the dead instance left.
#[derive(Clone, Copy, Debug, Default)]
pub struct Found {
    /// CR0ACK: what was enabled.
    pub cr0: Cr0,
    /// Whether GBPA was already aborting.
    pub gbpa_abort: bool,
    /// Global errors active (and acknowledged by bring-up).
    pub gerror: GError,
}

impl Smmu {
    /// Pins and unpins frames through the SMMU-owner capability `cap`.
    pub fn set_owner(&mut self, cap: u32) {
        self.owner = Some(cap);
    }

    fn r32(&self, r: Reg<u32>) -> u32 {
        self.regs.read(r).expect("register inside the SMMU frame")
    }
    fn w32(&mut self, r: Reg<u32>, v: u32) {
        self.regs
            .write(r, v)
            .expect("register inside the SMMU frame");
    }
    fn w64(&mut self, r: Reg<u64>, v: u64) {
        self.regs
            .write(r, v)
            .expect("register inside the SMMU frame");
    }

    /// Polls `done` until true or `timeout_us` passes, through the shared
    /// bounded wait (spinning on the counter): every wait of this layer
    /// goes through here. An error from `done` ends the wait.
    fn poll(
        &mut self,
        timeout_us: u64,
        what: &'static str,
        mut done: impl FnMut(&mut Self) -> Result<bool, HwError>,
    ) -> Result<(), HwError> {
        let mut clock = self.clock;
        poll_until(&mut clock, timeout_us, || match done(self) {
            Ok(true) => Some(Ok(())),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        })
        .unwrap_or_else(|_| {
            log!("iommu: timeout waiting for {what}");
            Err(HwError::Timeout)
        })
    }

    fn write_cr0(&mut self, cr0: Cr0) -> Result<(), HwError> {
        self.w32(regs::CR0, cr0.bits());
        self.poll(ACK_TIMEOUT_US, "CR0ACK", |s| {
            Ok(s.r32(regs::CR0ACK) == cr0.bits())
        })
    }

    /// Reads the ID registers, checks what the server needs, turns the SMMU
    /// off if something left it on, makes it abort traffic while off, sets
    /// table/queue attributes and brings the command queue up. The stream
    /// table is installed later by [`Smmu::enable`].
    ///
    /// The event queue has `2^evtq_log2` records, capped by IDR1.
    pub fn probe(regs: DeviceRegion, mut pool: Pool, evtq_log2: u8) -> Result<Self, BringUpError> {
        let read = |r: Reg<u32>| regs.read(r).expect("register inside the SMMU frame");
        let idr = regs::IDRS.map(read);
        let features = Features::decode(idr, read(regs::AIDR)).map_err(BringUpError::Idr)?;
        if !features.stage1 {
            return Err(BringUpError::Missing("stage 1 translation"));
        }
        if !features.ttf_aarch64 {
            return Err(BringUpError::Missing("AArch64 translation tables"));
        }
        if !features.gran4k {
            return Err(BringUpError::Missing("the 4 KiB granule"));
        }
        if !features.coherent {
            // Table and queue writes would need cache maintenance by VA
            // (DC CVAC), which EL0 may not do here.
            return Err(BringUpError::Missing("coherent table walks (IDR0.COHACC)"));
        }
        if features.tables_preset || features.queues_preset {
            return Err(BringUpError::Missing(
                "software-placed tables and queues (IDR1 presets)",
            ));
        }
        let cmdq_log2 = CMDQ_LOG2.min(features.cmdqs);
        let evtq_log2 = evtq_log2.min(features.eventqs);
        let mut queue = |kind: QueueKind, log2: u8| -> Result<Queue, BringUpError> {
            let entry_bytes = kind.entry_bytes();
            let pages = ((entry_bytes << log2).div_ceil(abi::PAGE_SIZE)) as usize;
            let base = pool.alloc(pages).ok_or(BringUpError::NoMemory)?;
            let ring = Ring::new(log2).map_err(BringUpError::Encode)?;
            Ok(Queue {
                base,
                ring,
                pos: ring.pos(0),
                seen: ring.pos(0),
                entry_bytes,
            })
        };
        let cmdq = queue(QueueKind::Command, cmdq_log2)?;
        let evtq = queue(QueueKind::Event, evtq_log2)?;
        let clock = Counter::from_kernel();
        let mut s = Self {
            regs,
            features,
            pool,
            cmdq,
            evtq,
            clock,
            owner: None,
            counters: HwCounters::default(),
            found: Found::default(),
            last_sid: None,
        };

        // What an earlier instance (or the kernel's stop after its death)
        // left behind, for the log.
        s.found = Found {
            cr0: Cr0::from_bits(s.r32(regs::CR0ACK)),
            gbpa_abort: regs::gbpa_aborts(s.r32(regs::GBPA)),
            gerror: GError::empty(),
        };
        // Off, and aborting (not bypassing) while off.
        s.write_cr0(Cr0::empty()).map_err(BringUpError::Hw)?;
        // Global errors an earlier instance left unacknowledged would look
        // like new ones (a command error would stop the fresh queue's
        // first sync): acknowledge them now.
        s.found.gerror = s.take_global_errors();
        let gbpa = s.r32(regs::GBPA);
        s.w32(regs::GBPA, regs::gbpa_request(gbpa, true));
        s.poll(ACK_TIMEOUT_US, "GBPA.Update", |s| {
            Ok(!regs::gbpa_update_pending(s.r32(regs::GBPA)))
        })
        .map_err(BringUpError::Hw)?;
        s.w32(regs::IRQ_CTRL, 0);
        s.poll(ACK_TIMEOUT_US, "IRQ_CTRLACK", |s| {
            Ok(s.r32(regs::IRQ_CTRLACK) == 0)
        })
        .map_err(BringUpError::Hw)?;

        s.w32(regs::CR1, Cr1::for_coherency(features.coherent).encode());
        // Private TLB maintenance (this SMMU is not a DVM participant for
        // us), invalid StreamIDs recorded.
        s.w32(regs::CR2, (Cr2::PTM | Cr2::RECINVSID).bits());

        let base = |q: &Queue| QueueBase {
            addr: q.base,
            log2size: q.ring.log2size(),
            alloc_hint: true,
        };
        let cmdq_base = base(&s.cmdq)
            .encode(QueueKind::Command)
            .map_err(BringUpError::Encode)?;
        let evtq_base = base(&s.evtq)
            .encode(QueueKind::Event)
            .map_err(BringUpError::Encode)?;
        s.w64(regs::CMDQ_BASE, cmdq_base);
        s.w32(regs::CMDQ_PROD, 0);
        s.w32(regs::CMDQ_CONS, 0);
        s.w64(regs::EVENTQ_BASE, evtq_base);
        s.w32(regs::EVENTQ_PROD, 0);
        s.w32(regs::EVENTQ_CONS, 0);
        s.write_cr0(Cr0::CMDQEN).map_err(BringUpError::Hw)?;
        Ok(s)
    }

    /// Installs the stream table (`base`, STRTAB_BASE_CFG value `cfg`),
    /// invalidates every cached configuration and translation, turns on
    /// the event queue and its interrupts, then translation (SMMUEN).
    pub fn enable(&mut self, base: u64, cfg: u32) -> Result<(), HwError> {
        self.w64(regs::STRTAB_BASE, base);
        self.w32(regs::STRTAB_BASE_CFG, cfg);
        self.submit(&[Command::CfgiAll.encode(), Command::TlbiNsnhAll.encode()])?;
        self.sync()?;
        self.write_cr0(Cr0::CMDQEN | Cr0::EVENTQEN)?;
        let irqs = IrqCtrl::EVENTQ_IRQEN | IrqCtrl::GERROR_IRQEN;
        self.w32(regs::IRQ_CTRL, irqs.bits());
        self.poll(ACK_TIMEOUT_US, "IRQ_CTRLACK", |s| {
            Ok(s.r32(regs::IRQ_CTRLACK) == irqs.bits())
        })?;
        self.write_cr0(Cr0::CMDQEN | Cr0::EVENTQEN | Cr0::SMMUEN)
    }

    /// The decoded ID registers.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// The DMA pool (for usage figures).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// StreamID of the last event record read, if any.
    pub fn last_event_sid(&self) -> Option<StreamId> {
        self.last_sid
    }

    /// Records the event queue holds.
    pub fn event_queue_entries(&self) -> u32 {
        1 << self.evtq.ring.log2size()
    }

    /// Whether a new event record may wait, from memory alone: the first
    /// word of the record at our CONS. The SMMU makes a record visible
    /// before it moves PROD past it [SMMUv3 3.5.3], no record's first word
    /// is zero (its low byte is the event type, and type 0 is reserved),
    /// and [`Smmu::drain_events`] clears that word of every record it
    /// consumes: zero there means PROD has not moved past CONS, so the two
    /// register reads of a drain can be skipped. An overflow needs a full
    /// queue, whose record at CONS is unread, so it is never hidden. A
    /// cheap hint for the per-request check only: the event interrupt and
    /// global errors drain by the registers.
    pub fn event_may_wait(&self) -> bool {
        self.pool.read_u64(self.event_slot(self.evtq.pos)) != 0
    }

    /// Where the event queue's record at `pos` lies.
    fn event_slot(&self, pos: Pos) -> PhysAddr {
        PhysAddr::new(
            self.evtq.base.get() + u64::from(self.evtq.ring.slot(pos)) * self.evtq.entry_bytes,
        )
    }

    /// Reads at most `max` new event records, oldest first, into `sink`;
    /// returns how many (`max` means more may wait). Clears the first word
    /// of each record read (see [`Smmu::event_may_wait`]). Acknowledges an
    /// EVENTQ_PROD.OVFLG overflow if one happened (`counters`).
    pub fn drain_events(&mut self, max: usize, mut sink: impl FnMut([u64; 4])) -> usize {
        let ring = self.evtq.ring;
        let mut n = 0;
        while n < max {
            let prod_raw = self.r32(regs::EVENTQ_PROD);
            let prod = ring.pos(prod_raw);
            if ring.is_empty(prod, self.evtq.pos) {
                if smmuv3::queue::overflow_pending(prod_raw, self.r32(regs::EVENTQ_CONS)) {
                    self.counters.event_overflows += 1;
                    self.w32(
                        regs::EVENTQ_CONS,
                        smmuv3::queue::cons_with_ack(self.evtq.pos, prod_raw),
                    );
                }
                break;
            }
            while n < max && !ring.is_empty(prod, self.evtq.pos) {
                let at = self.event_slot(self.evtq.pos);
                let rec = [0, 1, 2, 3].map(|i| self.pool.read_u64(PhysAddr::new(at.get() + 8 * i)));
                // Read: the SMMU owns the slot again once CONS moves on,
                // and writes a whole record before PROD passes it.
                self.pool.write_u64(at, 0);
                self.last_sid = Some(smmuv3::evt::Event::decode(&rec).sid);
                sink(rec);
                n += 1;
                self.evtq.pos = ring.advance(self.evtq.pos, 1);
            }
            self.w32(
                regs::EVENTQ_CONS,
                smmuv3::queue::cons_with_ack(self.evtq.pos, prod_raw),
            );
        }
        self.counters.events += n as u64;
        n
    }

    /// Recovers the event queue after GERROR.EVENTQ_ABT_ERR (QEMU raises it
    /// when the queue is full, instead of EVENTQ_PROD.OVFLG): the caller
    /// has drained what it holds and acknowledged the error; the queue is
    /// disabled (CR0.EVENTQEN = 0, CR0ACK) and enabled again, as the
    /// architecture asks before software relies on a queue that reported
    /// an abort. CMDQEN and SMMUEN are left as they are.
    pub fn recover_event_queue(&mut self) -> Result<(), HwError> {
        let cr0 = Cr0::from_bits(self.r32(regs::CR0ACK));
        self.write_cr0(cr0.without(Cr0::EVENTQEN))?;
        self.write_cr0(cr0.with(Cr0::EVENTQEN))
    }

    /// Global errors not yet acknowledged; acknowledges them. A command
    /// error is handled where it happens (in `sync`); this reports the rest
    /// (event-queue abort when the queue overflowed, MSI aborts).
    pub fn take_global_errors(&mut self) -> GError {
        let active = GError::active(self.r32(regs::GERROR), self.r32(regs::GERRORN));
        if !active.is_empty() {
            let gerrorn = self.r32(regs::GERRORN);
            self.w32(regs::GERRORN, GError::acknowledge(gerrorn, active));
        }
        active
    }

    /// Writes `cmds` into the command queue behind PROD. When the queue is
    /// full it rings for what it wrote and waits (bounded) for room; the
    /// last entries wait for [`Smmu::ring_doorbell`].
    fn enqueue(&mut self, cmds: &[[u64; 2]]) -> Result<(), HwError> {
        let ring = self.cmdq.ring;
        let mut done = 0;
        while done < cmds.len() {
            // Room by the CONS last read; read CONS (wrap bit included)
            // only if that is not enough, and wait for room if none.
            let mut free = ring.free(self.cmdq.pos, self.cmdq.seen);
            if (free as usize) < cmds.len() - done {
                free = ring.free(self.cmdq.pos, self.cmdq_cons().0);
            }
            if free == 0 {
                self.ring_doorbell();
                self.poll(CMDQ_TIMEOUT_US, "command queue space", |s| {
                    if s.command_error_pending() {
                        s.recover_command_error();
                    }
                    Ok(ring.free(s.cmdq.pos, s.cmdq_cons().0) > 0)
                })?;
                free = ring.free(self.cmdq.pos, self.cmdq_cons().0);
            }
            let n = (free as usize).min(cmds.len() - done);
            for cmd in &cmds[done..done + n] {
                let at = self.cmdq.base.get()
                    + u64::from(ring.slot(self.cmdq.pos)) * self.cmdq.entry_bytes;
                self.pool.write_u64(PhysAddr::new(at), cmd[0]);
                self.pool.write_u64(PhysAddr::new(at + 8), cmd[1]);
                self.cmdq.pos = ring.advance(self.cmdq.pos, 1);
            }
            done += n;
            self.counters.commands += n as u64;
        }
        Ok(())
    }

    /// Publishes the queued entries and writes PROD: one doorbell.
    fn ring_doorbell(&mut self) {
        userlib::publish_to_device();
        self.w32(regs::CMDQ_PROD, self.cmdq.pos.raw());
        self.counters.doorbells += 1;
    }

    /// Reads CONS (and remembers it for [`Smmu::enqueue`]).
    fn cmdq_cons(&mut self) -> (Pos, u32) {
        let raw = self.r32(regs::CMDQ_CONS);
        let cons = self.cmdq.ring.pos(raw);
        self.cmdq.seen = cons;
        (cons, raw)
    }

    /// A command error stopped the queue: report it, replace the offending
    /// command by a CMD_SYNC (so the queue can go on), acknowledge, and
    /// return the error code.
    fn recover_command_error(&mut self) -> u8 {
        let (cons, raw) = self.cmdq_cons();
        let err = smmuv3::queue::cons_error(raw);
        let at = PhysAddr::new(
            self.cmdq.base.get() + u64::from(self.cmdq.ring.slot(cons)) * self.cmdq.entry_bytes,
        );
        let bad = [
            self.pool.read_u64(at),
            self.pool.read_u64(PhysAddr::new(at.get() + 8)),
        ];
        log!(
            "iommu: SMMU refused command {:?} ({err:?}); skipping it",
            Command::decode(bad)
        );
        let sync = Command::Sync(CmdSync::polled()).encode();
        self.pool.write_u64(at, sync[0]);
        self.pool.write_u64(PhysAddr::new(at.get() + 8), sync[1]);
        userlib::publish_to_device();
        self.counters.command_errors += 1;
        let gerrorn = self.r32(regs::GERRORN);
        self.w32(
            regs::GERRORN,
            GError::acknowledge(gerrorn, GError::CMDQ_ERR),
        );
        err.code()
    }

    fn command_error_pending(&self) -> bool {
        GError::active(self.r32(regs::GERROR), self.r32(regs::GERRORN)).contains(GError::CMDQ_ERR)
    }
}

impl SmmuHw for Smmu {
    fn features(&self) -> &Features {
        &self.features
    }

    fn alloc_pages(&mut self, count: usize) -> Option<PhysAddr> {
        self.pool.alloc(count)
    }

    fn free_pages(&mut self, pa: PhysAddr, count: usize) {
        self.pool.free(pa, count);
    }

    fn read_u64(&self, pa: PhysAddr) -> u64 {
        self.pool.read_u64(pa)
    }

    fn write_u64(&mut self, pa: PhysAddr, value: u64) {
        self.pool.write_u64(pa, value);
    }

    fn publish(&mut self) {
        // The SMMU is coherent (checked at probe): ordering is enough.
        userlib::publish_to_device();
    }

    fn submit(&mut self, cmds: &[[u64; 2]]) -> Result<(), HwError> {
        self.enqueue(cmds)?;
        self.ring_doorbell();
        Ok(())
    }

    fn pin(&mut self, frames: &[PhysAddr]) -> Result<(), HwError> {
        let owner = self.owner.ok_or(HwError::PinRefused)?;
        if frames.is_empty() {
            return Ok(());
        }
        if frames.len() > userlib::PIN_BATCH_MAX {
            return Err(HwError::PinRefused);
        }
        let t0 = userlib::counter();
        let r = userlib::frame_pins(owner, userlib::PinOp::Pin, frames);
        self.counters.pin_ticks += userlib::counter().wrapping_sub(t0);
        r.map(|_| ()).map_err(|_| HwError::PinRefused)
    }

    fn unpin(&mut self, frames: &[PhysAddr]) {
        let Some(owner) = self.owner else {
            return;
        };
        for chunk in frames.chunks(userlib::PIN_BATCH_MAX) {
            let t0 = userlib::counter();
            let r = userlib::frame_pins(owner, userlib::PinOp::Unpin, chunk);
            self.counters.pin_ticks += userlib::counter().wrapping_sub(t0);
            if let Err(e) = r {
                // A server bug (it unpins only what it pinned): the frames
                // stay pinned, never freed early.
                userlib::log!("iommu: unpin of {} frames refused: {e}", chunk.len());
            }
        }
    }

    fn sync(&mut self) -> Result<(), HwError> {
        self.submit_and_sync(&[]).map(|_| ())
    }

    /// The commands and the CMD_SYNC behind one doorbell (more only if the
    /// queue fills up on the way), then the bounded wait for the sync.
    fn submit_and_sync(&mut self, cmds: &[[u64; 2]]) -> Result<u64, HwError> {
        let ring = self.cmdq.ring;
        let doorbells = self.counters.doorbells;
        self.enqueue(cmds)?;
        let at = self.cmdq.pos;
        self.enqueue(&[Command::Sync(CmdSync::polled()).encode()])?;
        self.ring_doorbell();
        self.counters.syncs += 1;
        let mut error = None;
        self.poll(CMDQ_TIMEOUT_US, "CMD_SYNC", |s| {
            // CONS past the sync: every command before it completed
            // without error (an error stops the queue at its command). One
            // register read in the usual case; GERROR only while waiting.
            let (cons, _) = s.cmdq_cons();
            if ring.consumed(at, cons, s.cmdq.pos) {
                return Ok(true);
            }
            if s.command_error_pending() {
                error = Some(s.recover_command_error());
            }
            Ok(false)
        })?;
        match error {
            Some(code) => Err(HwError::CommandError(code)),
            None => Ok(self.counters.doorbells - doorbells),
        }
    }
}
