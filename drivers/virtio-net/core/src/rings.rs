//! The driver's receive and transmit buffer slots over two split
//! virtqueues [VIRTIO-1.2 §5.1.6]: which slot each descriptor chain
//! carries, and where each slot is in its life.
//!
//! Receive slots are the driver's own DMA memory, mapped by the IOMMU
//! server once, as one run, and posted as device-writable buffers; a
//! received frame is checked (length, header) before the driver sees it,
//! and a bad one is counted, dropped and its slot posted again. Transmit
//! slots hold a copy of each frame: staged, mapped per batch by the driver,
//! posted, and after the device returns them kept *sent* (still mapped)
//! until the driver's strict unmap completed and it frees them.
//!
//! It owns this state only: no sequence of calls, and nothing a device
//! writes, makes it panic, hand out a slot twice, or reuse a slot the
//! device may still reach.

use alloc::vec;
use alloc::vec::Vec;

use abi::Iova;
use virtio_core::virtqueue::{Buffer, QueueError, QueueMemory, Virtqueue};

use crate::net::{ETH_HEADER, HDR_BYTES, HdrError, NetHdr};

/// Bytes of one slot: a header and the largest frame, two to a page.
pub const SLOT_BYTES: u64 = 2048;

/// Which slot each descriptor head's chain carries.
#[derive(Debug)]
struct Heads(Vec<Option<u16>>);

impl Heads {
    fn new(queue_size: u16) -> Heads {
        Heads(vec![None; usize::from(queue_size)])
    }

    /// `head`'s chain carries `slot`.
    fn insert(&mut self, head: u16, slot: u16) -> Result<(), QueueError> {
        let entry = self
            .0
            .get_mut(usize::from(head))
            .ok_or(QueueError::BadUsedId(u32::from(head)))?;
        *entry = Some(slot);
        Ok(())
    }

    /// The next used chain's slot, or `None`; a head that carries no slot
    /// is an error.
    fn pop(
        &mut self,
        q: &mut Virtqueue,
        mem: &mut impl QueueMemory,
    ) -> Result<Option<(u16, u32)>, QueueError> {
        let Some(used) = q.pop_used(mem)? else {
            return Ok(None);
        };
        let slot = self
            .0
            .get_mut(usize::from(used.head))
            .and_then(Option::take)
            .ok_or(QueueError::BadUsedId(u32::from(used.head)))?;
        Ok(Some((slot, used.len)))
    }
}

/// A received frame, held by the driver until [`RxRing::release`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxFrame {
    /// Its slot.
    pub slot: u16,
    /// Offset of its first byte (after the header) in the DMA memory.
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
}

/// Why a received frame was dropped (its slot is posted again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxDrop {
    /// The device wrote less than a header and an Ethernet header.
    TooShort(u32),
    /// The device claims more than the largest frame (or the slot).
    TooLong(u32),
    /// The header asks for what was not negotiated.
    Header(HdrError),
}

/// What the receive queue returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxEvent {
    /// A frame for the driver.
    Frame(RxFrame),
    /// A frame refused.
    Dropped(RxDrop),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RxSlot {
    Idle,
    Posted,
    Held,
}

/// The receive slots.
#[derive(Debug)]
pub struct RxRing {
    base: u64,
    iova: Iova,
    max_frame: u64,
    slots: Vec<RxSlot>,
    heads: Heads,
    dropped: u64,
}

impl RxRing {
    /// `count` slots of [`SLOT_BYTES`] at `base` in the DMA memory, which
    /// the device reaches at `iova`, for a queue of `queue_size` entries;
    /// frames up to `max_frame` bytes.
    pub fn new(base: u64, iova: Iova, count: u16, queue_size: u16, max_frame: u64) -> RxRing {
        RxRing {
            base,
            iova,
            max_frame: max_frame.min(SLOT_BYTES - HDR_BYTES),
            slots: vec![RxSlot::Idle; usize::from(count)],
            heads: Heads::new(queue_size),
            dropped: 0,
        }
    }

    /// Bytes of DMA memory `count` slots take (one run to map).
    pub fn bytes(count: u16) -> u64 {
        u64::from(count) * SLOT_BYTES
    }

