//! The boot image: every endpoint and task of a system, each task's ELF,
//! info page, priority, DMA quota and starting capabilities. QEMU loads it
//! into RAM; the kernel finds it through the bootargs, reserves
//! [`BootImage::total_len`] bytes, decodes it with [`BootImage::parse`] and
//! creates what it lists. This module owns the layout and every rule the
//! kernel may rely on after `parse` succeeds; it never resolves devices or
//! addresses (the kernel does, from the device tree).
//!
//! # Layout
//!
//! All integers little-endian; offsets are from the start of the image.
//!
//! Header, [`HEADER_LEN`] bytes:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic [`MAGIC`] |
//! | 4 | 2 | version [`VERSION`] |
//! | 6 | 2 | header length, [`HEADER_LEN`] |
//! | 8 | 4 | total length: every byte of the image, which the kernel keeps reserved |
//! | 12 | 4 + 4 | string table: offset, length in bytes |
//! | 20 | 4 + 4 | endpoint table: offset, count of [`ENDPOINT_LEN`]-byte records |
//! | 28 | 4 + 4 | task table: offset, count of [`TASK_LEN`]-byte records |
//! | 36 | 4 + 4 | capability table: offset, count of [`CAP_LEN`]-byte records |
//! | 44 | 4 | reserved, 0 |
//!
//! A string is an (offset, length) pair of `u32`s into the string table,
//! UTF-8, 1..=[`MAX_NAME_LEN`] bytes.
//!
//! Endpoint record: name (8), flags `u32` (bit 0: death notices, the rest
//! 0), reserved `u32` 0.
//!
//! Task record: name (8), priority `u8`, flags `u8` (bit 0: restart the
//! task when it fails), `kernel_quota_pages` `u16` (0: the default,
//! [`DEFAULT_KERNEL_QUOTA_PAGES`]), `dma_quota_pages` `u32`, ELF offset and length (`u32` each), info page
//! offset and length (`u32` each), first capability (index into the
//! capability table) and count (`u32` each). ELFs and info pages start on
//! a [`BLOB_ALIGN`] boundary of the image.
//!
//! Capability record: kind `u8`, flags `u8`, sub `u16`, a `u32`, b `u64`;
//! see [`CapSpec`] for each kind's use of them. Unused fields are 0.
//!
//! # What `parse` guarantees
//!
//! Every offset and length lies inside the image; every string is valid;
//! every endpoint and task index names one; names of tasks and of endpoints
//! are unique; every endpoint has exactly one serving capability; task
//! priorities are in [`MIN_PRIORITY`]..=[`MAX_PRIORITY`]; limits
//! [`MAX_TASKS`], [`MAX_ENDPOINTS`], [`MAX_CAPS_PER_TASK`] hold; each task's
//! info page decodes as a [`TaskInfo`] whose name and
//! index are the task's and whose capability indices lie inside the task's
//! capability list.
//!
//! # Conventions the kernel follows
//!
//! The `j`-th capability of a task's list is installed at capability index
//! `j` of that task (the info page's names refer to these indices).
//! Priorities: a higher number is more urgent.

mod encode;
#[cfg(test)]
mod tests;

pub use encode::{BootImageBuilder, EndpointSpec, TaskSpec};

use crate::bytes::{self, u8_at, u16_at, u32_at, u64_at, usize_at};
use crate::{Error, TaskInfo};

