//! The virtio-net device [VIRTIO-1.2 §5.1] as this task drives it: a
//! modern PCI function (1af4:1041) whose DMA goes through the SMMU because
//! the driver insists on `VIRTIO_F_ACCESS_PLATFORM`; one receive queue and
//! one transmit queue, completions by INTx (ISR status).
//!
//! It owns the device's registers (the shared `virtio` crate's
//! `Transport`), its one DMA region and what lives there: both virtqueues
//! (mapped once), the receive slots (mapped once, as one run, posted as
//! device-writable buffers) and the transmit slots (each batch mapped
//! before it is posted and unmapped, strictly, after the device returned
//! it and before the slot is used again). Slot bookkeeping and every check
//! of what the device wrote are `virtio-net-core`'s.
//!
//! It never hands the device a physical address (every address is an IOVA
//! the IOMMU server returned), never enables bus mastering before its
//! stream is attached, never waits on the device without a deadline, and
//! never panics on anything the device writes: a broken device is marked
//! broken and refuses further work.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

use abi::{Iova, PAGE_SIZE, StreamId};
use iommu_api::{Dir, Extent, MAX_MAP_ENTRIES, MAX_UNMAP_ENTRIES};
use iommu_client::{ClientError, Iommu};
use userlib::{Counter, DmaBuffer, log};
use virtio::dma::DmaMem;
use virtio::open::{Attached, OpenError, attach, read_stable, reset, route_intx};
use virtio::transport::Transport;
use virtio_core::pci::{self, Status, common};
use virtio_core::virtqueue::{self, Layout, QueueMemory, Virtqueue};
use virtio_net_core::net::{HDR_BYTES, NetConfig, WANTED_FEATURES, config};
use virtio_net_core::rings::{RxDrop, RxEvent, RxFrame, RxRing, SLOT_BYTES, TxError, TxRing};

/// The receive queue's index [VIRTIO-1.2 §5.1.2].
const RX_QUEUE: u16 = 0;
/// The transmit queue's index.
const TX_QUEUE: u16 = 1;
/// Receive slots kept posted (a power of two: the queue's size).
pub const RX_SLOTS: u16 = 64;
/// Transmit slots (a power of two: the queue's size).
pub const TX_SLOTS: u16 = 32;
/// Dropped frames logged one by one; later ones are only counted.
const DROPS_LOGGED: u64 = 8;

/// Test only: where the rogue build posts its receive buffers, this far
/// below the run it had mapped (never mapped in its domain, and inside
/// its 48-bit input range, so the SMMU walks and faults).
#[cfg(feature = "test-rogue-rx")]
const ROGUE_RX_SHIFT: u64 = 0x4000_0000;

/// Where everything lives in the driver's DMA region: both queues (one
/// mapping), the receive slots (one mapping), the transmit slots (mapped
/// per batch).
#[derive(Clone, Copy, Debug)]
struct MemLayout {
    rxq: Layout,
    txq: Layout,
    /// Bytes of the queues, a whole number of pages.
    rings: u64,
    /// Offset of the receive slots.
    rx: u64,
    /// Offset of the transmit slots.
    tx: u64,
    /// Bytes of the whole region.
    len: u64,
}

impl MemLayout {
    fn new(rx_size: u16, tx_size: u16) -> Option<MemLayout> {
        let rxq = Layout::new(0, rx_size)?;
        let txq = Layout::new(rxq.end, tx_size)?;
        let rings = txq.end.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let rx = rings;
        let tx = rx + RxRing::bytes(RX_SLOTS);
        let len = tx + u64::from(TX_SLOTS) * SLOT_BYTES;
        Some(MemLayout {
            rxq,
            txq,
            rings,
            rx,
            tx,
            len,
        })
    }
}

/// What the driver counted (its part of `net_api::NetStats`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    /// Frames handed to the client, and their bytes.
    pub rx_frames: u64,
    /// Bytes of those.
    pub rx_bytes: u64,
    /// Frames the device returned that failed the checks.
    pub rx_dropped: u64,
    /// Frames the device sent back (transmitted), and their bytes.
    pub tx_frames: u64,
    /// Bytes of those.
    pub tx_bytes: u64,
    /// Device interrupts handled.
    pub irqs: u64,
    /// Map calls to the IOMMU server.
    pub iommu_maps: u64,
    /// Unmap calls to the IOMMU server.
    pub iommu_unmaps: u64,
}

