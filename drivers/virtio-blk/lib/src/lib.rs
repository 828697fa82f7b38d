//! The virtio-blk device behind the block service [VIRTIO-1.2 §4.1, §5.2]:
//! a modern PCI function (1af4:1042) whose DMA goes through the SMMU
//! because the driver insists on `VIRTIO_F_ACCESS_PLATFORM`. One request
//! queue, one 3-descriptor chain per I/O, completions by INTx (ISR status)
//! or by polling.
//!
//! A request past its deadline is reported `Timeout` but fenced: its
//! chain (header, status byte) and its data buffer's mapping stay reserved
//! until its used-ring entry arrives or the device is reset (virtio has no
//! per-request abort); `released` then names its slot.
//!
//! It owns the device's registers (through the shared `virtio` crate's
//! `Transport`), its one DMA region (rings, request headers, status bytes:
//! `virtio::dma`) and the requests
//! in flight. It never hands the device a physical address (every address
//! is an IOVA the IOMMU server returned), never enables bus mastering
//! before its stream is attached, never blocks in `submit` or
//! `completions`, and never waits on the device without a deadline.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use core::fmt;

use abi::{Iova, PAGE_SIZE, StreamId};
use block_api::{BlockError, Info, IoKind};
use block_server::{BlockDevice, DeviceIo};
use iommu_api::{Dir, Extent};
use iommu_client::{DmaMapper, Iommu};
use userlib::{Counter, DmaBuffer, log};
use virtio_blk_core::blk::{
    self, BlkConfig, DmaLayout, Outcome, RequestHeader, RequestType, SECTOR_BYTES, feature,
};
use virtio_core::inflight::{InFlight, Returned};
use virtio_core::pci::{self, Status, common};
use virtio_core::virtqueue::{Buffer, QueueMemory, Virtqueue};

use virtio::dma::DmaMem;
use virtio::open::{Attached, OpenError, attach, read_stable, reset, route_intx};
use virtio::transport::Transport;

/// `Info::device_kind` of virtio-blk.
pub const DEVICE_KIND: u16 = 2;
/// The request queue's index [VIRTIO-1.2 §5.2.2].
const REQUEST_QUEUE: u16 = 0;
/// Largest transfer offered, before `size_max` limits it.
const MAX_TRANSFER_CAP: u32 = 128 * 1024;
/// A request outstanding this long is reported as timed out.
const IO_TIMEOUT_US: u64 = 5_000_000;

/// A virtio-blk device ready for I/O.
pub struct VirtioBlk {
    /// The PCI capability of the function.
    pci_cap: u32,
    /// Requests asked for at open (a restart asks for the same).
    requested_depth: u16,
    regs: Transport,
    mem: DmaMem,
    layout: DmaLayout,
    /// Device address of `mem`'s first byte.
    iova: Iova,
    vq: Virtqueue,
    inflight: InFlight,
    info: Info,
    irq: Option<(u32, u64)>,
    sid: StreamId,
    /// The counter's frequency, for deadlines.
    clock: Counter,
    read_only: bool,
    flush: bool,
    /// The device failed (needs reset, broke the ring protocol): every
    /// request in flight was reported and nothing more is accepted.
    broken: bool,
    /// Reports made outside `completions`, handed out by the next call.
    pending: Vec<(u16, Result<(), BlockError>)>,
    /// Fenced slots released since the block loop last asked.
    released: Vec<u16>,
    timeout_ticks: u64,
}

impl fmt::Debug for VirtioBlk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtioBlk")
            .field("sid", &self.sid)
            .field("info", &self.info)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

/// What the initialisation sequence built, besides the registers.
struct Ready {
    mem: DmaMem,
    layout: DmaLayout,
    iova: Iova,
    vq: Virtqueue,
    inflight: InFlight,
    info: Info,
    features: u64,
}

/// What `open` has set up so far, to undo on failure.
struct Partial {
    regs: Transport,
    clock: Counter,
    mapped: Option<(Iova, u64)>,
}

