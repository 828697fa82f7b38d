//! The host side of the task info page: lays out header, tables and
//! strings as the [`super`] module doc describes. It never emits a page the
//! decoder would refuse: [`TaskInfoBuilder::build`] parses its own output.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::{ARG_LEN, CAP_LEN, CLIENT_LEN, Client, HEADER_LEN, MAGIC, MAX_LEN, TaskInfo, VERSION};
use crate::Error;
use crate::bytes::{Put, to_u16};

#[derive(Clone, Debug)]
struct OwnedClient {
    endpoint: String,
    badge: u32,
    name: String,
    trust: String,
}

/// Collects what one task's info page says, then encodes it.
#[derive(Clone, Debug)]
pub struct TaskInfoBuilder {
    name: String,
    index: u32,
    badge: u32,
    caps: Vec<(String, u32)>,
    args: Vec<(String, String)>,
    clients: Vec<OwnedClient>,
}

impl TaskInfoBuilder {
    /// The page of task `name`, number `index` in the boot image, whose
    /// calls carry `badge`.
    pub fn new(name: &str, index: u32, badge: u32) -> Self {
        Self {
            name: name.to_string(),
            index,
            badge,
            caps: Vec::new(),
            args: Vec::new(),
            clients: Vec::new(),
        }
    }

    /// Names capability `index`.
    pub fn cap(&mut self, name: &str, index: u32) -> &mut Self {
        self.caps.push((name.to_string(), index));
        self
    }

    /// Adds argument `key` = `value`.
    pub fn arg(&mut self, key: &str, value: &str) -> &mut Self {
        self.args.push((key.to_string(), value.to_string()));
        self
    }

    /// Adds a client of an endpoint the task serves.
    pub fn client(&mut self, client: Client<'_>) -> &mut Self {
        self.clients.push(OwnedClient {
            endpoint: client.endpoint.to_string(),
            badge: client.badge,
            name: client.name.to_string(),
            trust: client.trust.to_string(),
        });
        self
    }

    /// Encodes the page: [`Error::TooLarge`] past [`MAX_LEN`] bytes,
    /// [`Error::Duplicate`] for a repeated capability name or argument key,
    /// [`Error::BadString`] for an empty name.
    pub fn build(&self) -> Result<Vec<u8>, Error> {
        let caps_off = HEADER_LEN;
        let args_off = caps_off + self.caps.len() * CAP_LEN;
        let clients_off = args_off + self.args.len() * ARG_LEN;
        let strings_off = clients_off + self.clients.len() * CLIENT_LEN;
        let mut strings: Vec<u8> = Vec::new();
        let mut string = |s: &str, out: &mut Vec<u8>| -> Result<(), Error> {
            out.put_u16(to_u16(strings_off + strings.len())?);
            out.put_u16(to_u16(s.len())?);
            strings.extend_from_slice(s.as_bytes());
            Ok(())
        };
        let mut out = Vec::with_capacity(MAX_LEN);
        out.extend_from_slice(&MAGIC);
        out.put_u16(VERSION);
        out.put_u16(0); // total length, patched below
        out.put_u32(self.index);
        out.put_u32(self.badge);
        string(&self.name, &mut out)?;
        for (off, count) in [
            (caps_off, self.caps.len()),
            (args_off, self.args.len()),
            (clients_off, self.clients.len()),
        ] {
            out.put_u16(to_u16(off)?);
            out.put_u16(to_u16(count)?);
        }
        for (name, index) in &self.caps {
            string(name, &mut out)?;
            out.put_u32(*index);
        }
        for (key, value) in &self.args {
            string(key, &mut out)?;
            string(value, &mut out)?;
        }
        for c in &self.clients {
            string(&c.endpoint, &mut out)?;
            string(&c.name, &mut out)?;
            string(&c.trust, &mut out)?;
            out.put_u32(c.badge);
        }
        out.extend_from_slice(&strings);
        if out.len() > MAX_LEN {
            return Err(Error::TooLarge);
        }
        let total = to_u16(out.len())?.to_le_bytes();
        out[6..8].copy_from_slice(&total);
        TaskInfo::parse(&out)?;
        Ok(out)
    }
}