/// A virtio-net device ready for frames.
pub struct Nic {
    pci_cap: u32,
    regs: Transport,
    mem: DmaMem,
    layout: MemLayout,
    /// Device address of the queues (offset 0 of the region).
    ring_iova: Iova,
    /// Device address of the receive run.
    rx_iova: Iova,
    rxq: Virtqueue,
    txq: Virtqueue,
    rx_notify_off: u16,
    tx_notify_off: u16,
    rx: RxRing,
    tx: TxRing,
    /// Each transmit slot's IOVA while it is mapped.
    tx_iova: Vec<Option<Iova>>,
    /// Frames received and checked, their slots held, oldest first.
    ready: VecDeque<RxFrame>,
    config: NetConfig,
    features: u64,
    irq: Option<(u32, u64)>,
    sid: StreamId,
    clock: Counter,
    /// The device failed: nothing more is posted.
    broken: bool,
    /// What the driver counted.
    pub counters: Counters,
}

impl fmt::Debug for Nic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nic")
            .field("sid", &self.sid)
            .field("config", &self.config)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

/// What `init` built.
struct Ready {
    mem: DmaMem,
    layout: MemLayout,
    ring_iova: Iova,
    rx_iova: Iova,
    rxq: Virtqueue,
    txq: Virtqueue,
    rx_notify_off: u16,
    tx_notify_off: u16,
    config: NetConfig,
    features: u64,
}

/// Mappings `init` made so far, to undo on failure.
#[derive(Default)]
struct Mapped(Vec<Extent>);

impl Nic {
    /// Opens the virtio-net function the PCI capability `pci_cap` names:
    /// attaches it to this task's IOMMU domain, initialises it
    /// [VIRTIO-1.2 §3.1.1] with its two queues and its receive slots in
    /// IOMMU-mapped memory, posts every receive slot, and takes completions
    /// through `irq` (capability, notification bit). On failure the device
    /// is reset and marked FAILED, and what was mapped unmapped.
    pub fn open(iommu: &Iommu, pci_cap: u32, irq: Option<(u32, u64)>) -> Result<Nic, OpenError> {
        let Attached {
            sid,
            mut regs,
            clock,
        } = attach(iommu, pci_cap, pci::DEVICE_ID_NET, "virtio-net")?;
        let mut mapped = Mapped::default();
        match Self::init(
            &mut regs,
            clock,
            iommu,
            pci_cap,
            irq.is_some(),
            None,
            &mut mapped,
        ) {
            Ok(r) => Ok(Self::assemble(pci_cap, regs, r, irq, sid, clock)),
            Err(e) => {
                Self::give_up(&mut regs, clock, iommu, &mapped);
                Err(e)
            }
        }
    }

    /// Quiesces a device whose initialisation failed before its memory's
    /// mappings go.
    fn give_up(regs: &mut Transport, clock: Counter, iommu: &Iommu, mapped: &Mapped) {
        let _ = reset(regs, clock);
        let _ = regs.set_common(common::DEVICE_STATUS, Status::FAILED);
        if !mapped.0.is_empty() {
            let _ = iommu.unmap(&mapped.0);
        }
    }

    fn assemble(
        pci_cap: u32,
        regs: Transport,
        r: Ready,
        irq: Option<(u32, u64)>,
        sid: StreamId,
        clock: Counter,
    ) -> Nic {
        let max_frame = r.config.max_frame();
        let posted_iova = Self::rx_posted_iova(r.rx_iova);
        let mut nic = Nic {
            pci_cap,
            regs,
            layout: r.layout,
            ring_iova: r.ring_iova,
            rx_iova: r.rx_iova,
            rx: RxRing::new(
                r.layout.rx,
                posted_iova,
                RX_SLOTS,
                r.rxq.layout().size,
                max_frame,
            ),
            tx: TxRing::new(r.layout.tx, TX_SLOTS, r.txq.layout().size, max_frame),
            mem: r.mem,
            rxq: r.rxq,
            txq: r.txq,
            rx_notify_off: r.rx_notify_off,
            tx_notify_off: r.tx_notify_off,
            tx_iova: alloc::vec![None; usize::from(TX_SLOTS)],
            ready: VecDeque::with_capacity(usize::from(RX_SLOTS)),
            config: r.config,
            features: r.features,
            irq,
            sid,
            clock,
            broken: false,
            counters: Counters::default(),
        };
        nic.rx_refill();
        nic
    }

    /// The IOVA the receive slots are posted at: the run mapped for them.
    #[cfg(not(feature = "test-rogue-rx"))]
    fn rx_posted_iova(mapped: Iova) -> Iova {
        mapped
    }

