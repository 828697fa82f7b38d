//! A device for host tests: it takes the single-descriptor chains the
//! driver published and returns them in any order, or returns what a
//! hostile device would.

use alloc::vec::Vec;

use virtio_core::virtqueue::testmem::VecMem;
use virtio_core::virtqueue::{Layout, QueueMemory, avail, desc, used};

/// A chain the device took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chain {
    pub head: u16,
    pub addr: u64,
    pub len: u32,
    pub device_writes: bool,
}

/// The device side of one queue.
pub struct FakeDevice {
    layout: Layout,
    seen: u16,
    used_idx: u16,
    pub pending: Vec<Chain>,
}

impl FakeDevice {
    pub fn new(layout: Layout) -> Self {
        Self {
            layout,
            seen: 0,
            used_idx: 0,
            pending: Vec::new(),
        }
    }

    /// Takes every chain published since the last call.
    pub fn take(&mut self, mem: &VecMem) {
        let l = self.layout;
        let idx = mem.read_u16(l.avail + avail::IDX);
        while self.seen != idx {
            let slot = u64::from(self.seen % l.size);
            let head = mem.read_u16(l.avail + avail::RING + avail::ENTRY * slot);
            let d = l.desc + desc::BYTES * u64::from(head);
            self.pending.push(Chain {
                head,
                addr: mem.read_u64(d + desc::ADDR),
                len: mem.read_u32(d + desc::LEN),
                device_writes: mem.read_u16(d + desc::FLAGS) & desc::F_WRITE != 0,
            });
            self.seen = self.seen.wrapping_add(1);
        }
    }

    /// Returns pending chain `i`, reporting `len` bytes written.
    pub fn complete(&mut self, mem: &mut VecMem, i: usize, len: u32) -> Chain {
        let c = self.pending.remove(i);
        self.used(mem, u32::from(c.head), len);
        c
    }

    /// Writes a used element naming `id`, whatever it is.
    pub fn used(&mut self, mem: &mut VecMem, id: u32, len: u32) {
        let l = self.layout;
        let at = l.used + used::RING + used::ELEM * u64::from(self.used_idx % l.size);
        mem.write_u32(at + used::ELEM_ID, id);
        mem.write_u32(at + used::ELEM_LEN, len);
        self.used_idx = self.used_idx.wrapping_add(1);
        mem.write_u16(l.used + used::IDX, self.used_idx);
    }
}
