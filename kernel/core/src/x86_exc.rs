//! Decoding of x86_64 exceptions into a printable fault description: the
//! vector's name and its error code [Intel SDM Vol. 3A, 6.15 "Exception
//! and Interrupt Reference"; 4.7 "Page-Fault Exceptions"; 6.13 "Error
//! Code"].
//!
//! It owns the encodings only: it never reads CR2 or any register (the
//! kernel passes vector, error code and CR2 in), never decides what to do
//! about a fault, and decodes every value without panicking.

use core::fmt;

/// The name of exception `vector` (0..31), or `None` for an interrupt.
pub fn vector_name(vector: u64) -> Option<&'static str> {
    Some(match vector {
        0 => "divide error (#DE)",
        1 => "debug (#DB)",
        2 => "non-maskable interrupt",
        3 => "breakpoint (#BP)",
        4 => "overflow (#OF)",
        5 => "bound range exceeded (#BR)",
        6 => "invalid opcode (#UD)",
        7 => "device not available (#NM)",
        8 => "double fault (#DF)",
        9 => "coprocessor segment overrun",
        10 => "invalid TSS (#TS)",
        11 => "segment not present (#NP)",
        12 => "stack-segment fault (#SS)",
        13 => "general protection (#GP)",
        14 => "page fault (#PF)",
        16 => "x87 floating-point error (#MF)",
        17 => "alignment check (#AC)",
        18 => "machine check (#MC)",
        19 => "SIMD floating-point (#XM)",
        20 => "virtualization (#VE)",
        21 => "control protection (#CP)",
        28 => "hypervisor injection (#HV)",
        29 => "VMM communication (#VC)",
        30 => "security (#SX)",
        15 | 22..=27 | 31 => "reserved exception",
        _ => return None,
    })
}

/// The page-fault vector: its error code is a page-fault code, CR2 the
/// address.
const PAGE_FAULT: u64 = 14;

/// Exceptions whose error code is a segment selector index (6.13).
fn has_selector_error(vector: u64) -> bool {
    matches!(vector, 10..=13 | 17)
}

/// A decoded exception: vector, error code and (for #PF) the faulting
/// address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exception {
    /// The vector (0..31 for exceptions).
    pub vector: u64,
    /// The error code (0 where the CPU pushes none).
    pub error: u64,
    /// CR2 at the fault (meaningful for #PF only).
    pub cr2: u64,
}

impl Exception {
    /// Whether [`Exception::cr2`] holds the faulting address.
    pub fn address_valid(&self) -> bool {
        self.vector == PAGE_FAULT
    }
}

impl fmt::Display for Exception {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match vector_name(self.vector) {
            Some(name) => f.write_str(name)?,
            None => write!(f, "interrupt vector {}", self.vector)?,
        }
        let e = self.error;
        if self.vector == PAGE_FAULT {
            // Bits 0..6: P, W/R, U/S, RSVD, I/D, PK, SS.
            let access = if e & (1 << 4) != 0 {
                "instruction fetch"
            } else if e & (1 << 1) != 0 {
                "write"
            } else {
                "read"
            };
            write!(
                f,
                ": {} on {access} from {} mode",
                if e & 1 != 0 {
                    "protection violation"
                } else {
                    "not-present page"
                },
                if e & (1 << 2) != 0 {
                    "user"
                } else {
                    "supervisor"
                },
            )?;
            for (bit, what) in [
                (3, "reserved bit set"),
                (5, "protection key"),
                (6, "shadow stack"),
                (15, "SGX"),
            ] {
                if e & (1 << bit) != 0 {
                    write!(f, ", {what}")?;
                }
            }
        } else if has_selector_error(self.vector) && e != 0 {
            // Bit 0: external event; bit 1: IDT; bit 2: LDT (if not IDT);
            // bits 3..15: the index.
            let table = if e & 2 != 0 {
                "IDT"
            } else if e & 4 != 0 {
                "LDT"
            } else {
                "GDT"
            };
            write!(f, ": {table} entry {}", (e >> 3) & 0x1fff)?;
            if e & 1 != 0 {
                f.write_str(", external event")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    fn show(vector: u64, error: u64) -> alloc::string::String {
        format!(
            "{}",
            Exception {
                vector,
                error,
                cr2: 0
            }
        )
    }

    #[test]
    fn page_fault_error_codes() {
        assert_eq!(
            show(14, 0),
            "page fault (#PF): not-present page on read from supervisor mode"
        );
        assert_eq!(
            show(14, 0b111),
            "page fault (#PF): protection violation on write from user mode"
        );
        assert_eq!(
            show(14, 0b1_0101),
            "page fault (#PF): protection violation on instruction fetch from user mode"
        );
        assert_eq!(
            show(14, 0b1000),
            "page fault (#PF): not-present page on read from supervisor mode, reserved bit set"
        );
        assert!(
            Exception {
                vector: 14,
                error: 0,
                cr2: 0x1000
            }
            .address_valid()
        );
        assert!(
            !Exception {
                vector: 13,
                error: 0,
                cr2: 0
            }
            .address_valid()
        );
    }

    #[test]
    fn selector_error_codes() {
        assert_eq!(show(13, 0), "general protection (#GP)");
        assert_eq!(
            show(13, 0x29),
            "general protection (#GP): GDT entry 5, external event"
        );
        assert_eq!(show(11, 0x102), "segment not present (#NP): IDT entry 32");
        assert_eq!(show(10, 0x0c), "invalid TSS (#TS): LDT entry 1");
    }

    #[test]
    fn every_value_decodes() {
        for vector in 0..300 {
            for error in [0, 1, u64::MAX, 0xffff_0000] {
                let _ = show(vector, error);
            }
        }
        assert_eq!(show(6, 0), "invalid opcode (#UD)");
        assert_eq!(show(32, 0), "interrupt vector 32");
        assert_eq!(show(15, 0), "reserved exception");
    }
}