    /// Test only (`test-rogue-rx`): an IOVA this driver never mapped, so
    /// the device's receive DMA must fault and be attributed to it.
    #[cfg(feature = "test-rogue-rx")]
    fn rx_posted_iova(mapped: Iova) -> Iova {
        let rogue = Iova::new(
            mapped
                .get()
                .checked_sub(ROGUE_RX_SHIFT)
                .unwrap_or(mapped.get() + ROGUE_RX_SHIFT),
        );
        log!(
            "virtio-net: ROGUE (test-rogue-rx): receive buffers posted at IOVA {:#x}, never mapped (the run mapped for them is at {:#x})",
            rogue.get(),
            mapped.get()
        );
        rogue
    }

    /// The initialisation sequence [VIRTIO-1.2 §3.1.1, §4.1.5.1.3, §5.1.5].
    fn init(
        regs: &mut Transport,
        clock: Counter,
        iommu: &Iommu,
        pci_cap: u32,
        interrupts: bool,
        reuse: Option<DmaBuffer>,
        mapped: &mut Mapped,
    ) -> Result<Ready, OpenError> {
        // 1-3: reset, ACKNOWLEDGE, DRIVER.
        reset(regs, clock)?;
        let mut status = Status::ACKNOWLEDGE;
        regs.set_common(common::DEVICE_STATUS, status)?;
        status |= Status::DRIVER;
        regs.set_common(common::DEVICE_STATUS, status)?;
        // 4-6: features; FEATURES_OK must stick.
        let features = pci::negotiate(regs.device_features()?, WANTED_FEATURES)
            .map_err(|m| OpenError::MissingFeatures(m.0))?;
        regs.set_driver_features(features)?;
        status |= Status::FEATURES_OK;
        regs.set_common(common::DEVICE_STATUS, status)?;
        if !Status(regs.common(common::DEVICE_STATUS)?).has(Status::FEATURES_OK) {
            return Err(OpenError::FeaturesRejected);
        }
        // 7: the queues, in memory mapped through the IOMMU.
        let mut sizes = [0u16; 2];
        for (q, want) in [(RX_QUEUE, RX_SLOTS), (TX_QUEUE, TX_SLOTS)] {
            regs.set_common(common::QUEUE_SELECT, q)?;
            if regs.common(common::QUEUE_ENABLE)? != 0 {
                return Err(OpenError::NoQueue);
            }
            let size = virtqueue::fit_size(regs.common(common::QUEUE_SIZE)?, want)
                .filter(|&s| s == want)
                .ok_or(OpenError::NoQueue)?;
            sizes[usize::from(q)] = size;
        }
        let layout = MemLayout::new(sizes[0], sizes[1]).ok_or(OpenError::Layout)?;
        // A mode switch reuses the memory (tasks cannot free DMA memory),
        // zeroed so that the rings start empty.
        let buf = match reuse {
            Some(mut b) if b.len() >= layout.len => {
                for word in 0..b.len() / 8 {
                    b.write::<u64>(word * 8, 0).ok_or(OpenError::Layout)?;
                }
                b
            }
            _ => DmaBuffer::alloc(layout.len.div_ceil(PAGE_SIZE))?,
        };
        let ring_iova = iommu.map_one(buf.grant(), Dir::Bidirectional, 0, layout.rings)?;
        mapped.0.push(Extent::new(ring_iova.get(), layout.rings));
        let rx_len = RxRing::bytes(RX_SLOTS);
        let rx_iova = iommu.map_one(buf.grant(), Dir::FromDevice, layout.rx, rx_len)?;
        mapped.0.push(Extent::new(rx_iova.get(), rx_len));
        let mut mem = DmaMem(buf);
        let rxq = Virtqueue::new(layout.rxq, &mut mem).map_err(|_| OpenError::Layout)?;
        let txq = Virtqueue::new(layout.txq, &mut mem).map_err(|_| OpenError::Layout)?;
        // The stream is attached: the device may master, through the SMMU.
        userlib::pci_enable_bus_master(pci_cap)?;
        route_intx(pci_cap, interrupts)?;
        let mut notify_offs = [0u16; 2];
        for (q, ql) in [(RX_QUEUE, layout.rxq), (TX_QUEUE, layout.txq)] {
            let at = |off: u64| ring_iova.checked_add(off).ok_or(OpenError::Layout);
            regs.set_common(common::QUEUE_SELECT, q)?;
            regs.set_common(common::QUEUE_SIZE, ql.size)?;
            regs.set_common64(common::QUEUE_DESC, at(ql.desc)?.get())?;
            regs.set_common64(common::QUEUE_DRIVER, at(ql.avail)?.get())?;
            regs.set_common64(common::QUEUE_DEVICE, at(ql.used)?.get())?;
            regs.set_common(common::QUEUE_MSIX_VECTOR, common::NO_VECTOR)?;
            notify_offs[usize::from(q)] = regs.common(common::QUEUE_NOTIFY_OFF)?;
            regs.set_common(common::QUEUE_ENABLE, 1)?;
        }
        regs.set_common(common::MSIX_CONFIG, common::NO_VECTOR)?;
        let config = Self::read_config(regs, features)?;
        // 8: DRIVER_OK.
        status |= Status::DRIVER_OK;
        regs.set_common(common::DEVICE_STATUS, status)?;
        if Status(regs.common(common::DEVICE_STATUS)?).needs_reset() {
            return Err(OpenError::NeedsReset);
        }
        Ok(Ready {
            mem,
            layout,
            ring_iova,
            rx_iova,
            rxq,
            txq,
            rx_notify_off: notify_offs[0],
            tx_notify_off: notify_offs[1],
            config,
            features,
        })
    }