    /// Posts every idle slot while the queue has room; returns how many
    /// (the caller publishes and notifies if any).
    pub fn refill(
        &mut self,
        q: &mut Virtqueue,
        mem: &mut impl QueueMemory,
    ) -> Result<u16, QueueError> {
        let mut n = 0;
        for slot in 0..self.slots.len() {
            if self.slots[slot] != RxSlot::Idle {
                continue;
            }
            if q.num_free() == 0 {
                break;
            }
            let at = slot as u64 * SLOT_BYTES;
            let head = q.add(
                mem,
                &[Buffer {
                    iova: Iova::new(self.iova.get() + at),
                    len: SLOT_BYTES as u32,
                    device_writes: true,
                }],
            )?;
            self.heads.insert(head, slot as u16)?;
            self.slots[slot] = RxSlot::Posted;
            n += 1;
        }
        Ok(n)
    }

    /// The next frame the device returned, checked, or `None`.
    pub fn next(
        &mut self,
        q: &mut Virtqueue,
        mem: &mut impl QueueMemory,
    ) -> Result<Option<RxEvent>, QueueError> {
        let Some((slot, written)) = self.heads.pop(q, mem)? else {
            return Ok(None);
        };
        let len = u64::from(written);
        let at = self.base + u64::from(slot) * SLOT_BYTES;
        let verdict = if len < HDR_BYTES + ETH_HEADER {
            Err(RxDrop::TooShort(written))
        } else if len > HDR_BYTES + self.max_frame {
            Err(RxDrop::TooLong(written))
        } else {
            NetHdr::read(mem, at).check_rx().map_err(RxDrop::Header)
        };
        Ok(Some(match verdict {
            Ok(()) => {
                self.slots[usize::from(slot)] = RxSlot::Held;
                RxEvent::Frame(RxFrame {
                    slot,
                    offset: at + HDR_BYTES,
                    len: len - HDR_BYTES,
                })
            }
            Err(why) => {
                self.slots[usize::from(slot)] = RxSlot::Idle;
                self.dropped += 1;
                RxEvent::Dropped(why)
            }
        }))
    }

    /// The driver is done with a frame's slot: it may be posted again.
    /// `false` (and nothing changes) unless the slot was held.
    pub fn release(&mut self, slot: u16) -> bool {
        match self.slots.get_mut(usize::from(slot)) {
            Some(s @ RxSlot::Held) => {
                *s = RxSlot::Idle;
                true
            }
            _ => false,
        }
    }

    /// Frames dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Slots the device holds.
    pub fn posted(&self) -> usize {
        self.slots.iter().filter(|&&s| s == RxSlot::Posted).count()
    }
}

