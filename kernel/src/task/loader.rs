//! Creates the tasks the boot image describes: one address space each (its
//! own page table and address-space tag), the ELF segments copied into fresh frames
//! with the permissions their flags ask for (never writable and
//! executable), a stack, the read-only task-information page, and exactly
//! the capabilities the system description lists, resolved against the
//! device tree. Never grants anything the description does not name. A
//! task it cannot create leaves nothing behind: its frames, page tables
//! and interrupt bindings are released before the error is returned
//! (a failed restart leaks nothing).

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use abi::syscall::layout;
use abi::{Asid, PAGE_SIZE};
use bootimage::image::{BootImage, CapSpec, IrqSource, MmioRegion, SmmuIrq, TaskRecord};
use kernel_core::death::{Ledger, Slot};
use kernel_core::dt::{Platform, Trigger as DtTrigger};
use kernel_core::elf::LoadPlan;
use kernel_core::pci::Function;
use pgtable::Attrs;

use super::{Cap, Endpoint, IrqBinding, Kernel, State, Task};
use crate::arch::irq;
use crate::arch::mmu::MEM_NORMAL;
use crate::arch::{TrapFrame, UserFrame};
use crate::kprintln;
use crate::mm::user::AddressSpace;

/// Builds the kernel's objects from `image`. An error names the task and
/// what was wrong; nothing runs then.
pub fn load(
    image: &BootImage<'_>,
    platform: &Platform<'_>,
    pci: Vec<Function>,
    pa_bits: u8,
) -> Result<Kernel, String> {
    let frames_free_before_load = crate::mm::frames::stats().0;
    let mut endpoints: Vec<Endpoint> = image
        .endpoints()
        .map(|e| Endpoint {
            name: e.name.to_string(),
            server: usize::MAX,
            death_notices: e.death_notices,
            senders: VecDeque::new(),
        })
        .collect();
    let mut irqs = BTreeMap::new();
    let mut tasks = Vec::new();
    for (i, rec) in image.tasks().enumerate() {
        tasks.push(create_task(
            &rec,
            i,
            0,
            platform,
            &pci,
            &mut endpoints,
            &mut irqs,
            pa_bits,
        )?);
    }
    if let Some(e) = endpoints.iter().find(|e| e.server == usize::MAX) {
        return Err(format!("endpoint {} has no server", e.name));
    }
    // Each task owes at most one set of death notices at a time (it is
    // restarted only once they are all answered), one per call capability
    // on an endpoint that wants them: that many slots never run out.
    let notice_slots: usize = tasks
        .iter()
        .map(|t| {
            t.caps
                .iter()
                .filter(|c| {
                    matches!(c, Cap::Endpoint { ep, serve: false, .. } if endpoints[*ep].death_notices)
                })
                .count()
        })
        .sum();
    let mut k = Kernel {
        tasks,
        endpoints,
        death_notices: Ledger::new(alloc::vec![Slot::Free; notice_slots].into_boxed_slice()),
        current: None,
        ready: Default::default(),
        irqs,
        smmu_enabled: false,
        resched: false,
        pci,
        frames_free_before_load,
        boot: None,
        counters: abi::KernelCounters::default(),
        user_space: None,
        charged_at: 0,
        armed: None,
    };
    for t in 0..k.tasks.len() {
        k.make_ready(t);
    }
    Ok(k)
}

/// The kernel quota a restarted instance gets in the test-only build
/// `fault-restart-quota`: the root table and a few more, so that its
/// creation fails part-way, after it took frames and tables.
#[cfg(feature = "fault-restart-quota")]
const FAULT_RESTART_QUOTA: u64 = 5;

/// The kernel quota (page-table pages) of instance `generation` of `rec`.
fn kernel_quota(rec: &TaskRecord<'_>, generation: u16) -> u64 {
    #[cfg(feature = "fault-restart-quota")]
    if generation > 0 {
        return FAULT_RESTART_QUOTA;
    }
    let _ = generation;
    u64::from(rec.kernel_quota_pages)
}

