//! The split virtqueue, driver side [VIRTIO-1.2 §2.7]: the layout of the
//! descriptor table, available ring and used ring; the free-descriptor
//! list; adding descriptor chains, publishing them, and collecting used
//! elements.
//!
//! It owns the driver's shadow state (free list, chain lengths, ring
//! indices) and reaches the shared rings only through [`QueueMemory`]. It
//! never trusts what the device writes: a used element naming a
//! descriptor that is not the head of a chain in flight, or a used index
//! running ahead of what was made available, is an error, never a panic
//! or a double free. It never follows `next` links in device-writable
//! memory.

use abi::Iova;
use alloc::vec;
use alloc::vec::Vec;

/// Largest split queue size [VIRTIO-1.2 §2.7: "Queue Size ... 32768"].
pub const MAX_QUEUE_SIZE: u16 = 32768;

/// The queue size to set up for a device that offers at most
/// `device_max`: the largest power of two it allows, at most `want`
/// [VIRTIO-1.2 §4.1.5.1.3: the driver may use a smaller size]. `None` if
/// the device has no such queue (`device_max` 0).
pub fn fit_size(device_max: u16, want: u16) -> Option<u16> {
    if device_max == 0 {
        return None;
    }
    let max = 1u16 << (15 - device_max.leading_zeros().min(15));
    Some(max.min(want))
}

/// `struct virtq_desc`: 16 bytes, 16-byte aligned [VIRTIO-1.2 §2.7.5].
pub mod desc {
    /// `addr` (le64): device address of the buffer (an IOVA).
    pub const ADDR: u64 = 0;
    /// `len` (le32).
    pub const LEN: u64 = 8;
    /// `flags` (le16).
    pub const FLAGS: u64 = 12;
    /// `next` (le16): the following descriptor when `F_NEXT` is set.
    pub const NEXT: u64 = 14;
    /// Bytes per descriptor.
    pub const BYTES: u64 = 16;
    /// Alignment of the table.
    pub const ALIGN: u64 = 16;
    /// The chain continues in `next`.
    pub const F_NEXT: u16 = 1;
    /// The device writes this buffer (otherwise it reads it).
    pub const F_WRITE: u16 = 2;
    /// The buffer is a table of indirect descriptors.
    pub const F_INDIRECT: u16 = 4;
}

/// `struct virtq_avail` [VIRTIO-1.2 §2.7.6].
pub mod avail {
    /// `flags` (le16).
    pub const FLAGS: u64 = 0;
    /// `idx` (le16): where the driver puts the next entry (mod size).
    pub const IDX: u64 = 2;
    /// `ring[size]` (le16 each): chain heads.
    pub const RING: u64 = 4;
    /// Bytes per ring entry.
    pub const ENTRY: u64 = 2;
    /// Bytes besides the ring: flags, idx, used_event.
    pub const FIXED: u64 = 6;
    /// Alignment.
    pub const ALIGN: u64 = 2;
    /// `flags`: the driver does not want interrupts.
    pub const F_NO_INTERRUPT: u16 = 1;
}

/// `struct virtq_used` [VIRTIO-1.2 §2.7.8].
pub mod used {
    /// `flags` (le16).
    pub const FLAGS: u64 = 0;
    /// `idx` (le16): where the device puts the next element (mod size).
    pub const IDX: u64 = 2;
    /// `ring[size]` of `struct virtq_used_elem`.
    pub const RING: u64 = 4;
    /// `virtq_used_elem.id` (le32): head of the used chain.
    pub const ELEM_ID: u64 = 0;
    /// `virtq_used_elem.len` (le32): bytes the device wrote.
    pub const ELEM_LEN: u64 = 4;
    /// Bytes per element.
    pub const ELEM: u64 = 8;
    /// Bytes besides the ring: flags, idx, avail_event.
    pub const FIXED: u64 = 6;
    /// Alignment.
    pub const ALIGN: u64 = 4;
    /// `flags`: the device does not want notifications.
    pub const F_NO_NOTIFY: u16 = 1;
}

const fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// Where a queue of `size` entries lives in its memory
/// [VIRTIO-1.2 §2.7 "Virtqueue alignment"].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Queue size (a power of two).
    pub size: u16,
    /// Offset of the descriptor table.
    pub desc: u64,
    /// Offset of the available ring.
    pub avail: u64,
    /// Offset of the used ring.
    pub used: u64,
    /// First byte after the used ring.
    pub end: u64,
}

impl Layout {
    /// The layout of a queue of `size` entries starting at `base` (rounded
    /// up to the table's alignment). `None` unless `size` is a power of
    /// two no larger than [`MAX_QUEUE_SIZE`]: 16-bit free-running ring
    /// indices need the size to divide 2^16.
    pub fn new(base: u64, size: u16) -> Option<Layout> {
        if !size.is_power_of_two() || size > MAX_QUEUE_SIZE {
            return None;
        }
        let n = u64::from(size);
        let desc = align_up(base, desc::ALIGN);
        let avail = align_up(desc + desc::BYTES * n, avail::ALIGN);
        let used = align_up(avail + avail::FIXED + avail::ENTRY * n, used::ALIGN);
        let end = used + used::FIXED + used::ELEM * n;
        Some(Layout {
            size,
            desc,
            avail,
            used,
            end,
        })
    }

    fn desc_at(&self, i: u16) -> u64 {
        self.desc + desc::BYTES * u64::from(i)
    }

    fn avail_entry(&self, idx: u16) -> u64 {
        self.avail + avail::RING + avail::ENTRY * u64::from(idx % self.size)
    }

    fn used_elem(&self, idx: u16) -> u64 {
        self.used + used::RING + used::ELEM * u64::from(idx % self.size)
    }
}

/// The memory holding a queue, shared with the device: scalar
/// little-endian accesses at byte offsets (always in range: the queue
/// checks the length once), and the barriers the ring protocol needs.
pub trait QueueMemory {
    /// Bytes of memory.
    fn len(&self) -> u64;
    /// Whether it is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Loads a byte.
    fn read_u8(&self, offset: u64) -> u8;
    /// Loads a le16.
    fn read_u16(&self, offset: u64) -> u16;
    /// Loads a le32.
    fn read_u32(&self, offset: u64) -> u32;
    /// Stores a byte.
    fn write_u8(&mut self, offset: u64, v: u8);
    /// Stores a le16.
    fn write_u16(&mut self, offset: u64, v: u16);
    /// Stores a le32.
    fn write_u32(&mut self, offset: u64, v: u32);
    /// Stores a le64.
    fn write_u64(&mut self, offset: u64, v: u64);
    /// Every store before is visible to the device before any store after
    /// [VIRTIO-1.2 §2.7.13.3.1: descriptors and ring entries before idx;
    /// idx before the notification].
    fn publish_barrier(&mut self);
    /// No load after is satisfied before the loads before (the used index
    /// before the used elements and what they describe) [§2.7.14].
    fn consume_barrier(&self);
}

/// One buffer of a chain: device address, length, and who writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// Device address (an IOVA the IOMMU server returned).
    pub iova: Iova,
    /// Bytes.
    pub len: u32,
    /// The device writes it (otherwise it only reads it).
    pub device_writes: bool,
}

/// A used element: the chain `head` is back, the device wrote `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Used {
    /// Head descriptor of the chain (as [`Virtqueue::add`] returned it).
    pub head: u16,
    /// Bytes the device reports having written.
    pub len: u32,
}

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The memory is too small for the layout.
    MemoryTooSmall,
    /// A chain needs at least one buffer.
    EmptyChain,
    /// Not enough free descriptors for the chain.
    NoDescriptors,
    /// The device returned an id that is not a chain head in flight.
    BadUsedId(u32),
    /// The device's used index ran ahead of the chains in flight.
    UsedIndexAhead,
}

/// Driver state of one split virtqueue. The ring memory is passed to each
/// call, so the caller keeps owning it.
#[derive(Debug)]
pub struct Virtqueue {
    layout: Layout,
    /// Shadow of each descriptor's `next`: the free list and the chains in
    /// flight (never read back from device-writable memory).
    next: Vec<u16>,
    /// Per descriptor: the length of the chain it heads while in flight,
    /// 0 otherwise.
    chain_len: Vec<u16>,
    free_head: u16,
    num_free: u16,
    in_flight: u16,
    /// Next available index to fill.
    avail_idx: u16,
    /// Next used index to consume.
    last_used: u16,
}

