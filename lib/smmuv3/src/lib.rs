//! The Arm SMMUv3 architecture's encodings (Arm IHI 0070): register offsets
//! and fields, ID-register decoding, Stream Table Entries, Context
//! Descriptors, commands, event records and queue index arithmetic.
//!
//! Everything here is a pure function from typed values to the words the
//! SMMU reads, or back. This crate owns the bit layouts and the rules the
//! architecture puts on them (alignment, legal ranges, ILLEGAL combinations).
//! It must never touch hardware: no MMIO, no DMA memory, no `unsafe`, no
//! waiting. The server's thin hardware layer does the volatile accesses with
//! the offsets and widths named in [`regs`].
//!
//! Section numbers such as `[SMMUv3 §6.3.1]` refer to the Arm System Memory
//! Management Unit Architecture Specification, SMMU architecture version 3
//! (IHI 0070).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod bits;
pub mod cd;
pub mod cmd;
pub mod evt;
pub mod idr;
pub mod queue;
pub mod regs;
pub mod ste;

use core::fmt;

/// Why a value could not be encoded: a request that the architecture makes
/// ILLEGAL, or that does not fit the field it goes in. Encoders return this
/// instead of producing an entry the SMMU would reject or misread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// An address is not aligned as its field requires, or does not fit it.
    BadAddress(&'static str),
    /// A value lies outside the range the architecture allows.
    OutOfRange(&'static str),
    /// The ID registers report a Reserved (architecturally impossible) value.
    Reserved(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadAddress(what) => write!(f, "bad address for {what}"),
            Error::OutOfRange(what) => write!(f, "{what} out of range"),
            Error::Reserved(what) => write!(f, "reserved value in {what}"),
        }
    }
}

/// Shareability of a memory access, as CR1, STE.S1CSH, CD.SH0, GBPA.SHCFG
/// and CMD_SYNC.MSH encode it (0b01 is Reserved everywhere it appears)
/// [SMMUv3 §6.3.11, §5.2, §5.4].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shareability {
    /// Non-shareable (0b00).
    NonShareable = 0b00,
    /// Outer Shareable (0b10).
    Outer = 0b10,
    /// Inner Shareable (0b11).
    Inner = 0b11,
}

impl Shareability {
    /// The 2-bit field value.
    pub const fn bits(self) -> u64 {
        self as u64
    }

    /// Decodes a 2-bit field; the Reserved 0b01 behaves as Non-shareable
    /// [SMMUv3 §6.3.11].
    pub const fn from_bits(v: u64) -> Self {
        match v & 0b11 {
            0b10 => Shareability::Outer,
            0b11 => Shareability::Inner,
            _ => Shareability::NonShareable,
        }
    }
}
