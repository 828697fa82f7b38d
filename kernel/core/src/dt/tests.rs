use super::*;

static VIRT: &[u8] = include_bytes!("../../fixtures/virt-qemu72.dtb");
static VIRT_EL2: &[u8] = include_bytes!("../../fixtures/virt-qemu72-el2.dtb");

fn region(base: u64, size: u64) -> Region {
    Region {
        base: PhysAddr::new(base),
        size,
    }
}

fn edge(intid: u32) -> Irq {
    Irq {
        intid,
        trigger: Trigger::Edge,
    }
}

#[test]
fn qemu_virt_platform() {
    let p = parse(VIRT).expect("fixture parses");
    assert_eq!(p.memory.as_slice(), &[region(0x4000_0000, 512 << 20)]);
    assert!(p.reserved.is_empty());
    assert_eq!(p.bootargs, None);
    assert_eq!(p.uart, Some(region(0x0900_0000, 0x1000)));
    assert_eq!(p.psci, Some(PsciMethod::Hvc));

    assert_eq!(p.gic.as_ref().unwrap().gicd, region(0x0800_0000, 0x1_0000));
    assert_eq!(p.gic.as_ref().unwrap().gicr, region(0x080a_0000, 0xf6_0000));
    assert_eq!(
        p.gic.as_ref().unwrap().its,
        Some(region(0x0808_0000, 0x2_0000))
    );
    assert_eq!(p.gic.as_ref().unwrap().phandle, Some(0x8002));
    assert_eq!(p.gic.as_ref().unwrap().its_phandle, Some(0x8003));
    assert_eq!(p.gic.as_ref().unwrap().maintenance, None);

    assert_eq!(p.timer.as_ref().unwrap().intids(), [29, 30, 27, 26]);
    assert_eq!(p.timer.as_ref().unwrap().phys.trigger, Trigger::Level);
    assert_eq!(p.timer.as_ref().unwrap().hyp_virt, None);
}

#[test]
fn qemu_virt_smmu() {
    let s = parse(VIRT).unwrap().smmu.expect("SMMU present");
    assert_eq!(s.regs, region(0x0905_0000, 0x2_0000));
    assert_eq!(s.phandle, Some(0x8004));
    assert_eq!(s.iommu_cells, 1);
    assert!(s.dma_coherent);
    assert_eq!(s.eventq, Some(edge(106)));
    assert_eq!(s.priq, Some(edge(107)));
    assert_eq!(s.cmdq_sync, Some(edge(108)));
    assert_eq!(s.gerror, Some(edge(109)));
}

#[test]
fn qemu_virt_pci_host() {
    let p = parse(VIRT).unwrap();
    let h = p.pci.expect("PCIe host present");
    assert_eq!(h.ecam, region(0x40_1000_0000, 0x1000_0000));
    assert_eq!((h.bus_start, h.bus_end), (0, 255));
    assert!(h.dma_coherent);
    assert_eq!(
        h.window(PciSpace::Io),
        Some(PciWindow {
            space: PciSpace::Io,
            prefetchable: false,
            pci_addr: 0,
            cpu_addr: PhysAddr::new(0x3eff_0000),
            size: 0x1_0000,
        })
    );
    assert_eq!(
        h.window(PciSpace::Mem32),
        Some(PciWindow {
            space: PciSpace::Mem32,
            prefetchable: false,
            pci_addr: 0x1000_0000,
            cpu_addr: PhysAddr::new(0x1000_0000),
            size: 0x2eff_0000,
        })
    );
    assert_eq!(
        h.window(PciSpace::Mem64),
        Some(PciWindow {
            space: PciSpace::Mem64,
            prefetchable: false,
            pci_addr: 0x80_0000_0000,
            cpu_addr: PhysAddr::new(0x80_0000_0000),
            size: 0x80_0000_0000,
        })
    );
    assert_eq!(h.windows.len(), 3);

    let smmu = p.smmu.unwrap().phandle.unwrap();
    assert_eq!(h.stream_id(0x8), Some((smmu, StreamId(0x8))));
    assert_eq!(h.stream_id(0x10), Some((smmu, StreamId(0x10))));
    assert_eq!(h.stream_id(0xffff), Some((smmu, StreamId(0xffff))));
    assert_eq!(
        h.msi_device_id(0x8),
        Some((p.gic.as_ref().unwrap().its_phandle.unwrap(), 0x8))
    );
}

#[test]
fn el2_variant_smc_reservations_bootargs() {
    let p = parse(VIRT_EL2).expect("EL2 fixture parses");
    assert_eq!(p.psci, Some(PsciMethod::Smc));
    assert_eq!(p.bootargs, Some("console=ttyAMA0 smmu.strict=1"));
    assert_eq!(
        p.reserved.as_slice(),
        &[region(0x4800_0000, 0x10_0000), region(0x5f00_0000, 0x2000)]
    );
    assert_eq!(
        p.gic.as_ref().unwrap().maintenance,
        Some(Irq {
            intid: 25,
            trigger: Trigger::Level
        })
    );
}