impl Virtqueue {
    /// A fresh queue in `mem` at `layout` (both rings zeroed: indices 0,
    /// interrupts wanted) [VIRTIO-1.2 §2.7.13].
    pub fn new(layout: Layout, mem: &mut impl QueueMemory) -> Result<Virtqueue, QueueError> {
        if mem.len() < layout.end {
            return Err(QueueError::MemoryTooSmall);
        }
        let n = layout.size;
        for off in layout.avail..layout.end {
            mem.write_u8(off, 0);
        }
        Ok(Virtqueue {
            layout,
            next: (1..=n).map(|i| i % n).collect(),
            chain_len: vec![0; usize::from(n)],
            free_head: 0,
            num_free: n,
            in_flight: 0,
            avail_idx: 0,
            last_used: 0,
        })
    }

    /// Its layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Free descriptors.
    pub fn num_free(&self) -> u16 {
        self.num_free
    }

    /// Chains the device holds.
    pub fn in_flight(&self) -> u16 {
        self.in_flight
    }

    /// The head the next [`Virtqueue::add`] will return, if a descriptor
    /// is free: lets the caller place per-request memory by head before
    /// adding the chain that points at it.
    pub fn next_head(&self) -> Option<u16> {
        (self.num_free > 0).then_some(self.free_head)
    }

    /// Writes a chain of `bufs` into free descriptors and puts its head in
    /// the available ring, not yet visible to the device (see
    /// [`Virtqueue::publish`]) [VIRTIO-1.2 §2.7.13.1, §2.7.13.2]. Returns
    /// the head. All or nothing.
    pub fn add(&mut self, mem: &mut impl QueueMemory, bufs: &[Buffer]) -> Result<u16, QueueError> {
        if bufs.is_empty() {
            return Err(QueueError::EmptyChain);
        }
        if bufs.len() > usize::from(self.num_free) {
            return Err(QueueError::NoDescriptors);
        }
        let head = self.free_head;
        let mut i = head;
        for (k, b) in bufs.iter().enumerate() {
            let at = self.layout.desc_at(i);
            let last = k + 1 == bufs.len();
            let mut flags = if b.device_writes { desc::F_WRITE } else { 0 };
            if !last {
                flags |= desc::F_NEXT;
            }
            mem.write_u64(at + desc::ADDR, b.iova.get());
            mem.write_u32(at + desc::LEN, b.len);
            mem.write_u16(at + desc::FLAGS, flags);
            mem.write_u16(
                at + desc::NEXT,
                if last { 0 } else { self.next[usize::from(i)] },
            );
            if !last {
                i = self.next[usize::from(i)];
            }
        }
        // `bufs.len() <= num_free <= size <= 32768`: fits.
        let n = bufs.len() as u16;
        self.free_head = self.next[usize::from(i)];
        self.num_free -= n;
        self.chain_len[usize::from(head)] = n;
        self.in_flight += 1;
        mem.write_u16(self.layout.avail_entry(self.avail_idx), head);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        Ok(head)
    }

    /// Makes every chain added so far visible to the device: a barrier, then
    /// the available index, then a barrier so that the index is visible
    /// before the caller's notification [VIRTIO-1.2 §2.7.13.3, §2.7.13.4].
    pub fn publish(&mut self, mem: &mut impl QueueMemory) {
        mem.publish_barrier();
        mem.write_u16(self.layout.avail + avail::IDX, self.avail_idx);
        mem.publish_barrier();
    }

    /// The next used element, if the device returned one, with its chain's
    /// descriptors back on the free list [VIRTIO-1.2 §2.7.14].
    pub fn pop_used(&mut self, mem: &mut impl QueueMemory) -> Result<Option<Used>, QueueError> {
        let device_idx = mem.read_u16(self.layout.used + used::IDX);
        let pending = device_idx.wrapping_sub(self.last_used);
        if pending == 0 {
            return Ok(None);
        }
        if pending > self.in_flight {
            return Err(QueueError::UsedIndexAhead);
        }
        mem.consume_barrier();
        let at = self.layout.used_elem(self.last_used);
        let id = mem.read_u32(at + used::ELEM_ID);
        let len = mem.read_u32(at + used::ELEM_LEN);
        let head = u16::try_from(id)
            .ok()
            .filter(|&h| h < self.layout.size && self.chain_len[usize::from(h)] != 0)
            .ok_or(QueueError::BadUsedId(id))?;
        self.last_used = self.last_used.wrapping_add(1);
        self.recycle(head);
        Ok(Some(Used { head, len }))
    }