impl VirtioBlk {
    /// Opens the virtio-blk function the PCI capability `pci_cap` names:
    /// attaches it to this task's IOMMU domain, finds and maps its virtio
    /// structures, initialises it [VIRTIO-1.2 §3.1.1] with one request
    /// queue of up to `queue_depth` requests in IOMMU-mapped memory, and
    /// takes completions through `irq` (capability, notification bit) if
    /// given, by polling otherwise. On failure the device is reset and
    /// marked FAILED, and the ring memory unmapped.
    ///
    /// `iommu` is the IOMMU server ([`Iommu`]), or, in a task that is the
    /// SMMU owner itself, an in-process mapper.
    pub fn open(
        iommu: &impl DmaMapper,
        pci_cap: u32,
        irq: Option<(u32, u64)>,
        queue_depth: u16,
    ) -> Result<VirtioBlk, OpenError> {
        let Attached { sid, regs, clock } =
            attach(iommu, pci_cap, pci::DEVICE_ID_BLOCK, "virtio-blk")?;
        let mut p = Partial {
            regs,
            clock,
            mapped: None,
        };
        match Self::init(&mut p, iommu, pci_cap, irq.is_some(), queue_depth, None) {
            Ok(r) => Ok(Self::assemble(
                pci_cap,
                queue_depth,
                p.regs,
                r,
                irq,
                sid,
                clock,
            )),
            Err(e) => {
                // Quiesce the device before its ring memory goes away.
                let _ = reset(&mut p.regs, clock);
                let _ = p.regs.set_common(common::DEVICE_STATUS, Status::FAILED);
                if let Some((iova, len)) = p.mapped {
                    let _ = iommu.unmap_buffer(iova, len);
                }
                Err(e)
            }
        }
    }

    /// The device once `init` succeeded (at open, and after a restart).
    fn assemble(
        pci_cap: u32,
        requested_depth: u16,
        regs: Transport,
        r: Ready,
        irq: Option<(u32, u64)>,
        sid: StreamId,
        clock: Counter,
    ) -> VirtioBlk {
        VirtioBlk {
            pci_cap,
            requested_depth,
            regs,
            mem: r.mem,
            layout: r.layout,
            iova: r.iova,
            vq: r.vq,
            inflight: r.inflight,
            info: r.info,
            irq,
            sid,
            clock,
            read_only: r.features & feature::BLK_RO != 0,
            flush: r.features & feature::BLK_FLUSH != 0,
            broken: false,
            pending: Vec::new(),
            released: Vec::new(),
            timeout_ticks: clock.ticks(IO_TIMEOUT_US),
        }
    }

