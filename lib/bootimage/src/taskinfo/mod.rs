//! The task info page: what a task learns about itself at start, read-only
//! at [`abi::syscall::layout::TASK_INFO`] (its address is also in x0 at
//! entry). The host tool encodes one per task into the boot image; the
//! kernel only copies it; the task decodes it with [`TaskInfo::parse`].
//! This module owns the page's layout and validation; it never holds
//! capabilities or decides policy (a client's `trust` is a string for the
//! server to parse).
//!
//! # Layout
//!
//! At most [`MAX_LEN`] bytes, integers little-endian, offsets from the start
//! of the page. A string is an (offset, length) pair of `u16`s, UTF-8.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic [`MAGIC`] |
//! | 4 | 2 | version [`VERSION`] |
//! | 6 | 2 | total length, [`HEADER_LEN`]..=[`MAX_LEN`] |
//! | 8 | 4 | task index in the boot image |
//! | 12 | 4 | the task's badge (what servers see when it calls) |
//! | 16 | 4 | task name |
//! | 20 | 2 + 2 | capability table: offset, count of 8-byte entries: name (4), index `u32` |
//! | 24 | 2 + 2 | argument table: offset, count of 8-byte entries: key (4), value (4) |
//! | 28 | 2 + 2 | client table: offset, count of 16-byte entries: endpoint capability name (4), task name (4), trust (4), badge `u32` |
//!
//! Names, capability names, argument keys, client endpoint names, client
//! task names and trust strings are non-empty; argument values may be
//! empty. Capability names are unique, as are argument keys.
//!
//! `clients` lists, for every endpoint this task serves, each task holding
//! a call capability on it: the name of *this* task's serve capability for
//! that endpoint, the caller's badge, its name and its trust level.

mod encode;
#[cfg(test)]
mod tests;

pub use encode::TaskInfoBuilder;

use crate::Error;
use crate::bytes::{self, u16_at, u32_at};

/// First four bytes of every info page.
pub const MAGIC: [u8; 4] = *b"TINF";
/// The layout version this crate writes and reads.
pub const VERSION: u16 = 1;
/// Largest info page: one page.
pub const MAX_LEN: usize = abi::PAGE_SIZE as usize;
/// Bytes in the header.
pub const HEADER_LEN: usize = 32;
/// Most capability names (a task has at most this many capabilities).
pub const MAX_CAPS: usize = crate::image::MAX_CAPS_PER_TASK;
/// Most arguments.
pub const MAX_ARGS: usize = 64;

const CAP_LEN: usize = 8;
const ARG_LEN: usize = 8;
const CLIENT_LEN: usize = 16;

/// A client of an endpoint this task serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Client<'a> {
    /// Name of this task's serve capability for the endpoint.
    pub endpoint: &'a str,
    /// The client's badge: what `recv` reports for its calls.
    pub badge: u32,
    /// The client task's name.
    pub name: &'a str,
    /// Its trust level as an IOMMU client, in the system description's
    /// spelling (e.g. `strict`, `deferred:32:500`).
    pub trust: &'a str,
}

/// A validated info page, borrowed from its bytes.
#[derive(Clone, Copy, Debug)]
pub struct TaskInfo<'a> {
    bytes: &'a [u8],
    name: &'a str,
    index: u32,
    badge: u32,
    caps: &'a [u8],
    args: &'a [u8],
    clients: &'a [u8],
}