    /// Puts the chain headed by `head` back on the free list.
    fn recycle(&mut self, head: u16) {
        let n = core::mem::take(&mut self.chain_len[usize::from(head)]);
        let mut tail = head;
        for _ in 1..n {
            tail = self.next[usize::from(tail)];
        }
        self.next[usize::from(tail)] = self.free_head;
        self.free_head = head;
        self.num_free += n;
        self.in_flight -= 1;
    }
}

/// A `Vec<u8>` as queue memory, for host tests and models (feature
/// `testmem` for other crates' tests).
#[cfg(any(test, feature = "testmem"))]
pub mod testmem {
    use alloc::vec;
    use alloc::vec::Vec;

    use super::QueueMemory;

    /// Plain memory; barriers are counted.
    #[derive(Debug, Default)]
    pub struct VecMem {
        /// The bytes.
        pub bytes: Vec<u8>,
        /// Publish barriers issued.
        pub publishes: usize,
    }

    impl VecMem {
        /// `len` zero bytes.
        pub fn new(len: u64) -> Self {
            Self {
                bytes: vec![0; len as usize],
                publishes: 0,
            }
        }
        fn get<const N: usize>(&self, off: u64) -> [u8; N] {
            let o = off as usize;
            self.bytes[o..o + N].try_into().unwrap()
        }
        fn put(&mut self, off: u64, b: &[u8]) {
            let o = off as usize;
            self.bytes[o..o + b.len()].copy_from_slice(b);
        }
        /// Loads a le64 (the device side of tests).
        pub fn read_u64(&self, off: u64) -> u64 {
            u64::from_le_bytes(self.get(off))
        }
    }

    impl QueueMemory for VecMem {
        fn len(&self) -> u64 {
            self.bytes.len() as u64
        }
        fn read_u8(&self, off: u64) -> u8 {
            self.bytes[off as usize]
        }
        fn read_u16(&self, off: u64) -> u16 {
            u16::from_le_bytes(self.get(off))
        }
        fn read_u32(&self, off: u64) -> u32 {
            u32::from_le_bytes(self.get(off))
        }
        fn write_u8(&mut self, off: u64, v: u8) {
            self.bytes[off as usize] = v;
        }
        fn write_u16(&mut self, off: u64, v: u16) {
            self.put(off, &v.to_le_bytes());
        }
        fn write_u32(&mut self, off: u64, v: u32) {
            self.put(off, &v.to_le_bytes());
        }
        fn write_u64(&mut self, off: u64, v: u64) {
            self.put(off, &v.to_le_bytes());
        }
        fn publish_barrier(&mut self) {
            self.publishes += 1;
        }
        fn consume_barrier(&self) {}
    }
}

#[cfg(test)]
mod tests {
    use super::testmem::VecMem;
    use super::*;

    #[test]
    fn fit_size_is_the_devices_power_of_two_at_most_wanted() {
        assert_eq!(fit_size(256, 64), Some(64));
        assert_eq!(fit_size(100, 128), Some(64));
        assert_eq!(fit_size(u16::MAX, u16::MAX), Some(32768));
        assert_eq!(fit_size(0, 64), None);
    }
    use proptest::prelude::*;
    use std::collections::{BTreeSet, VecDeque};

    /// The device side: consumes the available ring, walks chains through
    /// the descriptor table as a device would, returns them in any order.
    struct FakeDevice {
        layout: Layout,
        last_avail: u16,
        used_idx: u16,
        /// Chains taken: (head, descriptors, buffers).
        held: Vec<(u16, Vec<u16>, Vec<Buffer>)>,
    }

    impl FakeDevice {
        fn new(layout: Layout, start: u16) -> Self {
            Self {
                layout,
                last_avail: start,
                used_idx: start,
                held: Vec::new(),
            }
        }