/// Creates task `index` from its boot-image record: a fresh address space
/// with its ELF segments, stack and info page, and its capabilities
/// resolved against the device tree. `generation` is 0 at boot and counts
/// restarts; the task sees it as its second argument register at entry. On failure everything it
/// built is released again (frames, tables, the interrupts it bound).
#[allow(clippy::too_many_arguments)]
pub fn create_task(
    rec: &TaskRecord<'_>,
    i: usize,
    generation: u16,
    platform: &Platform<'_>,
    pci: &[Function],
    endpoints: &mut [Endpoint],
    irqs: &mut BTreeMap<u32, IrqBinding>,
    pa_bits: u8,
) -> Result<Task, String> {
    let fail = |what: String| format!("task {}: {what}", rec.name);
    let asid = Asid(u16::try_from(i + 1).map_err(|_| fail("too many tasks".into()))?);
    let mut space = AddressSpace::new(asid, pa_bits, i as u32, kernel_quota(rec, generation))
        .map_err(|e| fail(format!("address space: {e}")))?;
    let built = build(
        rec, i, generation, &mut space, platform, pci, endpoints, irqs,
    );
    match built {
        Ok((caps, ctx)) => Ok(Task {
            name: rec.name.to_string(),
            generation,
            priority: rec.priority.min((super::PRIORITIES - 1) as u8),
            state: State::Ready,
            end: None,
            ctx,
            fp: Box::default(),
            space: Some(space),
            caps,
            notify_bits: 0,
            dma_quota: u64::from(rec.dma_quota_pages),
            dma_used: 0,
            call: None,
            call_seq: 0,
            restart: rec.restart,
            cpu_ticks: 0,
        }),
        Err(e) => {
            // Bindings only this attempt made (the slot's earlier instance
            // lost its own when it ended).
            irqs.retain(|&intid, b| {
                if b.task == i {
                    irq::mask(intid);
                }
                b.task != i
            });
            // The space never ran, but its ASID is the slot's: flush it
            // anyway before its frames go back.
            crate::arch::mmu::flush_tag(space.asid());
            let r = space.destroy();
            kprintln!(
                "task {}: creation failed; released what it built: {} frames ({} page tables), {} held, {} pool frames kept",
                rec.name,
                r.freed,
                r.tables,
                r.held,
                r.pool_kept
            );
            Err(fail(e))
        }
    }
}

/// Fills `space` with `rec`'s segments, stack and info page and resolves
/// its capabilities; returns them and the task's first register frame.
/// An error says what failed; the caller releases what was built.
#[allow(clippy::too_many_arguments)]
fn build(
    rec: &TaskRecord<'_>,
    i: usize,
    generation: u16,
    space: &mut AddressSpace,
    platform: &Platform<'_>,
    pci: &[Function],
    endpoints: &mut [Endpoint],
    irqs: &mut BTreeMap<u32, IrqBinding>,
) -> Result<(Vec<Cap>, TrapFrame), String> {
    let plan =
        LoadPlan::parse_for(rec.elf, crate::arch::ELF_MACHINE).map_err(|e| format!("ELF: {e}"))?;
    for seg in plan.segments() {
        let p = seg.perms();
        let attrs = match (p.write, p.exec) {
            (true, _) => Attrs::user_data(MEM_NORMAL, true),
            (false, true) => Attrs::user_code(MEM_NORMAL),
            (false, false) => Attrs::user_data(MEM_NORMAL, false),
        };
        let (first, count) = seg.pages();
        space
            .map_new(first.get(), count, attrs)
            .map_err(|e| format!("segment at {first:?}: {e}"))?;
        for n in 0..count {
            let page = first.get() + n * PAGE_SIZE;
            let (off, bytes) = seg.page_bytes(abi::VirtAddr::new(page));
            if !bytes.is_empty() {
                space
                    .load(page + off as u64, bytes)
                    .map_err(|e| format!("copy: {e}"))?;
            }
        }
    }
    space
        .map_new(
            layout::STACK_TOP - layout::STACK_SIZE,
            layout::STACK_SIZE / PAGE_SIZE,
            Attrs::user_data(MEM_NORMAL, true),
        )
        .map_err(|e| format!("stack: {e}"))?;
    if rec.info.len() as u64 > PAGE_SIZE {
        return Err("task info larger than a page".into());
    }
    space
        .map_new(layout::TASK_INFO, 1, Attrs::user_data(MEM_NORMAL, false))
        .and_then(|_| space.load(layout::TASK_INFO, rec.info))
        .map_err(|e| format!("info page: {e}"))?;

    let mut caps = Vec::new();
    for spec in rec.caps.clone() {
        caps.push(resolve(spec, i, platform, pci, endpoints, irqs)?);
    }

    let ctx = TrapFrame::new_user(
        plan.entry().get(),
        layout::STACK_TOP,
        [layout::TASK_INFO, u64::from(generation)],
    );
    Ok((caps, ctx))
}