    /// The device configuration, read until it held still.
    fn read_config(regs: &Transport, features: u64) -> Result<NetConfig, OpenError> {
        read_stable(regs, |r| {
            NetConfig::read(
                features,
                |off| r.device_config8(off),
                |off| r.device_config16(off),
            )
        })
    }

    /// The StreamID the IOMMU server attached.
    pub fn stream_id(&self) -> StreamId {
        self.sid
    }

    /// The MAC address (zeros if the device has none to say).
    pub fn mac(&self) -> [u8; 6] {
        self.config.mac.unwrap_or([0; 6])
    }

    /// The MTU the driver offers: the device's if it is below Ethernet's.
    pub fn mtu(&self) -> u16 {
        self.config
            .mtu
            .map_or(net_api::MTU, |m| m.min(net_api::MTU))
    }

    /// Whether the link is up now (read again from the device).
    pub fn link_up(&self) -> bool {
        if self.broken {
            return false;
        }
        if self.features & virtio_net_core::net::feature::STATUS == 0 {
            return true;
        }
        self.regs
            .device_config16(config::STATUS.offset() as u64)
            .is_some_and(|s| s & config::STATUS_LINK_UP != 0)
    }

    /// Whether the device failed.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// The device's interrupt (capability, notification bit), if any.
    pub fn irq(&self) -> Option<(u32, u64)> {
        self.irq
    }

    /// Transmit slots not free (staged, posted, or sent and not yet
    /// unmapped).
    pub fn tx_busy(&self) -> usize {
        self.tx.busy()
    }

    /// Frames received and not yet taken.
    pub fn rx_ready(&self) -> usize {
        self.ready.len()
    }

    /// Marks the device broken (it reported an error or broke the ring
    /// protocol) and resets it, bounded, so that it stops its DMA.
    fn fail(&mut self, why: &str) {
        if self.broken {
            return;
        }
        self.broken = true;
        log!("virtio-net: device failed ({why}): resetting it; no more frames");
        if let Err(e) = reset(&mut self.regs, self.clock) {
            log!("virtio-net: the failed device did not reset: {e}");
        }
    }

    /// The device interrupted: reads (clears) the ISR status.
    pub fn on_interrupt(&mut self) {
        self.counters.irqs += 1;
        let _ = self.regs.read_isr();
    }

    /// Checks the device status; a device that asks for a reset is failed.
    fn check_status(&mut self) {
        match self.regs.common(common::DEVICE_STATUS) {
            Ok(s) if !Status(s).needs_reset() => {}
            _ => self.fail("it set DEVICE_NEEDS_RESET"),
        }
    }

    /// Collects the frames the device returned: checked ones are queued
    /// for the client (their slots held), bad ones dropped and counted
    /// (their slots posted again). Returns how many were queued.
    pub fn rx_poll(&mut self) -> usize {
        if self.broken {
            return 0;
        }
        self.check_status();
        let mut queued = 0;
        while !self.broken {
            match self.rx.next(&mut self.rxq, &mut self.mem) {
                Ok(None) => break,
                Ok(Some(RxEvent::Frame(f))) => {
                    self.ready.push_back(f);
                    queued += 1;
                }
                Ok(Some(RxEvent::Dropped(why))) => {
                    self.counters.rx_dropped += 1;
                    if self.counters.rx_dropped <= DROPS_LOGGED {
                        log!("virtio-net: received frame dropped: {}", describe(why));
                    }
                }
                Err(e) => self.fail(&alloc::format!("receive queue: {e:?}")),
            }
        }
        self.rx_refill();
        queued
    }