        fn take_available(&mut self, mem: &VecMem) {
            let idx = mem.read_u16(self.layout.avail + avail::IDX);
            while self.last_avail != idx {
                let head = mem.read_u16(self.layout.avail_entry(self.last_avail));
                self.last_avail = self.last_avail.wrapping_add(1);
                let (mut descs, mut bufs) = (Vec::new(), Vec::new());
                let mut i = head;
                loop {
                    let at = self.layout.desc_at(i);
                    let flags = mem.read_u16(at + desc::FLAGS);
                    descs.push(i);
                    bufs.push(Buffer {
                        iova: Iova::new(mem.read_u64(at + desc::ADDR)),
                        len: mem.read_u32(at + desc::LEN),
                        device_writes: flags & desc::F_WRITE != 0,
                    });
                    if flags & desc::F_NEXT == 0 {
                        break;
                    }
                    i = mem.read_u16(at + desc::NEXT);
                    assert!(
                        descs.len() <= usize::from(self.layout.size),
                        "looping chain"
                    );
                }
                self.held.push((head, descs, bufs));
            }
        }

        fn complete(&mut self, mem: &mut VecMem, pick: usize) -> u16 {
            let (head, _, bufs) = self.held.remove(pick % self.held.len());
            let at = self.layout.used_elem(self.used_idx);
            mem.write_u32(at + used::ELEM_ID, u32::from(head));
            mem.write_u32(at + used::ELEM_LEN, bufs[0].len);
            self.used_idx = self.used_idx.wrapping_add(1);
            mem.write_u16(self.layout.used + used::IDX, self.used_idx);
            head
        }
    }

    /// A queue and device whose indices both start at `start` (as if
    /// `start` requests had already gone through).
    fn setup(size: u16, start: u16) -> (Virtqueue, VecMem, FakeDevice) {
        let layout = Layout::new(0, size).unwrap();
        let mut mem = VecMem::new(layout.end);
        let mut q = Virtqueue::new(layout, &mut mem).unwrap();
        q.avail_idx = start;
        q.last_used = start;
        mem.write_u16(layout.avail + avail::IDX, start);
        mem.write_u16(layout.used + used::IDX, start);
        (q, mem, FakeDevice::new(layout, start))
    }

    #[test]
    fn layout_matches_spec() {
        let l = Layout::new(0, 256).unwrap();
        assert_eq!(
            (l.desc, l.avail, l.used, l.end),
            (0, 4096, 4616, 4616 + 6 + 2048)
        );
        let l = Layout::new(3, 4).unwrap();
        assert_eq!((l.desc, l.avail, l.used, l.end), (16, 80, 96, 134));
        assert_eq!(Layout::new(0, 3), None);
        assert_eq!(Layout::new(0, 0), None);
    }

    #[test]
    fn chain_is_written_as_added() {
        let (mut q, mut mem, mut dev) = setup(8, 0);
        let bufs = [
            Buffer {
                iova: Iova::new(0x1000),
                len: 16,
                device_writes: false,
            },
            Buffer {
                iova: Iova::new(0x2000),
                len: 4096,
                device_writes: true,
            },
            Buffer {
                iova: Iova::new(0x3000),
                len: 1,
                device_writes: true,
            },
        ];
        let predicted = q.next_head();
        let head = q.add(&mut mem, &bufs).unwrap();
        assert_eq!(predicted, Some(head));
        dev.take_available(&mem);
        assert!(dev.held.is_empty(), "visible before publish");
        q.publish(&mut mem);
        assert_eq!(mem.publishes, 2);
        dev.take_available(&mem);
        assert_eq!(dev.held[0].0, head);
        assert_eq!(dev.held[0].2, bufs);
        assert_eq!(q.num_free(), 5);
        assert_eq!(q.pop_used(&mut mem), Ok(None));
        dev.complete(&mut mem, 0);
        assert_eq!(q.pop_used(&mut mem), Ok(Some(Used { head, len: 16 })));
        assert_eq!(q.num_free(), 8);
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let (mut q, mut mem, _) = setup(4, 0);
        let b = Buffer {
            iova: Iova::new(0),
            len: 1,
            device_writes: false,
        };
        assert_eq!(q.add(&mut mem, &[]), Err(QueueError::EmptyChain));
        assert_eq!(q.add(&mut mem, &[b; 5]), Err(QueueError::NoDescriptors));
        q.add(&mut mem, &[b; 3]).unwrap();
        assert_eq!(q.add(&mut mem, &[b; 2]), Err(QueueError::NoDescriptors));
        assert_eq!(q.num_free(), 1);
        let layout = Layout::new(0, 4).unwrap();
        let mut small = VecMem::new(layout.end - 1);
        assert_eq!(
            Virtqueue::new(layout, &mut small).unwrap_err(),
            QueueError::MemoryTooSmall
        );
    }