impl<'a> TaskInfo<'a> {
    /// Validates the info page at the start of `bytes` (which may be longer,
    /// e.g. the whole mapped page).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let header = bytes::range(bytes, 0, HEADER_LEN)?;
        if bytes::range(header, 0, 4)? != MAGIC {
            return Err(Error::BadMagic);
        }
        if u16_at(header, 4)? != VERSION {
            return Err(Error::BadVersion);
        }
        let total = usize::from(u16_at(header, 6)?);
        if !(HEADER_LEN..=MAX_LEN).contains(&total) {
            return Err(Error::BadLength);
        }
        let bytes = bytes::range(bytes, 0, total)?;
        let table = |off: usize, size: usize| -> Result<(&'a [u8], usize), Error> {
            let count = usize::from(u16_at(bytes, off + 2)?);
            let t = bytes::table(bytes, usize::from(u16_at(bytes, off)?), count, size)?;
            Ok((t, count))
        };
        let (caps, cap_count) = table(20, CAP_LEN)?;
        let (args, arg_count) = table(24, ARG_LEN)?;
        let (clients, _) = table(28, CLIENT_LEN)?;
        if cap_count > MAX_CAPS || arg_count > MAX_ARGS {
            return Err(Error::TooMany);
        }
        let info = Self {
            bytes,
            name: string(bytes, header, 16, false)?,
            index: u32_at(header, 8)?,
            badge: u32_at(header, 12)?,
            caps,
            args,
            clients,
        };
        info.validate()?;
        Ok(info)
    }

    fn validate(&self) -> Result<(), Error> {
        for i in 0..self.caps.len() / CAP_LEN {
            let (name, _) = self.decode_cap(i)?;
            for j in 0..i {
                if self.decode_cap(j)?.0 == name {
                    return Err(Error::Duplicate);
                }
            }
        }
        for i in 0..self.args.len() / ARG_LEN {
            let (key, _) = self.decode_arg(i)?;
            for j in 0..i {
                if self.decode_arg(j)?.0 == key {
                    return Err(Error::Duplicate);
                }
            }
        }
        for i in 0..self.clients.len() / CLIENT_LEN {
            self.decode_client(i)?;
        }
        Ok(())
    }

    fn decode_cap(&self, i: usize) -> Result<(&'a str, u32), Error> {
        let rec = bytes::record(self.caps, i, CAP_LEN)?;
        Ok((string(self.bytes, rec, 0, false)?, u32_at(rec, 4)?))
    }

    fn decode_arg(&self, i: usize) -> Result<(&'a str, &'a str), Error> {
        let rec = bytes::record(self.args, i, ARG_LEN)?;
        Ok((
            string(self.bytes, rec, 0, false)?,
            string(self.bytes, rec, 4, true)?,
        ))
    }

    fn decode_client(&self, i: usize) -> Result<Client<'a>, Error> {
        let rec = bytes::record(self.clients, i, CLIENT_LEN)?;
        Ok(Client {
            endpoint: string(self.bytes, rec, 0, false)?,
            name: string(self.bytes, rec, 4, false)?,
            trust: string(self.bytes, rec, 8, false)?,
            badge: u32_at(rec, 12)?,
        })
    }

    /// The task's name.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The task's index in the boot image.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The task's badge: what a server's `recv` reports for its calls.
    pub fn badge(&self) -> u32 {
        self.badge
    }

    /// The capability index of the capability called `name`.
    pub fn cap(&self, name: &str) -> Option<u32> {
        self.caps().find(|(n, _)| *n == name).map(|(_, i)| i)
    }

    /// Every capability name with its index, in the order of the system
    /// description.
    pub fn caps(&self) -> impl Iterator<Item = (&'a str, u32)> + use<'a> {
        let info = *self;
        (0..self.caps.len() / CAP_LEN).map_while(move |i| info.decode_cap(i).ok())
    }

    /// The value of argument `key`.
    pub fn arg(&self, key: &str) -> Option<&'a str> {
        self.args().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Every argument as (key, value).
    pub fn args(&self) -> impl Iterator<Item = (&'a str, &'a str)> + use<'a> {
        let info = *self;
        (0..self.args.len() / ARG_LEN).map_while(move |i| info.decode_arg(i).ok())
    }

    /// Every client of every endpoint this task serves.
    pub fn clients(&self) -> impl Iterator<Item = Client<'a>> + use<'a> {
        let info = *self;
        (0..self.clients.len() / CLIENT_LEN).map_while(move |i| info.decode_client(i).ok())
    }
}

/// The string whose (offset, length) `u16` pair is at `rec[at..]`.
fn string<'a>(page: &'a [u8], rec: &[u8], at: usize, allow_empty: bool) -> Result<&'a str, Error> {
    bytes::str_at(
        page,
        usize::from(u16_at(rec, at)?),
        usize::from(u16_at(rec, at + 2)?),
        MAX_LEN,
        allow_empty,
    )
}