    /// Posts every idle receive slot and tells the device.
    fn rx_refill(&mut self) {
        if self.broken {
            return;
        }
        match self.rx.refill(&mut self.rxq, &mut self.mem) {
            Ok(0) => {}
            Ok(_) => {
                self.rxq.publish(&mut self.mem);
                if self
                    .regs
                    .notify_queue(RX_QUEUE, self.rx_notify_off)
                    .is_err()
                {
                    self.fail("receive notify register");
                }
            }
            Err(e) => self.fail(&alloc::format!("receive refill: {e:?}")),
        }
    }

    /// The oldest received frame: its length, and its bytes copied into
    /// `out` (at least `SLOT_BYTES` long). It stays queued until
    /// [`Nic::rx_done`].
    pub fn rx_peek(&self, out: &mut [u8]) -> Option<usize> {
        let f = self.ready.front()?;
        let len = usize::try_from(f.len).ok()?;
        let dst = out.get_mut(..len)?;
        for (i, b) in dst.iter_mut().enumerate() {
            *b = self.mem.read_u8(f.offset + i as u64);
        }
        Some(len)
    }

    /// The oldest received frame was delivered: its slot goes back to the
    /// device.
    pub fn rx_done(&mut self) {
        if let Some(f) = self.ready.pop_front() {
            self.counters.rx_frames += 1;
            self.counters.rx_bytes += f.len;
            self.rx.release(f.slot);
        }
    }

    /// After a batch of [`Nic::rx_done`]: post the freed slots.
    pub fn rx_repost(&mut self) {
        self.rx_refill();
    }

    /// Copies `frame` into a free transmit slot; `Full` when none is free.
    pub fn tx_stage(&mut self, frame: &[u8]) -> Result<u16, TxError> {
        self.tx.stage(&mut self.mem, frame)
    }

    /// Drops staged slots (their batch was refused).
    pub fn tx_unstage(&mut self, slots: &[u16]) {
        for &s in slots {
            self.tx.unstage(s);
        }
    }

    /// Maps the staged `slots` for the device (read-only for it), posts
    /// them and rings the doorbell. All or nothing: on refusal every slot
    /// is unstaged and nothing stays mapped.
    pub fn tx_post(&mut self, iommu: &Iommu, slots: &[u16]) -> Result<(), ClientError> {
        let mut ranges: Vec<Extent> = Vec::with_capacity(slots.len());
        for &s in slots {
            // Staged slots always have a range; a missing one is skipped.
            if let Some((at, len)) = self.tx.range(s) {
                ranges.push(Extent::new(at, len));
            }
        }
        let mut iovas: Vec<Iova> = Vec::with_capacity(ranges.len());
        for chunk in ranges.chunks(MAX_MAP_ENTRIES) {
            let mut out = [Iova::new(0); MAX_MAP_ENTRIES];
            self.counters.iommu_maps += 1;
            match iommu.map(
                self.mem.0.grant(),
                Dir::ToDevice,
                chunk,
                &mut out[..chunk.len()],
            ) {
                Ok(_) => iovas.extend_from_slice(&out[..chunk.len()]),
                Err(e) => {
                    self.unmap_iovas(iommu, &ranges, &iovas);
                    self.tx_unstage(slots);
                    return Err(e);
                }
            }
        }
        for (i, &s) in slots.iter().enumerate() {
            let Some(&iova) = iovas.get(i) else { break };
            match self.tx.post(&mut self.txq, &mut self.mem, s, iova) {
                Ok(()) => self.tx_iova[usize::from(s)] = Some(iova),
                Err(e) => {
                    // Cannot happen (a slot per descriptor); the rest of
                    // the batch is unmapped and dropped, the device marked
                    // broken.
                    let rest: Vec<Iova> = iovas[i..].to_vec();
                    self.unmap_iovas(iommu, &ranges[i..], &rest);
                    self.tx_unstage(&slots[i..]);
                    self.fail(&alloc::format!("transmit post: {e:?}"));
                    break;
                }
            }
        }
        self.txq.publish(&mut self.mem);
        if self
            .regs
            .notify_queue(TX_QUEUE, self.tx_notify_off)
            .is_err()
        {
            self.fail("transmit notify register");
        }
        Ok(())
    }

