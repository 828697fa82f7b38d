//! The PCI configuration header layout: register offsets and bit fields
//! [PCI Local Bus 3.0 §6.1, §6.2; PCI-to-PCI Bridge 1.2 §3.2].
//!
//! It owns the encodings only: it never performs an access, and it decodes
//! every possible register value without panicking.

use core::fmt;

/// Vendor ID (16 bits); 0xffff when no function answers.
pub const VENDOR_ID: u16 = 0x00;
/// Device ID (16 bits).
pub const DEVICE_ID: u16 = 0x02;
/// Command register (16 bits), see [`Command`].
pub const COMMAND: u16 = 0x04;
/// Status register (16 bits), see [`Status`].
pub const STATUS: u16 = 0x06;
/// Revision ID (8 bits); the class code follows in the same dword.
pub const REVISION_ID: u16 = 0x08;
/// Programming interface (8 bits).
pub const PROG_IF: u16 = 0x09;
/// Subclass (8 bits).
pub const SUBCLASS: u16 = 0x0a;
/// Base class (8 bits).
pub const CLASS: u16 = 0x0b;
/// Header type (8 bits), see [`HeaderType`].
pub const HEADER_TYPE: u16 = 0x0e;
/// First base address register; BAR n is at `BAR0 + 4 * n`.
pub const BAR0: u16 = 0x10;
/// Expansion ROM BAR of a type-0 header.
pub const ROM_BAR: u16 = 0x30;
/// Capabilities pointer (8 bits, low two bits reserved).
pub const CAP_PTR: u16 = 0x34;
/// Interrupt line (8 bits).
pub const INTERRUPT_LINE: u16 = 0x3c;
/// Interrupt pin (8 bits): 0 none, 1..4 INTA..INTD.
pub const INTERRUPT_PIN: u16 = 0x3d;
/// Primary bus number of a bridge (type 1).
pub const PRIMARY_BUS: u16 = 0x18;
/// Secondary bus number of a bridge (type 1).
pub const SECONDARY_BUS: u16 = 0x19;
/// Subordinate bus number of a bridge (type 1).
pub const SUBORDINATE_BUS: u16 = 0x1a;

/// BARs in a type-0 (endpoint) header.
pub const BARS_TYPE0: u8 = 6;
/// BARs in a type-1 (bridge) header.
pub const BARS_TYPE1: u8 = 2;

/// BAR bit 0: the BAR decodes I/O space.
pub const BAR_IO: u32 = 1 << 0;
/// Memory BAR bits 2:1: locatable anywhere in 32-bit space.
pub const BAR_MEM_TYPE_32: u32 = 0b00 << 1;
/// Memory BAR bits 2:1: below 1 MiB (legacy, treated as 32-bit).
pub const BAR_MEM_TYPE_1M: u32 = 0b01 << 1;
/// Memory BAR bits 2:1: 64-bit, the next BAR holds the high half.
pub const BAR_MEM_TYPE_64: u32 = 0b10 << 1;
/// Memory BAR bits 2:1 mask.
pub const BAR_MEM_TYPE_MASK: u32 = 0b11 << 1;
/// Memory BAR bit 3: prefetchable.
pub const BAR_PREFETCHABLE: u32 = 1 << 3;
/// Address bits of a memory BAR's low dword.
pub const BAR_MEM_ADDR_MASK: u32 = !0xf;
/// Address bits of an I/O BAR.
pub const BAR_IO_ADDR_MASK: u32 = !0x3;

/// The command register's bits [PCI 3.0 §6.2.2].
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Command(pub u16);