    /// The initialisation sequence [VIRTIO-1.2 §3.1.1, §4.1.5.1.3].
    fn init(
        p: &mut Partial,
        iommu: &impl DmaMapper,
        pci_cap: u32,
        interrupts: bool,
        queue_depth: u16,
        reuse: Option<DmaBuffer>,
    ) -> Result<Ready, OpenError> {
        let regs = &mut p.regs;
        // 1-3: reset, ACKNOWLEDGE, DRIVER.
        reset(regs, p.clock)?;
        let mut status = Status::ACKNOWLEDGE;
        regs.set_common(common::DEVICE_STATUS, status)?;
        status |= Status::DRIVER;
        regs.set_common(common::DEVICE_STATUS, status)?;
        // 4-6: features; FEATURES_OK must stick.
        let features = pci::negotiate(regs.device_features()?, blk::WANTED_FEATURES)
            .map_err(|m| OpenError::MissingFeatures(m.0))?;
        regs.set_driver_features(features)?;
        status |= Status::FEATURES_OK;
        regs.set_common(common::DEVICE_STATUS, status)?;
        if !Status(regs.common(common::DEVICE_STATUS)?).has(Status::FEATURES_OK) {
            return Err(OpenError::FeaturesRejected);
        }
        // 7: the request queue, in memory mapped through the IOMMU.
        regs.set_common(common::QUEUE_SELECT, REQUEST_QUEUE)?;
        if regs.common(common::QUEUE_ENABLE)? != 0 {
            return Err(OpenError::NoQueue);
        }
        let size = blk::queue_size(regs.common(common::QUEUE_SIZE)?, queue_depth)
            .ok_or(OpenError::NoQueue)?;
        let layout = DmaLayout::new(size).ok_or(OpenError::Layout)?;
        // A restart reuses the memory of the previous run (tasks cannot
        // free DMA memory); it is zeroed so the rings start empty.
        let buf = match reuse {
            Some(mut b) if b.len() >= layout.len => {
                for word in 0..b.len() / 8 {
                    b.write::<u64>(word * 8, 0).ok_or(OpenError::Layout)?;
                }
                b
            }
            _ => DmaBuffer::alloc(layout.len.div_ceil(PAGE_SIZE))?,
        };
        let iova = iommu.map_buffer(&buf, Dir::Bidirectional)?;
        p.mapped = Some((iova, buf.len()));
        let regs = &mut p.regs;
        let mut mem = DmaMem(buf);
        let vq = Virtqueue::new(layout.queue, &mut mem).map_err(|_| OpenError::Layout)?;
        let at = |off: u64| iova.checked_add(off).ok_or(OpenError::Layout);
        let (desc, driver, device) = (
            at(layout.queue.desc)?,
            at(layout.queue.avail)?,
            at(layout.queue.used)?,
        );
        // The stream is attached: the device may master, through the SMMU.
        userlib::pci_enable_bus_master(pci_cap)?;
        route_intx(pci_cap, interrupts)?;
        regs.set_common(common::QUEUE_SIZE, size)?;
        regs.set_common64(common::QUEUE_DESC, desc.get())?;
        regs.set_common64(common::QUEUE_DRIVER, driver.get())?;
        regs.set_common64(common::QUEUE_DEVICE, device.get())?;
        regs.set_common(common::MSIX_CONFIG, common::NO_VECTOR)?;
        regs.set_common(common::QUEUE_MSIX_VECTOR, common::NO_VECTOR)?;
        let notify_off = regs.common(common::QUEUE_NOTIFY_OFF)?;
        if !regs.set_notify_off(notify_off) {
            return Err(OpenError::Layout);
        }
        regs.set_common(common::QUEUE_ENABLE, 1)?;
        // Device configuration, stable across one generation.
        let config = Self::read_config(regs, features)?;
        // 8: DRIVER_OK.
        status |= Status::DRIVER_OK;
        regs.set_common(common::DEVICE_STATUS, status)?;
        if Status(regs.common(common::DEVICE_STATUS)?).needs_reset() {
            return Err(OpenError::NeedsReset);
        }
        let depth = blk::queue_depth(size, queue_depth);
        let info = Info {
            sectors: config.capacity,
            sector_size: config.sector_size(),
            max_transfer: config.max_transfer(MAX_TRANSFER_CAP),
            queue_depth: depth,
            device_kind: DEVICE_KIND,
        };
        Ok(Ready {
            mem,
            layout,
            iova,
            vq,
            inflight: InFlight::new(depth, size),
            info,
            features,
        })
    }

    /// The device configuration, read until it held still.
    fn read_config(regs: &Transport, features: u64) -> Result<BlkConfig, OpenError> {
        read_stable(regs, |r| {
            BlkConfig::read(features, |off| r.device_config32(off))
        })
    }

    /// The StreamID the IOMMU server attached.
    pub fn stream_id(&self) -> StreamId {
        self.sid
    }

    /// Gives up on the device: resets it so that it stops its DMA (a
    /// bounded wait), and queues a `DeviceError` for every request in
    /// flight. Once the reset completed, fenced requests are released; if
    /// it did not, every request stays fenced.
    fn fail_device(&mut self) {
        if self.broken {
            return;
        }
        self.broken = true;
        let (pending, released) = (&mut self.pending, &mut self.released);
        match reset(&mut self.regs, self.clock) {
            Ok(()) => self.inflight.reset(
                |slot| pending.push((slot, Err(BlockError::DeviceError))),
                |slot| {
                    log!("virtio-blk: slot {slot}: device reset: fence lifted");
                    released.push(slot);
                },
            ),
            Err(e) => {
                log!("virtio-blk: the failed device did not reset ({e}): its requests stay fenced");
                self.inflight
                    .fence_all(|slot| pending.push((slot, Err(BlockError::DeviceError))));
            }
        }
    }