/// First four bytes of every boot image.
pub const MAGIC: [u8; 4] = *b"MKBI";
/// The layout version this crate writes and reads.
pub const VERSION: u16 = 1;
/// Bytes in the header.
pub const HEADER_LEN: usize = 48;
/// Bytes in an endpoint record.
pub const ENDPOINT_LEN: usize = 16;
/// Bytes in a task record.
pub const TASK_LEN: usize = 40;
/// Bytes in a capability record.
pub const CAP_LEN: usize = 16;
/// Alignment of every ELF and info page inside the image (one page).
pub const BLOB_ALIGN: usize = abi::PAGE_SIZE as usize;
/// Most tasks in one image.
pub const MAX_TASKS: usize = 32;
/// Most endpoints in one image.
pub const MAX_ENDPOINTS: usize = 64;
/// Most capabilities one task starts with.
pub const MAX_CAPS_PER_TASK: usize = 64;
/// Longest task or endpoint name, in bytes.
pub const MAX_NAME_LEN: usize = 32;
/// Task flag: restart the task when it fails.
pub const TASK_FLAG_RESTART: u8 = 1 << 0;
/// Page-table pages a task's address space may take when its record says
/// 0: its image, stack and info page take about ten, each `dma_alloc`
/// region and each mapped device region one per 2 MiB it spans (and one
/// more per 1 GiB, 512 GiB), so a task with a few MiB of DMA memory and a
/// few devices stays far below it.
pub const DEFAULT_KERNEL_QUOTA_PAGES: u16 = 64;

/// Least urgent task priority.
pub const MIN_PRIORITY: u8 = 1;
/// Most urgent task priority (a higher number is more urgent).
pub const MAX_PRIORITY: u8 = 15;

const KIND_ENDPOINT: u8 = 1;
const KIND_NOTIFY: u8 = 2;
const KIND_IRQ: u8 = 3;
const KIND_MMIO: u8 = 4;
const KIND_PCI: u8 = 5;
const KIND_SMMU_OWNER: u8 = 6;
const KIND_MONITOR: u8 = 7;

const IRQ_SMMU: u16 = 1;
const IRQ_PCI_INTX: u16 = 2;

/// Highest notification bit number (bits of a `u64` word).
pub const MAX_IRQ_BIT: u8 = 63;

/// One of the SMMU's wired interrupts, named as in the device tree's
/// `interrupt-names`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum SmmuIrq {
    /// Event queue non-empty (`"eventq"`).
    Eventq = 1,
    /// PRI queue non-empty (`"priq"`).
    Priq = 2,
    /// CMD_SYNC completion (`"cmdq-sync"`).
    CmdqSync = 3,
    /// Global error (`"gerror"`).
    Gerror = 4,
}

impl SmmuIrq {
    /// Every SMMU interrupt.
    pub const ALL: [SmmuIrq; 4] = [Self::Eventq, Self::Priq, Self::CmdqSync, Self::Gerror];

    /// The device tree's `interrupt-names` entry for this interrupt.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Eventq => "eventq",
            Self::Priq => "priq",
            Self::CmdqSync => "cmdq-sync",
            Self::Gerror => "gerror",
        }
    }

    /// The interrupt whose device-tree name is `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|irq| irq.name() == name)
    }

    fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|irq| *irq as u32 == code)
    }
}

/// Where an interrupt comes from; the kernel finds its INTID in the device
/// tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IrqSource {
    /// One of the SMMU's interrupts.
    Smmu(SmmuIrq),
    /// The INTx line of a PCI function, by requester ID
    /// (`bus << 8 | device << 3 | function`), through the host bridge's
    /// `interrupt-map`.
    PciIntx {
        /// Requester ID of the function.
        bdf: u16,
    },
}

/// A device register block a task may map; the kernel finds its address in
/// the device tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum MmioRegion {
    /// The SMMUv3's register block (`arm,smmu-v3`).
    Smmu = 1,
}

impl MmioRegion {
    /// Every region.
    pub const ALL: [MmioRegion; 1] = [Self::Smmu];

    /// The region's name in a system description.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Smmu => "smmu",
        }
    }

    /// The region called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }

    fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|r| *r as u16 == code)
    }
}