    /// Unmaps `iovas` (each the IOVA of the range of `ranges` at the same
    /// index).
    fn unmap_iovas(&mut self, iommu: &Iommu, ranges: &[Extent], iovas: &[Iova]) {
        let exts: Vec<Extent> = iovas
            .iter()
            .zip(ranges)
            .map(|(v, r)| Extent::new(v.get(), r.len))
            .collect();
        for chunk in exts.chunks(MAX_UNMAP_ENTRIES) {
            self.counters.iommu_unmaps += 1;
            if let Err(e) = iommu.unmap(chunk) {
                log!("virtio-net: unmapping a refused batch failed: {e}");
            }
        }
    }

    /// Takes back what the device transmitted: unmaps those slots
    /// (strictly: the call returns once no IOTLB can hold them), then
    /// frees them for reuse. A slot whose unmap was refused stays sent,
    /// never reused. Returns the number of slots freed.
    pub fn tx_reclaim(&mut self, iommu: &Iommu) -> usize {
        let mut back: Vec<(u16, Extent)> = Vec::new();
        loop {
            match self.tx.reclaim(&mut self.txq, &mut self.mem) {
                Ok(None) => break,
                Ok(Some(slot)) => {
                    let iova = self.tx_iova.get(usize::from(slot)).copied().flatten();
                    if let (Some(iova), Some((_, len))) = (iova, self.tx.range(slot)) {
                        back.push((slot, Extent::new(iova.get(), len)));
                    }
                }
                Err(e) => {
                    self.fail(&alloc::format!("transmit queue: {e:?}"));
                    break;
                }
            }
        }
        let mut freed = 0;
        for chunk in back.chunks(MAX_UNMAP_ENTRIES) {
            let exts: Vec<Extent> = chunk.iter().map(|(_, e)| *e).collect();
            self.counters.iommu_unmaps += 1;
            match iommu.unmap(&exts) {
                Ok(_) => {
                    for (slot, e) in chunk {
                        self.tx_iova[usize::from(*slot)] = None;
                        if self.tx.free(*slot) {
                            freed += 1;
                            self.counters.tx_frames += 1;
                            self.counters.tx_bytes += e.len.saturating_sub(HDR_BYTES);
                        }
                    }
                }
                Err(e) => log!(
                    "virtio-net: unmapping {} sent slots failed ({e}): they stay reserved",
                    chunk.len()
                ),
            }
        }
        freed
    }

    /// Benchmark mode switch, first half: with nothing in transmission,
    /// reset the device (it stops its DMA) and unmap its queues and
    /// receive run, so the IOMMU server may change the policy.
    pub fn stop(&mut self, iommu: &Iommu) -> Result<(), ClientError> {
        if let Err(e) = reset(&mut self.regs, self.clock) {
            log!("virtio-net: reset before a mode switch failed: {e}");
            self.broken = true;
        }
        self.ready.clear();
        self.counters.iommu_unmaps += 1;
        iommu.unmap(&[
            Extent::new(self.ring_iova.get(), self.layout.rings),
            Extent::new(self.rx_iova.get(), RxRing::bytes(RX_SLOTS)),
        ])?;
        Ok(())
    }

    /// Benchmark mode switch, second half: the same device initialised
    /// again in the same memory (mapped afresh, under the new policy).
    pub fn restart(self, iommu: &Iommu) -> Result<Nic, OpenError> {
        let Nic {
            pci_cap,
            mut regs,
            mem,
            irq,
            sid,
            clock,
            counters,
            ..
        } = self;
        let mut mapped = Mapped::default();
        match Self::init(
            &mut regs,
            clock,
            iommu,
            pci_cap,
            irq.is_some(),
            Some(mem.0),
            &mut mapped,
        ) {
            Ok(r) => {
                let mut nic = Self::assemble(pci_cap, regs, r, irq, sid, clock);
                nic.counters = counters;
                Ok(nic)
            }
            Err(e) => {
                Self::give_up(&mut regs, clock, iommu, &mapped);
                Err(e)
            }
        }
    }
}

/// A drop reason for the log.
fn describe(why: RxDrop) -> alloc::string::String {
    match why {
        RxDrop::TooShort(n) => alloc::format!("device wrote {n} bytes, too short"),
        RxDrop::TooLong(n) => alloc::format!("device claims {n} bytes, too long"),
        RxDrop::Header(h) => alloc::format!("bad virtio-net header ({h:?})"),
    }
}