#[test]
fn blob_may_be_longer_than_the_tree() {
    let mut padded = [0u8; 16 * 1024];
    padded[..VIRT.len()].copy_from_slice(VIRT);
    assert_eq!(blob_size(&padded), Ok(VIRT.len()));
    assert_eq!(parse(&padded), parse(VIRT));
}

#[test]
fn truncated_blob_is_an_error() {
    for len in [0, 3, 39, 40, 41, VIRT.len() / 2, VIRT.len() - 1] {
        assert_eq!(parse(&VIRT[..len]), Err(DtError::Truncated), "len {len}");
    }
}

#[test]
fn bad_magic_and_version() {
    let mut b = VIRT.to_vec();
    b[0] = 0;
    assert_eq!(parse(&b), Err(DtError::BadMagic));
    let mut b = VIRT.to_vec();
    b[20..24].copy_from_slice(&16u32.to_be_bytes());
    assert_eq!(parse(&b), Err(DtError::BadVersion));
}

#[test]
fn header_offsets_outside_the_blob_are_malformed() {
    for field in [2usize, 3, 4, 8, 9] {
        let mut b = VIRT.to_vec();
        b[field * 4..field * 4 + 4].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
        assert_eq!(parse(&b), Err(DtError::Malformed), "field {field}");
    }
}

/// Corrupts every byte of the blob in turn (top bit of a cell's high byte,
/// low bit of its low byte, all bits of the middle ones, so tokens, lengths,
/// offsets, cell counts and names all get hit): whatever the result, parsing
/// returns instead of panicking.
#[test]
fn corrupted_bytes_never_panic() {
    let mut b = VIRT.to_vec();
    for i in 0..b.len() {
        let x = [0x80, 0xff, 0xff, 0x01][i % 4];
        b[i] ^= x;
        let _ = parse(&b);
        b[i] ^= x;
    }
}

#[test]
fn nop_tokens_are_refused() {
    // Replace the first property token of the root with NOP.
    let mut b = VIRT.to_vec();
    let off = u32::from_be_bytes(b[8..12].try_into().unwrap()) as usize;
    // BEGIN_NODE, "" padded to 4 bytes, then the first FDT_PROP.
    assert_eq!(&b[off + 8..off + 12], &3u32.to_be_bytes());
    b[off + 8..off + 12].copy_from_slice(&4u32.to_be_bytes());
    assert_eq!(parse(&b), Err(DtError::Unsupported));
}

#[test]
fn irq_decoding() {
    assert_eq!(decode_irq(0, 74, 1), Ok(edge(106)));
    assert_eq!(
        decode_irq(1, 13, 0xf04),
        Ok(Irq {
            intid: 29,
            trigger: Trigger::Level
        })
    );
    assert_eq!(decode_irq(2, 0, 4).map(|i| i.intid), Ok(4096));
    assert!(decode_irq(1, 16, 4).is_err());
    assert!(decode_irq(7, 0, 4).is_err());
    assert!(decode_irq(0, 1, 3).is_err());
}

#[test]
fn id_map_lookup_with_offset_and_mask() {
    let mut entries = BoundedVec::new();
    entries
        .push(IdMapEntry {
            rid_base: 0x100,
            phandle: 7,
            out_base: 0x4000,
            length: 0x100,
        })
        .unwrap();
    let map = IdMap {
        entries,
        mask: 0xfff8,
    };
    assert_eq!(map.lookup(0x10b), Some((7, 0x4008)));
    assert_eq!(map.lookup(0xff), None);
    assert_eq!(map.lookup(0x200), None);
}

#[test]
fn region_helpers() {
    let r = region(0x1000, 0x1000);
    assert!(r.contains(PhysAddr::new(0x1fff)));
    assert!(!r.contains(PhysAddr::new(0x2000)));
    assert!(!r.contains(PhysAddr::new(0xfff)));
    assert_eq!(region(u64::MAX, 2).end(), None);
}

/// A hand-assembled blob: `body` is the structure block's tokens after the
/// root's BEGIN_NODE, strings block `strings`.
fn assemble(body: &[u32], strings: &[u8]) -> Vec<u8> {
    let mut structs = vec![1u32, 0];
    structs.extend_from_slice(body);
    let structs: Vec<u8> = structs.iter().flat_map(|w| w.to_be_bytes()).collect();
    let off_rsv = 40u32;
    let off_struct = off_rsv + 16;
    let off_strings = off_struct + structs.len() as u32;
    let total = off_strings + strings.len() as u32;
    let header = [
        0xd00d_feed,
        total,
        off_struct,
        off_strings,
        off_rsv,
        17,
        16,
        0,
        strings.len() as u32,
        structs.len() as u32,
    ];
    let mut b: Vec<u8> = header.iter().flat_map(|w| w.to_be_bytes()).collect();
    b.extend_from_slice(&[0; 16]);
    b.extend_from_slice(&structs);
    b.extend_from_slice(strings);
    b
}