/// Test-only (`insecure-msi-bus-master`): bus mastering on for `bdf`
/// without an IOMMU, so its MSI writes arrive; said on the console.
#[cfg(feature = "insecure-msi-bus-master")]
fn insecure_bus_master(bdf: kernel_core::pci::Bdf) {
    use kernel_core::pci::{Command, regs::COMMAND};
    let v = crate::pci::config_read(bdf, COMMAND);
    // The status half is written as 0 (its bits are write-1-to-clear).
    let on = Command(v as u16).union(Command::BUS_MASTER);
    crate::pci::config_write(bdf, COMMAND, u32::from(on.0));
    kprintln!(
        "kernel: INSECURE (test-only insecure-msi-bus-master): bus mastering on for PCI {:#06x} without an IOMMU, for its MSI",
        bdf.rid()
    );
}

fn resolve(
    spec: CapSpec,
    task: usize,
    platform: &Platform<'_>,
    pci: &[Function],
    endpoints: &mut [Endpoint],
    irqs: &mut BTreeMap<u32, IrqBinding>,
) -> Result<Cap, String> {
    Ok(match spec {
        CapSpec::Endpoint {
            endpoint,
            serve,
            badge,
        } => {
            let ep = endpoint as usize;
            let e = endpoints.get_mut(ep).ok_or("endpoint index out of range")?;
            if serve {
                e.server = task;
            }
            Cap::Endpoint { ep, serve, badge }
        }
        CapSpec::Notify { task, bits } => Cap::Notify {
            task: task as usize,
            bits,
        },
        CapSpec::Irq { source, bit } => {
            let irq = match source {
                IrqSource::Smmu(which) => {
                    let s = platform.smmu.as_ref().ok_or("no SMMU in the device tree")?;
                    match which {
                        SmmuIrq::Eventq => s.eventq,
                        SmmuIrq::Priq => s.priq,
                        SmmuIrq::CmdqSync => s.cmdq_sync,
                        SmmuIrq::Gerror => s.gerror,
                    }
                    .ok_or("the SMMU has no such interrupt")?
                }
                IrqSource::PciIntx { bdf } => {
                    // The architecture routes the function's interrupt
                    // (INTx through the interrupt map, or MSI).
                    let function = pci
                        .iter()
                        .find(|f| f.bdf.rid() == bdf)
                        .ok_or(format!("no PCI function {bdf:#06x}"))?;
                    let irq = irq::route_pci(platform, function)?;
                    #[cfg(feature = "insecure-msi-bus-master")]
                    insecure_bus_master(function.bdf);
                    irq
                }
            };
            if bit >= 64 || !irq::is_device_line(irq.intid) || irqs.contains_key(&irq.intid) {
                return Err(format!("interrupt {} unusable or already taken", irq.intid));
            }
            let trigger = match irq.trigger {
                DtTrigger::Edge => irq::Trigger::Edge,
                DtTrigger::Level => irq::Trigger::Level,
            };
            irqs.insert(
                irq.intid,
                IrqBinding {
                    task,
                    bit,
                    masked: false,
                },
            );
            irq::enable_line(irq.intid, trigger);
            Cap::Irq {
                intid: irq.intid,
                bit,
            }
        }
        CapSpec::Mmio {
            region: MmioRegion::Smmu,
        } => {
            let s = platform.smmu.as_ref().ok_or("no SMMU in the device tree")?;
            Cap::Mmio {
                pa: s.regs.base,
                len: s.regs.size,
            }
        }
        CapSpec::Pci { bdf } => {
            let function = pci
                .iter()
                .position(|f| f.bdf.rid() == bdf)
                .ok_or(format!("no PCI function {bdf:#06x}"))?;
            let host = platform.pci.as_ref().ok_or("no PCI host")?;
            let (_, sid) = host
                .stream_id(bdf)
                .ok_or("function has no StreamID in the iommu-map")?;
            Cap::Pci { function, sid }
        }
        CapSpec::SmmuOwner => Cap::SmmuOwner,
        CapSpec::Monitor => Cap::Monitor,
    })
}