/// A capability a task starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CapSpec {
    /// An endpoint (record: kind 1, flags bit 0 = serve, a = endpoint
    /// index, b = badge).
    Endpoint {
        /// Index into the image's endpoint table.
        endpoint: u32,
        /// True: the serve right (receive and reply). False: the call right.
        serve: bool,
        /// What the server sees as the caller for calls made through this
        /// capability; 0 for a serve right.
        badge: u32,
    },
    /// Notifies a task (kind 2, a = task index, b = bits).
    Notify {
        /// Index into the image's task table.
        task: u32,
        /// Bits ORed into the task's notification word; never 0.
        bits: u64,
    },
    /// An interrupt delivered as notification bit `bit` of the holder
    /// (kind 3, flags = bit, sub = 1 SMMU with a = [`SmmuIrq`] code, or
    /// sub = 2 PCI INTx with a = requester ID).
    Irq {
        /// The interrupt.
        source: IrqSource,
        /// Notification bit number, 0..=[`MAX_IRQ_BIT`].
        bit: u8,
    },
    /// A device register block (kind 4, sub = [`MmioRegion`] code).
    Mmio {
        /// Which block.
        region: MmioRegion,
    },
    /// A PCI function: BAR mapping and configuration access (kind 5,
    /// a = requester ID).
    Pci {
        /// Requester ID (`bus << 8 | device << 3 | function`).
        bdf: u16,
    },
    /// The IOMMU server's mark (kind 6): may declare the SMMU enabled and
    /// receives fault-attribution data.
    SmmuOwner,
    /// A monitor's mark (kind 7): may read the kernel's frame ledger
    /// totals (`Sysno::FrameStats`).
    Monitor,
}

impl CapSpec {
    /// The record bytes.
    pub fn encode(&self) -> [u8; CAP_LEN] {
        let (kind, flags, sub, a, b): (u8, u8, u16, u32, u64) = match *self {
            Self::Endpoint {
                endpoint,
                serve,
                badge,
            } => (KIND_ENDPOINT, serve.into(), 0, endpoint, badge.into()),
            Self::Notify { task, bits } => (KIND_NOTIFY, 0, 0, task, bits),
            Self::Irq { source, bit } => match source {
                IrqSource::Smmu(irq) => (KIND_IRQ, bit, IRQ_SMMU, irq as u32, 0),
                IrqSource::PciIntx { bdf } => (KIND_IRQ, bit, IRQ_PCI_INTX, bdf.into(), 0),
            },
            Self::Mmio { region } => (KIND_MMIO, 0, region as u16, 0, 0),
            Self::Pci { bdf } => (KIND_PCI, 0, 0, bdf.into(), 0),
            Self::SmmuOwner => (KIND_SMMU_OWNER, 0, 0, 0, 0),
            Self::Monitor => (KIND_MONITOR, 0, 0, 0, 0),
        };
        let mut out = [0u8; CAP_LEN];
        out[0] = kind;
        out[1] = flags;
        out[2..4].copy_from_slice(&sub.to_le_bytes());
        out[4..8].copy_from_slice(&a.to_le_bytes());
        out[8..16].copy_from_slice(&b.to_le_bytes());
        out
    }