impl Command {
    /// Respond to I/O-space accesses.
    pub const IO: Self = Self(1 << 0);
    /// Respond to memory-space accesses.
    pub const MEM: Self = Self(1 << 1);
    /// May initiate DMA (and MSI writes).
    pub const BUS_MASTER: Self = Self(1 << 2);
    /// Legacy INTx assertion disabled.
    pub const INTX_DISABLE: Self = Self(1 << 10);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets of bits.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// `self` without the bits of `other`.
    pub const fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Command({:#06x}", self.0)?;
        for (bit, name) in [
            (Self::IO, " IO"),
            (Self::MEM, " MEM"),
            (Self::BUS_MASTER, " BM"),
            (Self::INTX_DISABLE, " INTX_DIS"),
        ] {
            if self.contains(bit) {
                f.write_str(name)?;
            }
        }
        f.write_str(")")
    }
}

/// The status register's bits used here [PCI 3.0 §6.2.3].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status(pub u16);

impl Status {
    /// A capability list is present at [`CAP_PTR`].
    pub const CAP_LIST: u16 = 1 << 4;

    /// Whether the function has a capability list.
    pub const fn has_capabilities(self) -> bool {
        self.0 & Self::CAP_LIST != 0
    }
}

/// Layout of the rest of the header (bits 6:0 of the header type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderLayout {
    /// Type 0: an endpoint, six BARs.
    #[default]
    Endpoint,
    /// Type 1: a PCI-to-PCI bridge, two BARs and bus numbers.
    Bridge,
    /// Type 2: a CardBus bridge (not configured).
    CardBus,
    /// Any other value (not configured).
    Unknown(u8),
}

/// The header-type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeaderType {
    /// Layout of bytes 0x10..0x40.
    pub layout: HeaderLayout,
    /// Bit 7: the device implements functions 1..7.
    pub multifunction: bool,
}

impl HeaderType {
    /// Decodes the header-type byte.
    pub const fn from_raw(raw: u8) -> Self {
        Self {
            layout: match raw & 0x7f {
                0 => HeaderLayout::Endpoint,
                1 => HeaderLayout::Bridge,
                2 => HeaderLayout::CardBus,
                other => HeaderLayout::Unknown(other),
            },
            multifunction: raw & 0x80 != 0,
        }
    }

    /// How many BAR slots this layout has (0 for those not configured).
    pub const fn bar_slots(self) -> u8 {
        match self.layout {
            HeaderLayout::Endpoint => BARS_TYPE0,
            HeaderLayout::Bridge => BARS_TYPE1,
            _ => 0,
        }
    }
}

/// The class-code triple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClassCode {
    /// Base class.
    pub class: u8,
    /// Subclass.
    pub subclass: u8,
    /// Programming interface.
    pub prog_if: u8,
}

impl ClassCode {
    /// Decodes the dword at [`REVISION_ID`] (revision in the low byte).
    pub const fn from_dword(dword: u32) -> Self {
        Self {
            class: (dword >> 24) as u8,
            subclass: (dword >> 16) as u8,
            prog_if: (dword >> 8) as u8,
        }
    }

    /// A short human name for the classes this system meets.
    pub const fn name(self) -> &'static str {
        match (self.class, self.subclass, self.prog_if) {
            (0x00, 0xff, _) => "unclassified",
            (0x00, _, _) => "legacy",
            (0x01, 0x00, _) => "SCSI storage",
            (0x01, 0x01, _) => "IDE storage",
            (0x01, 0x06, 0x01) => "SATA AHCI",
            (0x01, 0x08, 0x02) => "NVMe",
            (0x01, _, _) => "storage",
            (0x02, 0x00, _) => "Ethernet",
            (0x02, _, _) => "network",
            (0x03, _, _) => "display",
            (0x06, 0x00, _) => "host bridge",
            (0x06, 0x04, _) => "PCI bridge",
            (0x06, _, _) => "bridge",
            (0x0c, 0x03, 0x30) => "USB xHCI",
            (0x0c, _, _) => "serial bus",
            (0xff, _, _) => "unassigned class",
            _ => "other",
        }
    }
}

impl fmt::Display for ClassCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}.{:02x}.{:02x} {}",
            self.class,
            self.subclass,
            self.prog_if,
            self.name()
        )
    }
}
