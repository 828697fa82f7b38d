//! Structural check of a flattened device tree before any parser walks it.
//!
//! It owns the rules that make the `fdt` crate's walkers panic-free: header
//! offsets inside the blob, balanced nodes no deeper than [`MAX_DEPTH`],
//! properties inside the structure block with names inside the strings block,
//! properties before child nodes, no NOP tokens, a single root. It must never
//! interpret properties beyond that, and never panic on any input.

use super::DtError;

/// Deepest node nesting accepted (the `fdt` crate keeps 64 parents).
pub const MAX_DEPTH: usize = 32;

const MAGIC: u32 = 0xd00d_feed;
const HEADER_LEN: usize = 40;
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;

/// The header fields this crate uses, after range checks.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    /// Total size of the blob in bytes.
    pub total_size: usize,
    /// Offset of the memory-reservation block.
    pub rsvmap: usize,
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads the total size from the first 40 bytes, checking magic and version.
pub fn header(blob: &[u8]) -> Result<Header, DtError> {
    if blob.len() < HEADER_LEN {
        return Err(DtError::Truncated);
    }
    let field = |i: usize| be32(blob, i * 4).ok_or(DtError::Truncated);
    if field(0)? != MAGIC {
        return Err(DtError::BadMagic);
    }
    let total_size = field(1)? as usize;
    let version = field(5)?;
    let last_comp = field(6)?;
    if version < 17 || last_comp > 17 {
        return Err(DtError::BadVersion);
    }
    if total_size < HEADER_LEN {
        return Err(DtError::Malformed);
    }
    Ok(Header {
        total_size,
        rsvmap: field(4)? as usize,
    })
}

/// Checks the whole blob (which must be exactly `total_size` long).
pub fn check(blob: &[u8]) -> Result<Header, DtError> {
    let hdr = header(blob)?;
    if blob.len() != hdr.total_size {
        return Err(DtError::Truncated);
    }
    let field = |i: usize| be32(blob, i * 4).ok_or(DtError::Truncated);
    let block = |off: usize, size: usize| -> Result<&[u8], DtError> {
        let end = off.checked_add(size).ok_or(DtError::Malformed)?;
        blob.get(off..end).ok_or(DtError::Malformed)
    };
    let off_struct = field(2)? as usize;
    if !off_struct.is_multiple_of(4) {
        return Err(DtError::Malformed);
    }
    let structs = block(off_struct, field(9)? as usize)?;
    let strings = block(field(3)? as usize, field(8)? as usize)?;
    if !hdr.rsvmap.is_multiple_of(8) || hdr.rsvmap.checked_add(16).is_none_or(|e| e > blob.len()) {
        return Err(DtError::Malformed);
    }
    walk(structs, strings)?;
    Ok(hdr)
}

/// A NUL-terminated UTF-8 string starting at `at`, and its length without NUL.
fn cstr(bytes: &[u8], at: usize) -> Result<&str, DtError> {
    let rest = bytes.get(at..).ok_or(DtError::Malformed)?;
    let len = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or(DtError::Malformed)?;
    core::str::from_utf8(&rest[..len]).map_err(|_| DtError::Malformed)
}

fn align4(n: usize) -> Option<usize> {
    Some(n.checked_add(3)? & !3)
}

fn walk(structs: &[u8], strings: &[u8]) -> Result<(), DtError> {
    // `has_children[d]`: the node open at depth d has had a child already.
    let mut has_children = [false; MAX_DEPTH + 1];
    let mut depth = 0usize;
    let mut root_closed = false;
    let mut pos = 0usize;
    loop {
        let token = be32(structs, pos).ok_or(DtError::Malformed)?;
        pos += 4;
        if root_closed && token != END {
            return Err(DtError::Malformed);
        }
        match token {
            BEGIN_NODE => {
                let name = cstr(structs, pos)?;
                if depth == 0 && (!name.is_empty() || pos != 4) {
                    return Err(DtError::Malformed);
                }
                if depth >= MAX_DEPTH {
                    return Err(DtError::TooDeep);
                }
                has_children[depth] = true;
                depth += 1;
                has_children[depth] = false;
                pos = align4(pos + name.len() + 1).ok_or(DtError::Malformed)?;
            }
            PROP => {
                if depth == 0 || has_children[depth] {
                    return Err(DtError::Malformed);
                }
                let len = be32(structs, pos).ok_or(DtError::Malformed)? as usize;
                let name_off = be32(structs, pos + 4).ok_or(DtError::Malformed)? as usize;
                pos += 8;
                let end = pos.checked_add(len).ok_or(DtError::Malformed)?;
                if end > structs.len() {
                    return Err(DtError::Malformed);
                }
                let name = cstr(strings, name_off)?;
                if matches!(name, "#address-cells" | "#size-cells") && len != 4 {
                    return Err(DtError::BadProperty(name_static(name)));
                }
                pos = align4(end).ok_or(DtError::Malformed)?;
            }
            END_NODE => {
                depth = depth.checked_sub(1).ok_or(DtError::Malformed)?;
                root_closed = depth == 0;
            }
            END if root_closed => return Ok(()),
            NOP => return Err(DtError::Unsupported),
            _ => return Err(DtError::Malformed),
        }
    }
}

fn name_static(name: &str) -> &'static str {
    if name == "#address-cells" {
        "#address-cells"
    } else {
        "#size-cells"
    }
}