    /// Decodes a record, checking indices against the image's counts.
    fn decode(rec: &[u8], endpoints: usize, tasks: usize) -> Result<Self, Error> {
        let kind = u8_at(rec, 0)?;
        let flags = u8_at(rec, 1)?;
        let sub = u16_at(rec, 2)?;
        let a = u32_at(rec, 4)?;
        let b = u64_at(rec, 8)?;
        let index_ok = |i: u32, count: usize| usize::try_from(i).is_ok_and(|i| i < count);
        let cap = match kind {
            KIND_ENDPOINT => {
                if flags > 1 || sub != 0 {
                    return Err(Error::BadRecord);
                }
                if !index_ok(a, endpoints) {
                    return Err(Error::BadIndex);
                }
                let serve = flags == 1;
                let badge = u32::try_from(b).map_err(|_| Error::BadRecord)?;
                if serve && badge != 0 {
                    return Err(Error::BadRecord);
                }
                Self::Endpoint {
                    endpoint: a,
                    serve,
                    badge,
                }
            }
            KIND_NOTIFY => {
                if flags != 0 || sub != 0 || b == 0 {
                    return Err(Error::BadRecord);
                }
                if !index_ok(a, tasks) {
                    return Err(Error::BadIndex);
                }
                Self::Notify { task: a, bits: b }
            }
            KIND_IRQ => {
                if flags > MAX_IRQ_BIT || b != 0 {
                    return Err(Error::BadRecord);
                }
                let source = match sub {
                    IRQ_SMMU => IrqSource::Smmu(SmmuIrq::from_code(a).ok_or(Error::BadRecord)?),
                    IRQ_PCI_INTX => IrqSource::PciIntx {
                        bdf: u16::try_from(a).map_err(|_| Error::BadRecord)?,
                    },
                    _ => return Err(Error::BadRecord),
                };
                Self::Irq { source, bit: flags }
            }
            KIND_MMIO => {
                if flags != 0 || a != 0 || b != 0 {
                    return Err(Error::BadRecord);
                }
                Self::Mmio {
                    region: MmioRegion::from_code(sub).ok_or(Error::BadRecord)?,
                }
            }
            KIND_PCI => {
                if flags != 0 || sub != 0 || b != 0 {
                    return Err(Error::BadRecord);
                }
                Self::Pci {
                    bdf: u16::try_from(a).map_err(|_| Error::BadRecord)?,
                }
            }
            KIND_SMMU_OWNER => {
                if flags != 0 || sub != 0 || a != 0 || b != 0 {
                    return Err(Error::BadRecord);
                }
                Self::SmmuOwner
            }
            KIND_MONITOR => {
                if flags != 0 || sub != 0 || a != 0 || b != 0 {
                    return Err(Error::BadRecord);
                }
                Self::Monitor
            }
            _ => return Err(Error::BadRecord),
        };
        Ok(cap)
    }
}

/// A validated boot image, borrowed from the bytes it was parsed from.
#[derive(Clone, Copy, Debug)]
pub struct BootImage<'a> {
    bytes: &'a [u8],
    strtab: &'a [u8],
    endpoints: &'a [u8],
    tasks: &'a [u8],
    caps: &'a [u8],
    endpoint_count: usize,
    task_count: usize,
}

/// An endpoint of the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointRecord<'a> {
    /// Its index in the endpoint table.
    pub index: u32,
    /// Unique name.
    pub name: &'a str,
    /// Deliver `ClientDied` to the server when a caller dies.
    pub death_notices: bool,
}

/// A task of the image.
#[derive(Clone, Debug)]
pub struct TaskRecord<'a> {
    /// Its index in the task table.
    pub index: u32,
    /// Unique name.
    pub name: &'a str,
    /// [`MIN_PRIORITY`]..=[`MAX_PRIORITY`]; a higher number is more urgent.
    pub priority: u8,
    /// The kernel restarts the task (same capabilities, a fresh address
    /// space) when it faults or exits with an error.
    pub restart: bool,
    /// Page-table pages the kernel may take for the task's address space
    /// (never 0: a record's 0 reads as [`DEFAULT_KERNEL_QUOTA_PAGES`]).
    pub kernel_quota_pages: u16,
    /// Pages of `dma_alloc` memory the task may hold.
    pub dma_quota_pages: u32,
    /// The task's ELF file.
    pub elf: &'a [u8],
    /// Its info page (at most one page), copied to
    /// [`abi::syscall::layout::TASK_INFO`].
    pub info: &'a [u8],
    /// Its capabilities, in capability-index order.
    pub caps: Caps<'a>,
}

/// Reads the total length from the header alone, after checking the magic
/// and version: how many bytes the kernel must reserve before it has the
/// whole image in view. [`BootImage::parse`] checks everything else.
pub fn peek_total_len(bytes: &[u8]) -> Result<usize, Error> {
    let header = bytes::range(bytes, 0, HEADER_LEN)?;
    if bytes::range(header, 0, 4)? != MAGIC {
        return Err(Error::BadMagic);
    }
    if u16_at(header, 4)? != VERSION {
        return Err(Error::BadVersion);
    }
    if usize::from(u16_at(header, 6)?) != HEADER_LEN || u32_at(header, 44)? != 0 {
        return Err(Error::BadLength);
    }
    let total = usize_at(header, 8)?;
    if total < HEADER_LEN {
        return Err(Error::BadLength);
    }
    Ok(total)
}