    #[test]
    fn hostile_used_ring_is_refused() {
        let (mut q, mut mem, mut dev) = setup(8, 0);
        let b = Buffer {
            iova: Iova::new(0),
            len: 1,
            device_writes: false,
        };
        let head = q.add(&mut mem, &[b; 2]).unwrap();
        q.publish(&mut mem);
        dev.take_available(&mem);
        // Index ahead of what is in flight.
        mem.write_u16(q.layout.used + used::IDX, 2);
        assert_eq!(q.pop_used(&mut mem), Err(QueueError::UsedIndexAhead));
        // A non-head descriptor (the chain's second).
        mem.write_u16(q.layout.used + used::IDX, 1);
        mem.write_u32(q.layout.used_elem(0) + used::ELEM_ID, u32::from(head) + 1);
        assert_eq!(q.pop_used(&mut mem), Err(QueueError::BadUsedId(1)));
        mem.write_u32(q.layout.used_elem(0) + used::ELEM_ID, 99);
        assert_eq!(q.pop_used(&mut mem), Err(QueueError::BadUsedId(99)));
        assert_eq!(q.num_free(), 6, "nothing recycled by bad elements");
        mem.write_u32(q.layout.used_elem(0) + used::ELEM_ID, u32::from(head));
        assert_eq!(q.pop_used(&mut mem).unwrap().unwrap().head, head);
        // The same head again: no longer in flight.
        mem.write_u16(q.layout.used + used::IDX, 2);
        assert_eq!(q.pop_used(&mut mem), Err(QueueError::UsedIndexAhead));
        assert_eq!(q.num_free(), 8);
    }

    /// The fence, on the ring side: a chain the driver gave up on (its
    /// request timed out) keeps its head and descriptors, which point at
    /// its header, data buffer and status byte, until the device returns
    /// it; no new chain can be built on them meanwhile.
    #[test]
    fn given_up_chain_keeps_its_descriptors_until_used() {
        let (mut q, mut mem, mut dev) = setup(8, 0);
        let late = Buffer {
            iova: Iova::new(0xdead_0000),
            len: 4096,
            device_writes: true,
        };
        let fenced = q.add(&mut mem, &[late; 3]).unwrap();
        q.publish(&mut mem);
        dev.take_available(&mem);
        let fenced_descs: BTreeSet<u16> = dev.held[0].1.iter().copied().collect();
        // The driver gives up on it and goes on with new chains.
        let fresh = Buffer {
            iova: Iova::new(0x1000),
            len: 512,
            device_writes: true,
        };
        let mut others = Vec::new();
        while let Ok(h) = q.add(&mut mem, &[fresh]) {
            assert_ne!(h, fenced);
            others.push(h);
        }
        assert_eq!(others.len(), 5, "the fenced chain's 3 descriptors stay out");
        q.publish(&mut mem);
        dev.take_available(&mem);
        for (_, descs, _) in &dev.held[1..] {
            assert!(descs.iter().all(|d| !fenced_descs.contains(d)));
        }
        // The others complete and are reused; the fenced chain is never
        // rewritten.
        for _ in 0..others.len() {
            dev.complete(&mut mem, 1);
            let u = q.pop_used(&mut mem).unwrap().unwrap();
            assert_ne!(u.head, fenced);
        }
        for _ in 0..20 {
            let h = q.add(&mut mem, &[fresh; 2]).unwrap();
            assert!(!fenced_descs.contains(&h));
            q.publish(&mut mem);
            dev.take_available(&mem);
            dev.complete(&mut mem, 1);
            assert_eq!(q.pop_used(&mut mem).unwrap().unwrap().head, h);
        }
        assert_eq!(dev.held[0].2, [late; 3], "the late chain is as built");
        assert_eq!(q.num_free(), 5);
        // Its late used entry frees it.
        dev.complete(&mut mem, 0);
        assert_eq!(q.pop_used(&mut mem).unwrap().unwrap().head, fenced);
        assert_eq!(q.num_free(), 8);
    }

