//! The host side of the boot image: lays out tables, strings and blobs as
//! the [`super`] module doc describes. It never emits an image the decoder
//! would refuse: [`BootImageBuilder::build`] parses its own output.

use alloc::string::String;
use alloc::vec::Vec;

use super::{
    BLOB_ALIGN, BootImage, CAP_LEN, CapSpec, ENDPOINT_LEN, HEADER_LEN, MAGIC, MAX_CAPS_PER_TASK,
    MAX_ENDPOINTS, MAX_TASKS, TASK_LEN, VERSION,
};
use crate::Error;
use crate::bytes::{Put, to_u32};

/// An endpoint to put in the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSpec {
    /// Unique name.
    pub name: String,
    /// Deliver `ClientDied` to the server when a caller dies.
    pub death_notices: bool,
}

/// A task to put in the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskSpec {
    /// Unique name.
    pub name: String,
    /// [`MIN_PRIORITY`](super::MIN_PRIORITY)..=[`MAX_PRIORITY`](super::MAX_PRIORITY);
    /// a higher number is more urgent.
    pub priority: u8,
    /// Restart the task when it faults or exits with an error.
    pub restart: bool,
    /// Page-table pages the kernel may take for its address space; 0: the
    /// default ([`DEFAULT_KERNEL_QUOTA_PAGES`](super::DEFAULT_KERNEL_QUOTA_PAGES)).
    pub kernel_quota_pages: u16,
    /// Pages of `dma_alloc` memory the task may hold.
    pub dma_quota_pages: u32,
    /// The ELF file.
    pub elf: Vec<u8>,
    /// The encoded info page ([`TaskInfoBuilder`](crate::TaskInfoBuilder)).
    pub info: Vec<u8>,
    /// Capabilities, in capability-index order.
    pub caps: Vec<CapSpec>,
}

/// Collects endpoints and tasks, then encodes the image.
#[derive(Clone, Debug, Default)]
pub struct BootImageBuilder {
    pub(super) endpoints: Vec<EndpointSpec>,
    pub(super) tasks: Vec<TaskSpec>,
}

impl BootImageBuilder {
    /// An empty image.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an endpoint; returns its index.
    pub fn endpoint(&mut self, spec: EndpointSpec) -> u32 {
        self.endpoints.push(spec);
        u32::try_from(self.endpoints.len() - 1).unwrap_or(u32::MAX)
    }

    /// Adds a task; returns its index.
    pub fn task(&mut self, spec: TaskSpec) -> u32 {
        self.tasks.push(spec);
        u32::try_from(self.tasks.len() - 1).unwrap_or(u32::MAX)
    }

    /// Encodes the image, refusing anything [`BootImage::parse`] would
    /// refuse.
    pub fn build(&self) -> Result<Vec<u8>, Error> {
        if self.endpoints.len() > MAX_ENDPOINTS
            || self.tasks.len() > MAX_TASKS
            || self.tasks.iter().any(|t| t.caps.len() > MAX_CAPS_PER_TASK)
        {
            return Err(Error::TooMany);
        }
        let cap_count: usize = self.tasks.iter().map(|t| t.caps.len()).sum();
        let endpoint_off = HEADER_LEN;
        let task_off = endpoint_off + self.endpoints.len() * ENDPOINT_LEN;
        let cap_off = task_off + self.tasks.len() * TASK_LEN;
        let strtab_off = cap_off + cap_count * CAP_LEN;

        let mut strtab: Vec<u8> = Vec::new();
        let mut string = |s: &str| -> Result<[u32; 2], Error> {
            let off = to_u32(strtab.len())?;
            strtab.extend_from_slice(s.as_bytes());
            Ok([off, to_u32(s.len())?])
        };
        let mut endpoints = Vec::with_capacity(self.endpoints.len() * ENDPOINT_LEN);
        for ep in &self.endpoints {
            let [off, len] = string(&ep.name)?;
            endpoints.put_u32(off);
            endpoints.put_u32(len);
            endpoints.put_u32(ep.death_notices.into());
            endpoints.put_u32(0);
        }
        let mut task_names = Vec::with_capacity(self.tasks.len());
        for task in &self.tasks {
            task_names.push(string(&task.name)?);
        }

        // Blobs follow the string table, each on a page boundary.
        let mut blobs_at = strtab_off + strtab.len();
        blobs_at = blobs_at.next_multiple_of(BLOB_ALIGN);
        let blobs_start = blobs_at;
        let mut place = |len: usize| -> Result<[u32; 2], Error> {
            let off = blobs_at;
            blobs_at = (off + len).next_multiple_of(BLOB_ALIGN);
            Ok([to_u32(off)?, to_u32(len)?])
        };
        let mut tasks = Vec::with_capacity(self.tasks.len() * TASK_LEN);
        let mut caps = Vec::with_capacity(cap_count * CAP_LEN);
        let mut first_cap = 0usize;
        for (task, [name_off, name_len]) in self.tasks.iter().zip(task_names) {
            let [elf_off, elf_len] = place(task.elf.len())?;
            let [info_off, info_len] = place(task.info.len())?;
            tasks.put_u32(name_off);
            tasks.put_u32(name_len);
            tasks.push(task.priority);
            tasks.push(if task.restart {
                super::TASK_FLAG_RESTART
            } else {
                0
            });
            tasks.put_u16(task.kernel_quota_pages);
            tasks.put_u32(task.dma_quota_pages);
            for v in [elf_off, elf_len, info_off, info_len] {
                tasks.put_u32(v);
            }
            tasks.put_u32(to_u32(first_cap)?);
            tasks.put_u32(to_u32(task.caps.len())?);
            first_cap += task.caps.len();
            for cap in &task.caps {
                caps.extend_from_slice(&cap.encode());
            }
        }
        let total = blobs_at;

        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&MAGIC);
        out.put_u16(VERSION);
        out.put_u16(u16::try_from(HEADER_LEN).map_err(|_| Error::TooLarge)?);
        out.put_u32(to_u32(total)?);
        for v in [
            strtab_off,
            strtab.len(),
            endpoint_off,
            self.endpoints.len(),
            task_off,
            self.tasks.len(),
            cap_off,
            cap_count,
        ] {
            out.put_u32(to_u32(v)?);
        }
        out.put_u32(0);
        out.extend_from_slice(&endpoints);
        out.extend_from_slice(&tasks);
        out.extend_from_slice(&caps);
        out.extend_from_slice(&strtab);
        out.resize(blobs_start, 0);
        for task in &self.tasks {
            out.extend_from_slice(&task.elf);
            out.pad_to(BLOB_ALIGN);
            out.extend_from_slice(&task.info);
            out.pad_to(BLOB_ALIGN);
        }
        debug_assert_eq!(out.len(), total);
        BootImage::parse(&out)?;
        Ok(out)
    }
}