const NAME_A: u32 = u32::from_be_bytes(*b"a\0\0\0");

#[test]
fn hand_assembled_structures() {
    // Root with one property (name "x", 4 bytes), then END_NODE, END.
    let ok = assemble(&[3, 4, 0, 7, 2, 9], b"x\0");
    assert_eq!(check::check(&ok).map(|_| ()), Ok(()));
    // Valid structure but nothing in it: a missing-device error, not a panic.
    assert_eq!(parse(&ok), Err(DtError::Missing("arm,gic-v3")));

    // A property after a child node.
    let late_prop = assemble(&[1, NAME_A, 2, 3, 4, 0, 7, 2, 9], b"x\0");
    assert_eq!(parse(&late_prop), Err(DtError::Malformed));
    // Unbalanced: END before the root closes; END_NODE past the root.
    assert_eq!(parse(&assemble(&[9], b"")), Err(DtError::Malformed));
    assert_eq!(parse(&assemble(&[2, 2, 9], b"")), Err(DtError::Malformed));
    // A second root-level node.
    let two_roots = assemble(&[2, 1, 0, 2, 9], b"");
    assert_eq!(parse(&two_roots), Err(DtError::Malformed));
    // Property name offset outside the strings block; length past the end.
    assert_eq!(
        parse(&assemble(&[3, 0, 99, 2, 9], b"x\0")),
        Err(DtError::Malformed)
    );
    assert_eq!(
        parse(&assemble(&[3, 400, 0, 2, 9], b"x\0")),
        Err(DtError::Malformed)
    );
    // A 2-byte #address-cells would make the fdt crate panic: refused.
    let short_cells = assemble(&[3, 2, 0, 0, 2, 9], b"#address-cells\0");
    assert_eq!(
        parse(&short_cells),
        Err(DtError::BadProperty("#address-cells"))
    );
}

#[test]
fn nesting_limit() {
    let mut body = Vec::new();
    for _ in 0..MAX_DEPTH {
        body.extend_from_slice(&[1, NAME_A]);
    }
    body.extend(core::iter::repeat_n(2, MAX_DEPTH + 1));
    body.push(9);
    assert_eq!(parse(&assemble(&body, b"")), Err(DtError::TooDeep));
}

#[test]
fn too_many_reservations_is_an_error() {
    // Grow the fixture's reservation block to nine entries plus the
    // terminator, shifting the blocks after it.
    let mut b = VIRT.to_vec();
    let rsv = u32::from_be_bytes(b[16..20].try_into().unwrap()) as usize;
    let off_struct = u32::from_be_bytes(b[8..12].try_into().unwrap()) as usize;
    assert_eq!(
        off_struct - rsv,
        16,
        "QEMU leaves room for the terminator only"
    );
    let mut entries = Vec::new();
    for i in 0..9u64 {
        entries.extend_from_slice(&(0x5000_0000 + i * 0x1000).to_be_bytes());
        entries.extend_from_slice(&0x1000u64.to_be_bytes());
    }
    entries.extend_from_slice(&[0; 16]);
    b.splice(rsv..rsv + 16, entries.iter().copied());
    let grow = (entries.len() - 16) as u32;
    for field in [1usize, 2, 3] {
        let v = u32::from_be_bytes(b[field * 4..field * 4 + 4].try_into().unwrap()) + grow;
        b[field * 4..field * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    assert_eq!(parse(&b), Err(DtError::TooMany("/memreserve/ entries")));
}

#[test]
fn pci_intx_routes_swizzle_to_gic_spis() {
    let p = parse(VIRT).unwrap();
    let host = p.pci.unwrap();
    assert_eq!(host.intx.entries.len(), 16);
    // QEMU virt: slot s, pin p (1 = INTA) -> SPI 3 + (s + p - 1) % 4, level.
    for slot in 0u16..8 {
        for pin in 1u8..=4 {
            let rid = slot << 3;
            let want = 32 + 3 + (u32::from(slot) + u32::from(pin) - 1) % 4;
            let irq = host.intx.lookup(rid, pin).unwrap();
            assert_eq!(irq.intid, want, "slot {slot} pin {pin}");
            assert_eq!(irq.trigger, Trigger::Level);
        }
    }
    // Pin 0 means "no INTx".
    assert_eq!(host.intx.lookup(0x8, 0), None);
}