    /// Checks one I/O; returns the descriptors its chain needs.
    fn check(&self, io: &DeviceIo) -> Result<u16, BlockError> {
        match io.kind {
            IoKind::Flush if !self.flush => Err(BlockError::UnknownOp),
            IoKind::Flush => Ok(2),
            IoKind::Write if self.read_only => Err(BlockError::NotPermitted),
            IoKind::Read | IoKind::Write => {
                if io.sectors == 0 || io.bytes != u64::from(io.sectors) * SECTOR_BYTES {
                    return Err(BlockError::Malformed);
                }
                if io.bytes > u64::from(self.info.max_transfer) {
                    return Err(BlockError::TooLarge);
                }
                if io
                    .lba
                    .checked_add(u64::from(io.sectors))
                    .is_none_or(|end| end > self.info.sectors)
                {
                    return Err(BlockError::OutOfRange);
                }
                Ok(blk::DESCS_PER_REQUEST)
            }
        }
    }

    /// Device address of byte `offset` of the driver's DMA region.
    fn dma_iova(&self, offset: u64) -> Iova {
        // `offset < layout.len` and the IOMMU server mapped that whole
        // range at `iova`, so this cannot overflow.
        Iova::new(self.iova.get() + offset)
    }

    /// Adds one checked I/O's chain; returns its head.
    fn add(&mut self, io: &DeviceIo) -> Option<u16> {
        let head = self.vq.next_head()?;
        let (kind, sector, data) = match io.kind {
            IoKind::Read => (RequestType::In, io.lba, Some(true)),
            IoKind::Write => (RequestType::Out, io.lba, Some(false)),
            IoKind::Flush => (RequestType::Flush, 0, None),
        };
        let (hdr, st) = (self.layout.header(head), self.layout.status(head));
        RequestHeader { kind, sector }.write(&mut self.mem, hdr);
        self.mem.write_u8(st, blk::status::PENDING);
        let header = Buffer {
            iova: self.dma_iova(hdr),
            len: blk::req::HEADER_BYTES as u32,
            device_writes: false,
        };
        let status = Buffer {
            iova: self.dma_iova(st),
            len: blk::req::STATUS_BYTES as u32,
            device_writes: true,
        };
        let got = match data {
            Some(device_writes) => {
                let data = Buffer {
                    iova: io.iova,
                    len: u32::try_from(io.bytes).ok()?,
                    device_writes,
                };
                self.vq.add(&mut self.mem, &[header, data, status])
            }
            None => self.vq.add(&mut self.mem, &[header, status]),
        };
        got.ok().filter(|&h| h == head)
    }
}

impl BlockDevice for VirtioBlk {
    fn stop(&mut self, iommu: &Iommu) -> Result<(), BlockError> {
        if let Err(e) = reset(&mut self.regs, self.clock) {
            log!("virtio-blk: reset before a mode switch failed: {e}");
            return Err(BlockError::DeviceError);
        }
        // The device is reset: fenced requests are over.
        let released = &mut self.released;
        self.inflight.reset(|_| {}, |slot| released.push(slot));
        iommu
            .unmap(&[Extent::new(self.iova.get(), self.mem.0.len())])
            .map_err(|e| {
                log!("virtio-blk: unmapping the ring failed: {e}");
                BlockError::Iommu
            })?;
        Ok(())
    }

    fn restart(self, iommu: &Iommu) -> Result<Self, BlockError> {
        let VirtioBlk {
            pci_cap,
            requested_depth,
            regs,
            mem,
            irq,
            sid,
            clock,
            ..
        } = self;
        let mut p = Partial {
            regs,
            clock,
            mapped: None,
        };
        match Self::init(
            &mut p,
            iommu,
            pci_cap,
            irq.is_some(),
            requested_depth,
            Some(mem.0),
        ) {
            Ok(r) => Ok(Self::assemble(
                pci_cap,
                requested_depth,
                p.regs,
                r,
                irq,
                sid,
                clock,
            )),
            Err(e) => {
                log!("virtio-blk: restarting failed: {e}");
                Err(BlockError::DeviceError)
            }
        }
    }