    #[test]
    fn indices_wrap_over_many_requests() {
        let (mut q, mut mem, mut dev) = setup(4, 0);
        let b = Buffer {
            iova: Iova::new(0x1000),
            len: 8,
            device_writes: true,
        };
        for round in 0..70_000u32 {
            let n = 1 + (round % 3) as usize;
            let head = q.add(&mut mem, &vec![b; n]).unwrap();
            q.publish(&mut mem);
            dev.take_available(&mem);
            dev.complete(&mut mem, 0);
            assert_eq!(q.pop_used(&mut mem).unwrap().unwrap().head, head);
            assert_eq!(q.num_free(), 4);
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// Add a chain of this many buffers (with this address tag).
        Add(usize, u64),
        /// The device completes one of the chains it holds.
        Complete(usize),
        /// The driver collects used elements.
        Collect,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (1usize..=5, any::<u64>()).prop_map(|(n, t)| Op::Add(n, t)),
            2 => any::<usize>().prop_map(Op::Complete),
            1 => Just(Op::Collect),
        ]
    }

    proptest! {
        /// Against a reference model: no descriptor is ever in two chains
        /// or lost, every chain comes back exactly once with the buffers it
        /// was added with, and 16-bit indices wrap (runs start near 2^16).
        #[test]
        fn never_loses_or_double_uses(
            size_log in 1u32..=5,
            start in prop_oneof![Just(0u16), 65_500u16..=u16::MAX],
            ops in proptest::collection::vec(op(), 1..300),
        ) {
            let size = 1u16 << size_log;
            let (mut q, mut mem, mut dev) = setup(size, start);
            // Driver's model: head -> buffers, in flight.
            let mut model: std::collections::BTreeMap<u16, Vec<Buffer>> = Default::default();
            let mut returned: VecDeque<u16> = VecDeque::new();
            for op in ops {
                match op {
                    Op::Add(n, tag) => {
                        let bufs: Vec<Buffer> = (0..n).map(|k| Buffer {
                            iova: Iova::new(tag.wrapping_add(k as u64)),
                            len: k as u32 + 1,
                            device_writes: (tag >> k) & 1 == 1,
                        }).collect();
                        let free = q.num_free();
                        let predicted = q.next_head();
                        match q.add(&mut mem, &bufs) {
                            Ok(head) => {
                                prop_assert_eq!(predicted, Some(head));
                                prop_assert!(n <= usize::from(free));
                                prop_assert!(model.insert(head, bufs).is_none(), "head reused");
                            }
                            Err(e) => {
                                prop_assert_eq!(e, QueueError::NoDescriptors);
                                prop_assert!(n > usize::from(free));
                                prop_assert_eq!(q.num_free(), free);
                            }
                        }
                        q.publish(&mut mem);
                        dev.take_available(&mem);
                    }
                    Op::Complete(pick) if !dev.held.is_empty() => {
                        returned.push_back(dev.complete(&mut mem, pick));
                    }
                    Op::Complete(_) => {}
                    Op::Collect => {
                        while let Some(u) = q.pop_used(&mut mem).unwrap() {
                            prop_assert_eq!(Some(u.head), returned.pop_front());
                            prop_assert!(model.remove(&u.head).is_some());
                        }
                        prop_assert!(returned.is_empty());
                    }
                }
                // Chains the device holds are disjoint and match the model.
                let mut seen = BTreeSet::new();
                for (head, descs, bufs) in &dev.held {
                    prop_assert_eq!(model.get(head), Some(bufs));
                    for d in descs {
                        prop_assert!(seen.insert(*d), "descriptor {} in two chains", d);
                    }
                }
                let held_or_returned: usize = model.values().map(Vec::len).sum();
                prop_assert_eq!(usize::from(q.num_free()) + held_or_returned, usize::from(size));
                prop_assert_eq!(usize::from(q.in_flight()), model.len());
            }
        }
    }
}
