use alloc::string::String;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::TaskInfoBuilder;

fn info(name: &str, index: u32, caps: &[&str]) -> Vec<u8> {
    let mut b = TaskInfoBuilder::new(name, index, index + 1);
    for (i, cap) in caps.iter().enumerate() {
        b.cap(cap, i as u32);
    }
    b.build().unwrap()
}

fn task(name: &str, index: u32, priority: u8, caps: Vec<CapSpec>) -> TaskSpec {
    let names: Vec<String> = (0..caps.len()).map(|i| format!("c{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    TaskSpec {
        name: name.into(),
        priority,
        restart: index % 2 == 1,
        kernel_quota_pages: (index * 5) as u16,
        dma_quota_pages: index * 7,
        elf: format!("\x7fELF fake image of {name}").into_bytes(),
        info: info(name, index, &names),
        caps,
    }
}

fn endpoint(name: &str, death_notices: bool) -> EndpointSpec {
    EndpointSpec {
        name: name.into(),
        death_notices,
    }
}

fn call(endpoint: u32, badge: u32) -> CapSpec {
    CapSpec::Endpoint {
        endpoint,
        serve: false,
        badge,
    }
}

fn serve(endpoint: u32) -> CapSpec {
    CapSpec::Endpoint {
        endpoint,
        serve: true,
        badge: 0,
    }
}

fn sample_builder() -> BootImageBuilder {
    let mut b = BootImageBuilder::new();
    b.endpoint(endpoint("ping", true));
    b.endpoint(endpoint("held", false));
    b.task(task(
        "server",
        0,
        6,
        vec![
            serve(0),
            serve(1),
            CapSpec::Notify {
                task: 1,
                bits: 0x10,
            },
            CapSpec::Irq {
                source: IrqSource::Smmu(SmmuIrq::Eventq),
                bit: 3,
            },
            CapSpec::Mmio {
                region: MmioRegion::Smmu,
            },
            CapSpec::SmmuOwner,
            CapSpec::Monitor,
        ],
    ));
    b.task(task(
        "client",
        1,
        4,
        vec![
            call(0, 2),
            call(1, 2),
            CapSpec::Pci { bdf: 0x0008 },
            CapSpec::Irq {
                source: IrqSource::PciIntx { bdf: 0x0008 },
                bit: 63,
            },
        ],
    ));
    b
}

fn sample() -> Vec<u8> {
    sample_builder().build().unwrap()
}

#[test]
fn sample_decodes() {
    let bytes = sample();
    let image = BootImage::parse(&bytes).unwrap();
    assert_eq!(image.total_len(), bytes.len());
    assert!(image.total_len().is_multiple_of(BLOB_ALIGN));
    assert_eq!(peek_total_len(&bytes), Ok(bytes.len()));
    let eps: Vec<_> = image.endpoints().collect();
    assert_eq!(eps.len(), 2);
    assert_eq!(
        (eps[0].index, eps[0].name, eps[0].death_notices),
        (0, "ping", true)
    );
    assert_eq!((eps[1].name, eps[1].death_notices), ("held", false));
    let tasks: Vec<_> = image.tasks().collect();
    assert_eq!(tasks.len(), 2);
    let client = &tasks[1];
    assert_eq!(
        (client.index, client.name, client.priority),
        (1, "client", 4)
    );
    assert_eq!(client.dma_quota_pages, 7);
    assert_eq!(client.kernel_quota_pages, 5);
    // 0 in the record reads as the default, never as "no page at all".
    assert_eq!(
        image.task(0).unwrap().kernel_quota_pages,
        super::DEFAULT_KERNEL_QUOTA_PAGES
    );
    assert_eq!(client.elf, b"\x7fELF fake image of client");
    assert_eq!(
        crate::TaskInfo::parse(client.info).unwrap().name(),
        "client"
    );
    assert_eq!(client.caps.len(), 4);
    assert_eq!(client.caps.clone().next(), Some(call(0, 2)));
    assert_eq!(image.task(0).unwrap().caps.last(), Some(CapSpec::Monitor));
    assert!(image.task(2).is_none());
    assert!(image.endpoint(2).is_none());
}

#[test]
fn parses_with_trailing_bytes() {
    let mut bytes = sample();
    let len = bytes.len();
    bytes.extend_from_slice(&[0xEE; 100]);
    assert_eq!(BootImage::parse(&bytes).unwrap().total_len(), len);
}

#[test]
fn names_of_devices_round_trip() {
    for irq in SmmuIrq::ALL {
        assert_eq!(SmmuIrq::from_name(irq.name()), Some(irq));
    }
    assert_eq!(SmmuIrq::from_name("cmdq-sync"), Some(SmmuIrq::CmdqSync));
    assert_eq!(MmioRegion::from_name("smmu"), Some(MmioRegion::Smmu));
    assert_eq!(MmioRegion::from_name("gic"), None);
}

fn build_err(f: impl FnOnce(&mut BootImageBuilder)) -> Error {
    let mut b = sample_builder();
    f(&mut b);
    b.build().unwrap_err()
}

#[test]
fn indices_out_of_range_are_errors() {
    assert_eq!(
        build_err(|b| b.tasks[1].caps[0] = call(2, 2)),
        Error::BadIndex
    );
    assert_eq!(
        build_err(|b| b.tasks[0].caps[2] = CapSpec::Notify { task: 2, bits: 1 }),
        Error::BadIndex
    );
    assert_eq!(
        build_err(|b| b.tasks[0].caps[0] = serve(u32::MAX)),
        Error::BadIndex
    );
}

#[test]
fn semantic_errors() {
    // held loses its server; ping gets two.
    assert_eq!(
        build_err(|b| b.tasks[0].caps[1] = serve(0)),
        Error::ServerCount
    );
    assert_eq!(
        build_err(|b| {
            b.endpoint(endpoint("lonely", false));
        }),
        Error::ServerCount
    );
    assert_eq!(
        build_err(|b| {
            b.endpoint(endpoint("ping", false));
            b.tasks[1].caps.push(serve(2));
            b.tasks[1].info = info("client", 1, &["a", "b", "c", "d", "e"]);
        }),
        Error::Duplicate
    );
    assert_eq!(
        build_err(|b| {
            b.task(task("client", 2, 4, vec![]));
        }),
        Error::Duplicate
    );
    for p in [0, MAX_PRIORITY + 1] {
        assert_eq!(build_err(|b| b.tasks[0].priority = p), Error::BadRecord);
    }
    assert_eq!(
        build_err(|b| b.tasks[0].caps[2] = CapSpec::Notify { task: 1, bits: 0 }),
        Error::BadRecord
    );
    assert_eq!(
        build_err(|b| {
            b.tasks[0].caps[3] = CapSpec::Irq {
                source: IrqSource::Smmu(SmmuIrq::Gerror),
                bit: 64,
            }
        }),
        Error::BadRecord
    );
    assert_eq!(
        build_err(|b| b.tasks[1].caps[0] = CapSpec::Endpoint {
            endpoint: 0,
            serve: true,
            badge: 9
        }),
        Error::BadRecord
    );
    assert_eq!(build_err(|b| b.tasks[1].elf.clear()), Error::BadRecord);
    assert_eq!(
        build_err(|b| b.tasks[1].name = "x".repeat(MAX_NAME_LEN + 1)),
        Error::BadString
    );
    assert_eq!(build_err(|b| b.tasks[1].name.clear()), Error::BadString);
    // The info page must be the task's own, naming only its capabilities.
    assert_eq!(
        build_err(|b| b.tasks[1].info = info("server", 1, &[])),
        Error::InfoMismatch
    );
    assert_eq!(
        build_err(|b| b.tasks[1].info = info("client", 0, &[])),
        Error::InfoMismatch
    );
    assert_eq!(
        build_err(|b| b.tasks[1].info = info("client", 1, &["a", "b", "c", "d", "e"])),
        Error::InfoMismatch
    );
    assert_eq!(build_err(|b| b.tasks[1].info.clear()), Error::Truncated);
}

#[test]
fn limits() {
    assert_eq!(
        build_err(|b| b.tasks[1].caps = vec![CapSpec::SmmuOwner; MAX_CAPS_PER_TASK + 1]),
        Error::TooMany
    );
    let mut b = BootImageBuilder::new();
    for i in 0..=MAX_TASKS as u32 {
        b.task(task(&format!("t{i}"), i, 1, vec![]));
    }
    assert_eq!(b.build(), Err(Error::TooMany));
    let mut b = BootImageBuilder::new();
    for i in 0..MAX_TASKS as u32 {
        b.task(task(&format!("t{i}"), i, 1, vec![]));
    }
    assert!(b.build().is_ok());
}

#[test]
fn decoder_refuses_bad_headers() {
    let good = sample();
    let mut bad = good.clone();
    bad[1] ^= 1;
    assert_eq!(BootImage::parse(&bad).unwrap_err(), Error::BadMagic);
    let mut bad = good.clone();
    bad[4] = 2;
    assert_eq!(BootImage::parse(&bad).unwrap_err(), Error::BadVersion);
    let mut bad = good.clone();
    bad[8..12].copy_from_slice(&(good.len() as u32 + 1).to_le_bytes());
    assert_eq!(BootImage::parse(&bad).unwrap_err(), Error::Truncated);
    let mut bad = good.clone();
    bad[8..12].copy_from_slice(&4u32.to_le_bytes());
    assert_eq!(BootImage::parse(&bad).unwrap_err(), Error::BadLength);
    let mut bad = good.clone();
    bad[32..36].copy_from_slice(&(MAX_TASKS as u32 + 1).to_le_bytes());
    assert_eq!(BootImage::parse(&bad).unwrap_err(), Error::TooMany);
}

/// Touches every field the kernel would read.
fn read_all(image: &BootImage<'_>) -> usize {
    let mut n = image.total_len();
    for ep in image.endpoints() {
        n += ep.name.len() + usize::from(ep.death_notices);
    }
    for task in image.tasks() {
        n += task.name.len() + task.elf.len() + task.info.len();
        n += usize::from(task.priority) + task.dma_quota_pages as usize;
        n += task.caps.map(|c| c.encode()[0] as usize).sum::<usize>();
        n += crate::TaskInfo::parse(task.info).map_or(0, |i| i.caps().count());
    }
    n
}

#[test]
fn every_single_byte_corruption_is_handled() {
    let good = sample();
    let mut accepted = 0;
    for i in 0..good.len() {
        for x in [0x01u8, 0x80, 0xFF] {
            let mut bad = good.clone();
            bad[i] ^= x;
            if let Ok(image) = BootImage::parse(&bad) {
                read_all(&image);
                accepted += 1;
            }
        }
    }
    // Padding and blob contents are free; headers and tables are not.
    assert!(accepted < good.len() * 3);
}

#[test]
fn every_truncation_is_an_error() {
    let good = sample();
    for len in 0..good.len() {
        assert!(
            BootImage::parse(&good[..len]).is_err(),
            "prefix {len} accepted"
        );
    }
}

/// A random valid system: every endpoint gets one server among the tasks.
fn system() -> impl Strategy<Value = BootImageBuilder> {
    (1usize..6, 0usize..5)
        .prop_flat_map(|(ntasks, neps)| {
            let cap = prop_oneof![
                (0..neps.max(1) as u32, any::<u32>()).prop_map(move |(e, badge)| if neps == 0 {
                    CapSpec::SmmuOwner
                } else {
                    call(e, badge)
                }),
                (0..ntasks as u32, 1..=u64::MAX)
                    .prop_map(|(task, bits)| CapSpec::Notify { task, bits }),
                (0..4usize, 0..=MAX_IRQ_BIT).prop_map(|(i, bit)| CapSpec::Irq {
                    source: IrqSource::Smmu(SmmuIrq::ALL[i]),
                    bit,
                }),
                (any::<u16>(), 0..=MAX_IRQ_BIT).prop_map(|(bdf, bit)| CapSpec::Irq {
                    source: IrqSource::PciIntx { bdf },
                    bit,
                }),
                Just(CapSpec::Mmio {
                    region: MmioRegion::Smmu
                }),
                any::<u16>().prop_map(|bdf| CapSpec::Pci { bdf }),
                Just(CapSpec::SmmuOwner),
                Just(CapSpec::Monitor),
            ];
            (
                proptest::collection::vec(
                    (
                        1..=MAX_PRIORITY,
                        any::<u32>(),
                        proptest::collection::vec(any::<u8>(), 1..64),
                        proptest::collection::vec(cap, 0..8),
                    ),
                    ntasks,
                ),
                proptest::collection::vec((any::<bool>(), 0..ntasks), neps),
            )
        })
        .prop_map(|(tasks, eps)| {
            let mut b = BootImageBuilder::new();
            for (i, (death, _)) in eps.iter().enumerate() {
                b.endpoint(endpoint(&format!("ep{i}"), *death));
            }
            for (i, (priority, quota, elf, mut caps)) in tasks.into_iter().enumerate() {
                for (e, (_, server)) in eps.iter().enumerate() {
                    if *server == i {
                        caps.push(serve(e as u32));
                    }
                }
                let mut t = task(&format!("task-{i}"), i as u32, priority, caps);
                t.dma_quota_pages = quota;
                t.elf = elf;
                b.task(t);
            }
            b
        })
}

proptest! {
    #[test]
    fn round_trip(b in system()) {
        let bytes = b.build().unwrap();
        let image = BootImage::parse(&bytes).unwrap();
        prop_assert_eq!(image.endpoint_count(), b.endpoints.len());
        for (got, want) in image.endpoints().zip(&b.endpoints) {
            prop_assert_eq!(got.name, want.name.as_str());
            prop_assert_eq!(got.death_notices, want.death_notices);
        }
        prop_assert_eq!(image.task_count(), b.tasks.len());
        for (got, want) in image.tasks().zip(&b.tasks) {
            prop_assert_eq!(got.name, want.name.as_str());
            prop_assert_eq!(got.priority, want.priority);
            prop_assert_eq!(got.restart, want.restart);
            prop_assert_eq!(got.dma_quota_pages, want.dma_quota_pages);
            let kernel_quota = match want.kernel_quota_pages {
                0 => super::DEFAULT_KERNEL_QUOTA_PAGES,
                n => n,
            };
            prop_assert_eq!(got.kernel_quota_pages, kernel_quota);
            prop_assert_eq!(got.elf, want.elf.as_slice());
            prop_assert_eq!(got.info, want.info.as_slice());
            prop_assert_eq!(got.caps.collect::<Vec<_>>(), want.caps.clone());
        }
    }
}