    fn info(&self) -> Info {
        self.info
    }

    fn submit(&mut self, ios: &[DeviceIo]) -> Result<(), BlockError> {
        if self.broken {
            return Err(BlockError::DeviceError);
        }
        let mut descs = 0u32;
        for (i, io) in ios.iter().enumerate() {
            if !self.inflight.slot_free(io.slot) || ios[..i].iter().any(|o| o.slot == io.slot) {
                return Err(BlockError::QueueFull);
            }
            descs += u32::from(self.check(io)?);
        }
        // Chains abandoned after a timeout may still hold descriptors.
        if descs > u32::from(self.vq.num_free()) {
            return Err(BlockError::QueueFull);
        }
        let deadline = userlib::counter().saturating_add(self.timeout_ticks);
        let mut heads: Vec<u16> = Vec::with_capacity(ios.len());
        for io in ios {
            match self.add(io) {
                Some(head) if self.inflight.start(io.slot, head, deadline) => heads.push(head),
                _ => {
                    // Cannot happen after the checks above; if it does, none
                    // of this batch was published: forget its requests and
                    // give up on the device (the others in flight are
                    // reported failed).
                    for head in heads {
                        self.inflight.cancel(head);
                    }
                    self.fail_device();
                    return Err(BlockError::DeviceError);
                }
            }
        }
        self.vq.publish(&mut self.mem);
        if self.regs.notify(REQUEST_QUEUE).is_err() {
            self.fail_device();
        }
        Ok(())
    }

    fn completions(&mut self, out: &mut Vec<(u16, Result<(), BlockError>)>) {
        out.append(&mut self.pending);
        if self.broken {
            return;
        }
        match self.regs.common(common::DEVICE_STATUS) {
            Ok(s) if !Status(s).needs_reset() => {}
            _ => {
                self.fail_device();
                out.append(&mut self.pending);
                return;
            }
        }
        loop {
            match self.vq.pop_used(&mut self.mem) {
                Ok(None) => break,
                Ok(Some(used)) => {
                    match self.inflight.complete(used.head) {
                        Some(Returned::Done(slot)) => {
                            let st = self.mem.read_u8(self.layout.status(used.head));
                            let r = match Outcome::from_status(st) {
                                Outcome::Ok => Ok(()),
                                _ => Err(BlockError::DeviceError),
                            };
                            out.push((slot, r));
                        }
                        // A fenced (timed-out) request came back: reported
                        // already; now its buffer may go.
                        Some(Returned::Released(slot)) => {
                            log!(
                                "virtio-blk: slot {slot}: late completion of its timed-out request: fence lifted"
                            );
                            self.released.push(slot);
                        }
                        None => {}
                    }
                }
                Err(_) => {
                    self.fail_device();
                    out.append(&mut self.pending);
                    return;
                }
            }
        }
        if self.inflight.active() > 0 {
            self.inflight.expire(userlib::counter(), |slot| {
                log!(
                    "virtio-blk: slot {slot} timed out: fenced (its chain and buffer stay reserved until the device returns it or is reset)"
                );
                out.push((slot, Err(BlockError::Timeout)))
            });
        }
    }

    fn is_fenced(&self, slot: u16) -> bool {
        self.inflight.is_fenced(slot)
    }

    fn released(&mut self, out: &mut Vec<u16>) {
        out.append(&mut self.released);
    }

    fn irq(&self) -> Option<(u32, u64)> {
        self.irq
    }

    fn on_interrupt(&mut self) {
        // Reading ISR status clears it and deasserts INTx; the used ring
        // tells what completed, and a configuration change (capacity) is
        // not acted on.
        let _ = self.regs.read_isr();
    }
}