/// Why a frame was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxError {
    /// Shorter than an Ethernet header.
    TooShort,
    /// Longer than the largest frame.
    TooLong,
    /// No free slot (or no free descriptor): try after a reclaim.
    Full,
    /// The slot is not staged.
    NotStaged,
    /// The queue refused.
    Queue(QueueError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TxSlot {
    Free,
    Staged {
        len: u64,
    },
    Posted {
        len: u64,
    },
    /// Returned by the device, still mapped: freed after the unmap.
    Sent {
        len: u64,
    },
}

/// The transmit slots.
#[derive(Debug)]
pub struct TxRing {
    base: u64,
    max_frame: u64,
    slots: Vec<TxSlot>,
    heads: Heads,
}

impl TxRing {
    /// `count` slots of [`SLOT_BYTES`] at `base` in the DMA memory, for a
    /// queue of `queue_size` entries; frames up to `max_frame` bytes.
    pub fn new(base: u64, count: u16, queue_size: u16, max_frame: u64) -> TxRing {
        TxRing {
            base,
            max_frame: max_frame.min(SLOT_BYTES - HDR_BYTES),
            slots: vec![TxSlot::Free; usize::from(count)],
            heads: Heads::new(queue_size),
        }
    }

    /// Copies the header and `frame` into a free slot; returns the slot,
    /// to be mapped ([`TxRing::range`]) and posted.
    pub fn stage(&mut self, mem: &mut impl QueueMemory, frame: &[u8]) -> Result<u16, TxError> {
        let len = frame.len() as u64;
        if len < ETH_HEADER {
            return Err(TxError::TooShort);
        }
        if len > self.max_frame {
            return Err(TxError::TooLong);
        }
        let slot = self
            .slots
            .iter()
            .position(|&s| s == TxSlot::Free)
            .ok_or(TxError::Full)?;
        let at = self.base + slot as u64 * SLOT_BYTES;
        NetHdr::TX.write(mem, at);
        for (i, &b) in frame.iter().enumerate() {
            mem.write_u8(at + HDR_BYTES + i as u64, b);
        }
        self.slots[slot] = TxSlot::Staged { len };
        Ok(slot as u16)
    }

    /// Where a staged, posted or sent slot's bytes are (header included):
    /// `(offset, len)` in the DMA memory, the range to map or unmap.
    pub fn range(&self, slot: u16) -> Option<(u64, u64)> {
        let at = self.base + u64::from(slot) * SLOT_BYTES;
        match self.slots.get(usize::from(slot))? {
            TxSlot::Staged { len } | TxSlot::Posted { len } | TxSlot::Sent { len } => {
                Some((at, HDR_BYTES + len))
            }
            TxSlot::Free => None,
        }
    }

    /// Hands a staged slot, mapped at `iova`, to the device (visible once
    /// the caller publishes).
    pub fn post(
        &mut self,
        q: &mut Virtqueue,
        mem: &mut impl QueueMemory,
        slot: u16,
        iova: Iova,
    ) -> Result<(), TxError> {
        let Some(&TxSlot::Staged { len }) = self.slots.get(usize::from(slot)) else {
            return Err(TxError::NotStaged);
        };
        if q.num_free() == 0 {
            return Err(TxError::Full);
        }
        let head = q
            .add(
                mem,
                &[Buffer {
                    iova,
                    len: (HDR_BYTES + len) as u32,
                    device_writes: false,
                }],
            )
            .map_err(TxError::Queue)?;
        self.heads.insert(head, slot).map_err(TxError::Queue)?;
        self.slots[usize::from(slot)] = TxSlot::Posted { len };
        Ok(())
    }

    /// Drops a staged slot (its map was refused). `false` unless staged.
    pub fn unstage(&mut self, slot: u16) -> bool {
        match self.slots.get_mut(usize::from(slot)) {
            Some(s @ TxSlot::Staged { .. }) => {
                *s = TxSlot::Free;
                true
            }
            _ => false,
        }
    }

    /// The next slot the device returned, or `None`. It stays *sent*,
    /// still mapped, until [`TxRing::free`].
    pub fn reclaim(
        &mut self,
        q: &mut Virtqueue,
        mem: &mut impl QueueMemory,
    ) -> Result<Option<u16>, QueueError> {
        let Some((slot, _)) = self.heads.pop(q, mem)? else {
            return Ok(None);
        };
        if let Some(s) = self.slots.get_mut(usize::from(slot))
            && let TxSlot::Posted { len } = *s
        {
            *s = TxSlot::Sent { len };
        }
        Ok(Some(slot))
    }

    /// The unmap of a sent slot completed: it may be reused. `false` (and
    /// nothing changes) unless the slot was sent.
    pub fn free(&mut self, slot: u16) -> bool {
        match self.slots.get_mut(usize::from(slot)) {
            Some(s @ TxSlot::Sent { .. }) => {
                *s = TxSlot::Free;
                true
            }
            _ => false,
        }
    }

    /// Slots not free.
    pub fn busy(&self) -> usize {
        self.slots.iter().filter(|&&s| s != TxSlot::Free).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeDevice;
    use crate::net::{HDR_F_NEEDS_CSUM, MAX_FRAME};
    use proptest::prelude::*;
    use virtio_core::virtqueue::Layout;
    use virtio_core::virtqueue::testmem::VecMem;

    const QSIZE: u16 = 16;
    const SLOTS: u16 = 8;
    const BASE: u64 = 4096;

    /// A queue at 0 and `SLOTS` slots at `BASE`; the device sees the
    /// memory at IOVA = offset.
    fn setup() -> (VecMem, Virtqueue, FakeDevice) {
        let mut mem = VecMem::new(BASE + RxRing::bytes(SLOTS));
        let layout = Layout::new(0, QSIZE).unwrap();
        let q = Virtqueue::new(layout, &mut mem).unwrap();
        (mem, q, FakeDevice::new(layout))
    }

    /// The device writes a header and `frame` into a receive buffer.
    fn deliver(mem: &mut VecMem, at: u64, hdr: NetHdr, frame: &[u8]) {
        hdr.write(mem, at);
        for (i, &b) in frame.iter().enumerate() {
            mem.write_u8(at + HDR_BYTES + i as u64, b);
        }
    }

    const RX_HDR: NetHdr = NetHdr {
        num_buffers: 1,
        ..NetHdr::TX
    };

    /// Claims merged buffers, which were not negotiated.
    const BAD_HDR: NetHdr = NetHdr {
        num_buffers: 2,
        ..NetHdr::TX
    };

    #[test]
    fn a_received_frame_is_handed_out_once_and_its_slot_posted_again() {
        let (mut mem, mut q, mut dev) = setup();
        let mut rx = RxRing::new(BASE, Iova::new(BASE), SLOTS, QSIZE, MAX_FRAME);
        assert_eq!(rx.refill(&mut q, &mut mem), Ok(SLOTS));
        assert_eq!(rx.refill(&mut q, &mut mem), Ok(0), "nothing idle");
        q.publish(&mut mem);
        dev.take(&mem);
        assert_eq!(dev.pending.len(), usize::from(SLOTS));
        assert!(dev.pending.iter().all(|c| c.device_writes && c.len == 2048));
        let frame: Vec<u8> = (0..60).collect();
        let c = dev.pending[3];
        deliver(&mut mem, c.addr, RX_HDR, &frame);
        dev.complete(&mut mem, 3, 72);
        let Some(RxEvent::Frame(f)) = rx.next(&mut q, &mut mem).unwrap() else {
            panic!("no frame")
        };
        assert_eq!((f.offset, f.len), (c.addr + HDR_BYTES, 60));
        assert_eq!(
            &mem.bytes[f.offset as usize..(f.offset + f.len) as usize],
            &frame[..]
        );
        assert_eq!(rx.next(&mut q, &mut mem), Ok(None));
        assert_eq!(rx.posted(), usize::from(SLOTS) - 1);
        assert_eq!(rx.refill(&mut q, &mut mem), Ok(0), "held, not idle");
        assert!(rx.release(f.slot));
        assert!(!rx.release(f.slot), "released twice");
        assert_eq!(rx.refill(&mut q, &mut mem), Ok(1));
    }

    #[test]
    fn bad_lengths_and_headers_are_dropped_and_counted() {
        let (mut mem, mut q, mut dev) = setup();
        let mut rx = RxRing::new(BASE, Iova::new(BASE), SLOTS, QSIZE, MAX_FRAME);
        rx.refill(&mut q, &mut mem).unwrap();
        q.publish(&mut mem);
        dev.take(&mem);
        let frame = [0xaau8; 60];
        for len in [0u32, 25, 12 + 1518 + 1, 5000, u32::MAX] {
            let c = dev.pending[0];
            deliver(&mut mem, c.addr, RX_HDR, &frame);
            dev.complete(&mut mem, 0, len);
            let got = rx.next(&mut q, &mut mem).unwrap().unwrap();
            assert!(matches!(got, RxEvent::Dropped(_)), "{len}: {got:?}");
        }
        let bad = [
            BAD_HDR,
            NetHdr {
                flags: HDR_F_NEEDS_CSUM,
                ..RX_HDR
            },
            NetHdr {
                gso_type: 4,
                ..RX_HDR
            },
        ];
        for h in bad {
            let c = dev.pending[0];
            deliver(&mut mem, c.addr, h, &frame);
            dev.complete(&mut mem, 0, 72);
            let got = rx.next(&mut q, &mut mem).unwrap().unwrap();
            assert!(matches!(got, RxEvent::Dropped(RxDrop::Header(_))), "{h:?}");
        }
        assert_eq!(rx.dropped(), 8);
        // Every dropped slot is idle again, none lost.
        assert_eq!(rx.refill(&mut q, &mut mem), Ok(8));
    }

    #[test]
    fn a_used_id_the_driver_never_posted_is_an_error() {
        let (mut mem, mut q, mut dev) = setup();
        let mut rx = RxRing::new(BASE, Iova::new(BASE), SLOTS, QSIZE, MAX_FRAME);
        rx.refill(&mut q, &mut mem).unwrap();
        q.publish(&mut mem);
        for id in [QSIZE.into(), 9999, u32::MAX] {
            let mut evil = FakeDevice::new(q.layout());
            evil.used(&mut mem, id, 72);
            assert_eq!(rx.next(&mut q, &mut mem), Err(QueueError::BadUsedId(id)));
        }
        dev.take(&mem);
        assert_eq!(rx.posted(), usize::from(SLOTS));
    }

    #[test]
    fn a_sent_slot_stays_mapped_until_freed() {
        let (mut mem, mut q, mut dev) = setup();
        let mut tx = TxRing::new(BASE, SLOTS, QSIZE, MAX_FRAME);
        let frame: Vec<u8> = (0..100u8).collect();
        let s = tx.stage(&mut mem, &frame).unwrap();
        let (at, len) = tx.range(s).unwrap();
        assert_eq!(len, HDR_BYTES + 100);
        assert!(
            mem.bytes[at as usize..(at + HDR_BYTES) as usize]
                .iter()
                .all(|&b| b == 0)
        );
        assert_eq!(
            &mem.bytes[(at + HDR_BYTES) as usize..(at + len) as usize],
            &frame[..]
        );
        tx.post(&mut q, &mut mem, s, Iova::new(at)).unwrap();
        assert_eq!(
            tx.post(&mut q, &mut mem, s, Iova::new(at)),
            Err(TxError::NotStaged)
        );
        q.publish(&mut mem);
        dev.take(&mem);
        let c = dev.pending[0];
        assert_eq!((c.addr, c.len, c.device_writes), (at, len as u32, false));
        assert_eq!(tx.reclaim(&mut q, &mut mem), Ok(None));
        dev.complete(&mut mem, 0, 0);
        assert_eq!(tx.reclaim(&mut q, &mut mem), Ok(Some(s)));
        assert_eq!(tx.range(s), Some((at, len)), "sent: still mapped");
        assert!(tx.free(s));
        assert!(!tx.free(s), "freed twice");
        assert_eq!(tx.range(s), None);
        assert_eq!(tx.busy(), 0);
    }

    #[test]
    fn transmit_refusals_change_nothing() {
        let (mut mem, mut q, _) = setup();
        let mut tx = TxRing::new(BASE, SLOTS, QSIZE, MAX_FRAME);
        assert_eq!(tx.stage(&mut mem, &[0; 13]), Err(TxError::TooShort));
        assert_eq!(tx.stage(&mut mem, &[0; 1519]), Err(TxError::TooLong));
        for _ in 0..SLOTS {
            tx.stage(&mut mem, &[1; 64]).unwrap();
        }
        assert_eq!(tx.stage(&mut mem, &[1; 64]), Err(TxError::Full));
        assert!(tx.unstage(0));
        assert!(!tx.unstage(0));
        assert_eq!(
            tx.post(&mut q, &mut mem, 0, Iova::new(0)),
            Err(TxError::NotStaged)
        );
        assert_eq!(
            tx.post(&mut q, &mut mem, SLOTS + 5, Iova::new(0)),
            Err(TxError::NotStaged)
        );
        assert!(!tx.free(1), "staged, not sent");
        assert_eq!(tx.busy(), usize::from(SLOTS) - 1);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Refill,
        Deliver { pick: usize, len: u32, hdr_ok: bool },
        Next,
        Release(u16),
        Bogus(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Refill),
            (any::<usize>(), 0u32..3000, any::<bool>())
                .prop_map(|(pick, len, hdr_ok)| { Op::Deliver { pick, len, hdr_ok } }),
            Just(Op::Next),
            (0u16..12).prop_map(Op::Release),
            any::<u32>().prop_map(Op::Bogus),
        ]
    }

    #[derive(Clone, Debug)]
    enum TxOp {
        Stage(usize),
        Post,
        Take,
        Complete(usize),
        Reclaim,
        Free(u16),
    }

    fn tx_op() -> impl Strategy<Value = TxOp> {
        prop_oneof![
            (0usize..1600).prop_map(TxOp::Stage),
            Just(TxOp::Post),
            Just(TxOp::Take),
            any::<usize>().prop_map(TxOp::Complete),
            Just(TxOp::Reclaim),
            (0u16..12).prop_map(TxOp::Free),
        ]
    }

    proptest! {
        /// Whatever the device returns and whatever the driver calls, a
        /// slot is idle, posted or held, never two; the posted ones are
        /// exactly the chains in flight; a frame is within its bounds.
        #[test]
        fn receive_slots_are_never_lost_or_doubled(ops in proptest::collection::vec(op(), 1..200)) {
            let (mut mem, mut q, mut dev) = setup();
            let mut rx = RxRing::new(BASE, Iova::new(BASE), SLOTS, QSIZE, MAX_FRAME);
            let mut held: Vec<u16> = Vec::new();
            let mut broken = false;
            for op in ops {
                match op {
                    Op::Refill => {
                        rx.refill(&mut q, &mut mem).unwrap();
                        q.publish(&mut mem);
                        dev.take(&mem);
                    }
                    Op::Deliver { pick, len, hdr_ok } if !dev.pending.is_empty() => {
                        let i = pick % dev.pending.len();
                        let at = dev.pending[i].addr;
                        let h = if hdr_ok { RX_HDR } else { BAD_HDR };
                        deliver(&mut mem, at, h, &[7; 40]);
                        dev.complete(&mut mem, i, len);
                    }
                    Op::Deliver { .. } => {}
                    Op::Next => match rx.next(&mut q, &mut mem) {
                        Ok(Some(RxEvent::Frame(f))) => {
                            prop_assert!(!held.contains(&f.slot));
                            prop_assert!(f.len >= ETH_HEADER && f.len <= MAX_FRAME);
                            let slot_at = BASE + u64::from(f.slot) * SLOT_BYTES;
                            prop_assert_eq!(f.offset, slot_at + HDR_BYTES);
                            held.push(f.slot);
                        }
                        Ok(_) => {}
                        // Only after a bogus used element: the queue is
                        // then out of step, as with a real broken device.
                        Err(_) => prop_assert!(broken),
                    },
                    Op::Release(s) => {
                        let was = held.iter().position(|&h| h == s);
                        prop_assert_eq!(rx.release(s), was.is_some());
                        if let Some(i) = was {
                            held.remove(i);
                        }
                    }
                    Op::Bogus(id) => {
                        FakeDevice::new(q.layout()).used(&mut mem, id, 72);
                        broken = true;
                    }
                }
                if !broken {
                    prop_assert_eq!(rx.posted(), usize::from(q.in_flight()));
                }
                prop_assert!(rx.posted() + held.len() <= usize::from(SLOTS));
            }
        }

        /// A slot is reused only after it was sent and freed; the device
        /// never gets a slot twice; what it gets is what was staged.
        #[test]
        fn transmit_slots_follow_their_life(ops in proptest::collection::vec(tx_op(), 1..200)) {
            let (mut mem, mut q, mut dev) = setup();
            let mut tx = TxRing::new(BASE, SLOTS, QSIZE, MAX_FRAME);
            let mut staged: Vec<u16> = Vec::new();
            let mut posted: Vec<u16> = Vec::new();
            let mut sent: Vec<u16> = Vec::new();
            for op in ops {
                match op {
                    TxOp::Stage(n) => {
                        let frame: Vec<u8> = (0..n).map(|i| i as u8).collect();
                        match tx.stage(&mut mem, &frame) {
                            Ok(s) => {
                                prop_assert!(!staged.contains(&s) && !posted.contains(&s) && !sent.contains(&s));
                                staged.push(s);
                            }
                            Err(TxError::TooShort) => prop_assert!((n as u64) < ETH_HEADER),
                            Err(TxError::TooLong) => prop_assert!(n as u64 > MAX_FRAME),
                            Err(TxError::Full) => prop_assert_eq!(staged.len() + posted.len() + sent.len(), usize::from(SLOTS)),
                            Err(e) => prop_assert!(false, "{:?}", e),
                        }
                    }
                    TxOp::Post => {
                        if let Some(&s) = staged.first() {
                            let (at, _) = tx.range(s).unwrap();
                            tx.post(&mut q, &mut mem, s, Iova::new(at)).unwrap();
                            staged.remove(0);
                            posted.push(s);
                        }
                    }
                    TxOp::Take => {
                        q.publish(&mut mem);
                        dev.take(&mem);
                    }
                    TxOp::Complete(pick) if !dev.pending.is_empty() => {
                        let i = pick % dev.pending.len();
                        let c = dev.complete(&mut mem, i, 0);
                        prop_assert!(!c.device_writes);
                    }
                    TxOp::Complete(_) => {}
                    TxOp::Reclaim => {
                        if let Some(s) = tx.reclaim(&mut q, &mut mem).unwrap() {
                            let i = posted.iter().position(|&p| p == s);
                            prop_assert!(i.is_some(), "reclaimed {} not posted", s);
                            posted.remove(i.unwrap());
                            sent.push(s);
                        }
                    }
                    TxOp::Free(s) => {
                        let i = sent.iter().position(|&p| p == s);
                        prop_assert_eq!(tx.free(s), i.is_some());
                        if let Some(i) = i {
                            sent.remove(i);
                        }
                    }
                }
                prop_assert_eq!(tx.busy(), staged.len() + posted.len() + sent.len());
                prop_assert_eq!(usize::from(q.in_flight()), posted.len());
            }
        }
    }
}