impl<'a> BootImage<'a> {
    /// Validates the whole image at the start of `bytes` (which may be
    /// longer than the image) and returns a view of it.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let total = peek_total_len(bytes)?;
        let bytes = bytes::range(bytes, 0, total)?;
        let field = |off| usize_at(bytes, off);
        let strtab = bytes::range(bytes, field(12)?, field(16)?)?;
        let endpoint_count = field(24)?;
        let task_count = field(32)?;
        let cap_count = field(40)?;
        if endpoint_count > MAX_ENDPOINTS
            || task_count > MAX_TASKS
            || cap_count > MAX_TASKS * MAX_CAPS_PER_TASK
        {
            return Err(Error::TooMany);
        }
        let image = Self {
            bytes,
            strtab,
            endpoints: bytes::table(bytes, field(20)?, endpoint_count, ENDPOINT_LEN)?,
            tasks: bytes::table(bytes, field(28)?, task_count, TASK_LEN)?,
            caps: bytes::table(bytes, field(36)?, cap_count, CAP_LEN)?,
            endpoint_count,
            task_count,
        };
        image.validate()?;
        Ok(image)
    }

    fn validate(&self) -> Result<(), Error> {
        for i in 0..self.endpoint_count {
            let ep = self.decode_endpoint(i)?;
            for j in 0..i {
                if self.decode_endpoint(j)?.name == ep.name {
                    return Err(Error::Duplicate);
                }
            }
        }
        let mut servers = [0u8; MAX_ENDPOINTS];
        for i in 0..self.task_count {
            let task = self.decode_task(i)?;
            for j in 0..i {
                if self.decode_task(j)?.name == task.name {
                    return Err(Error::Duplicate);
                }
            }
            task.caps.check()?;
            for cap in task.caps.clone() {
                if let CapSpec::Endpoint {
                    endpoint,
                    serve: true,
                    ..
                } = cap
                {
                    let n = usize::try_from(endpoint)
                        .ok()
                        .and_then(|e| servers.get_mut(e))
                        .ok_or(Error::BadIndex)?;
                    *n = n.saturating_add(1);
                }
            }
            let info = TaskInfo::parse(task.info)?;
            if info.name() != task.name || usize::try_from(info.index()) != Ok(i) {
                return Err(Error::InfoMismatch);
            }
            let cap_count = task.caps.len();
            if info
                .caps()
                .any(|(_, index)| !usize::try_from(index).is_ok_and(|x| x < cap_count))
            {
                return Err(Error::InfoMismatch);
            }
        }
        if servers.iter().take(self.endpoint_count).any(|&n| n != 1) {
            return Err(Error::ServerCount);
        }
        Ok(())
    }

    fn string(&self, rec: &[u8], off: usize) -> Result<&'a str, Error> {
        bytes::str_at(
            self.strtab,
            usize_at(rec, off)?,
            usize_at(rec, off + 4)?,
            MAX_NAME_LEN,
            false,
        )
    }

    fn decode_endpoint(&self, i: usize) -> Result<EndpointRecord<'a>, Error> {
        let rec = bytes::record(self.endpoints, i, ENDPOINT_LEN)?;
        let flags = u32_at(rec, 8)?;
        if flags > 1 || u32_at(rec, 12)? != 0 {
            return Err(Error::BadRecord);
        }
        Ok(EndpointRecord {
            index: bytes::to_u32(i).map_err(|_| Error::BadIndex)?,
            name: self.string(rec, 0)?,
            death_notices: flags == 1,
        })
    }

    fn decode_task(&self, i: usize) -> Result<TaskRecord<'a>, Error> {
        let rec = bytes::record(self.tasks, i, TASK_LEN)?;
        let priority = u8_at(rec, 8)?;
        let flags = u8_at(rec, 9)?;
        if !(MIN_PRIORITY..=MAX_PRIORITY).contains(&priority) || flags & !TASK_FLAG_RESTART != 0 {
            return Err(Error::BadRecord);
        }
        let blob = |off: usize| -> Result<&'a [u8], Error> {
            let start = usize_at(rec, off)?;
            if !start.is_multiple_of(BLOB_ALIGN) {
                return Err(Error::BadRecord);
            }
            bytes::range(self.bytes, start, usize_at(rec, off + 4)?)
        };
        let elf = blob(16)?;
        let info = blob(24)?;
        if elf.is_empty() || info.len() > crate::taskinfo::MAX_LEN {
            return Err(Error::BadRecord);
        }
        let first = usize_at(rec, 32)?;
        let count = usize_at(rec, 36)?;
        if count > MAX_CAPS_PER_TASK {
            return Err(Error::TooMany);
        }
        let records = bytes::range(
            self.caps,
            first.checked_mul(CAP_LEN).ok_or(Error::Truncated)?,
            count * CAP_LEN,
        )?;
        Ok(TaskRecord {
            index: bytes::to_u32(i).map_err(|_| Error::BadIndex)?,
            name: self.string(rec, 0)?,
            priority,
            restart: flags & TASK_FLAG_RESTART != 0,
            kernel_quota_pages: match u16_at(rec, 10)? {
                0 => DEFAULT_KERNEL_QUOTA_PAGES,
                n => n,
            },
            dma_quota_pages: u32_at(rec, 12)?,
            elf,
            info,
            caps: Caps {
                records,
                endpoints: self.endpoint_count,
                tasks: self.task_count,
            },
        })
    }

    /// Bytes the image occupies: the kernel reserves exactly this many.
    pub fn total_len(&self) -> usize {
        self.bytes.len()
    }

    /// Number of endpoints.
    pub fn endpoint_count(&self) -> usize {
        self.endpoint_count
    }

    /// Number of tasks.
    pub fn task_count(&self) -> usize {
        self.task_count
    }

    /// Endpoint `index`, if there is one.
    pub fn endpoint(&self, index: u32) -> Option<EndpointRecord<'a>> {
        self.decode_endpoint(usize::try_from(index).ok()?).ok()
    }

    /// Task `index`, if there is one.
    pub fn task(&self, index: u32) -> Option<TaskRecord<'a>> {
        self.decode_task(usize::try_from(index).ok()?).ok()
    }

    /// Every endpoint, in index order.
    pub fn endpoints(&self) -> impl Iterator<Item = EndpointRecord<'a>> + use<'a> {
        let image = *self;
        (0..self.endpoint_count).map_while(move |i| image.decode_endpoint(i).ok())
    }

    /// Every task, in index order.
    pub fn tasks(&self) -> impl Iterator<Item = TaskRecord<'a>> + use<'a> {
        let image = *self;
        (0..self.task_count).map_while(move |i| image.decode_task(i).ok())
    }
}

/// A task's capabilities in capability-index order (every record was
/// checked by [`BootImage::parse`]).
#[derive(Clone, Debug)]
pub struct Caps<'a> {
    records: &'a [u8],
    endpoints: usize,
    tasks: usize,
}

impl Caps<'_> {
    /// Decodes every record, returning the first error.
    fn check(&self) -> Result<(), Error> {
        let mut records = self.records;
        while let Some((rec, rest)) = records.split_at_checked(CAP_LEN) {
            CapSpec::decode(rec, self.endpoints, self.tasks)?;
            records = rest;
        }
        Ok(())
    }
}

impl Iterator for Caps<'_> {
    type Item = CapSpec;

    fn next(&mut self) -> Option<CapSpec> {
        let (rec, rest) = self.records.split_at_checked(CAP_LEN)?;
        self.records = rest;
        let cap = CapSpec::decode(rec, self.endpoints, self.tasks).ok();
        if cap.is_none() {
            // Unreachable after `parse`; end rather than yield garbage.
            self.records = &[];
        }
        cap
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.records.len() / CAP_LEN;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Caps<'_> {}
