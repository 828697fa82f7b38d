//! The end of a task: the report when it faults or exits, failing every
//! call that depended on it, masking its interrupts, announcing its death
//! to servers that asked for it, and reclaiming its memory only after
//! those servers have answered (the IOMMU server must tear down the
//! device mappings of the memory before it can be reused). Never frees a
//! frame a TLB may still translate to, nor one the IOMMU server still has
//! pinned: those are held for DMA until the last unpin (`mm::frames`), and
//! a dead IOMMU server's pool is kept (its SMMU may still walk it).

use super::ipc::{self, fail_call};
use super::{Cap, End, Kernel, State, TaskIdx};
use crate::arch::trap::{Syndrome, TrapFrame};
use crate::mm::user::Reclaimed;
use crate::{arch, gic, kprintln};

/// A task's fault: report it by name with the decoded syndrome, stop it.
pub fn fault(k: &mut Kernel, t: TaskIdx, frame: &TrapFrame, syn: Syndrome, what: &str) {
    let decoded = kernel_core::esr::Fault::new(syn.esr);
    let name = &k.tasks[t].name;
    if decoded.far_valid() {
        kprintln!(
            "task {name} faulted: {what}: {decoded}; FAR={:#x} ELR={:#x}; stopped",
            syn.far,
            frame.elr
        );
    } else {
        kprintln!(
            "task {name} faulted: {what}: {decoded}; ELR={:#x}; stopped",
            frame.elr
        );
    }
    end(k, t, End::Faulted);
}

/// Ends task `t` (exit or fault) and releases what it held.
pub fn end(k: &mut Kernel, t: TaskIdx, how: End) {
    if let End::Exited(code) = how {
        kprintln!("task {} exited with code {code}", k.tasks[t].name);
    }
    if let State::SendBlocked { ep } = k.tasks[t].state {
        k.endpoints[ep].senders.retain(|&c| c != t);
    }
    k.tasks[t].end = Some(how);
    k.tasks[t].call = None;
    k.tasks[t].state = State::Dead { acks: 0 };

    // Calls that needed it as a server fail.
    for c in 0..k.tasks.len() {
        let depends = match k.tasks[c].state {
            State::ReplyWait { server, .. } => server == t,
            State::SendBlocked { ep } => k.endpoints[ep].server == t,
            _ => false,
        };
        if depends {
            if let State::SendBlocked { ep } = k.tasks[c].state {
                k.endpoints[ep].senders.retain(|&x| x != c);
            }
            fail_call(k, c, abi::Error::PeerDead);
        }
    }

    // Its interrupts stop.
    let owned: alloc::vec::Vec<u32> = k
        .irqs
        .iter()
        .filter(|(_, b)| b.task == t)
        .map(|(&i, _)| i)
        .collect();
    for intid in owned {
        gic::mask_spi(intid);
        k.irqs.remove(&intid);
    }

    // Servers that asked to hear of their clients' deaths are told; the
    // memory waits for their answers.
    let mut acks = 0;
    let caps = k.tasks[t].caps.clone();
    for c in caps {
        if let Cap::Endpoint {
            ep,
            serve: false,
            badge,
        } = c
        {
            let server = k.endpoints[ep].server;
            if k.endpoints[ep].death_notices && k.tasks[server].end.is_none() {
                k.endpoints[ep].deaths.push_back((badge, t));
                acks += 1;
                ipc::try_receive(k, server);
            }
        }
    }
    k.tasks[t].state = State::Dead { acks };
    if k.current == Some(t) {
        k.current = None;
    }
    if acks == 0 {
        reclaim(k, t);
        restart_if_wanted(k, t);
    } else {
        kprintln!(
            "task {}: memory kept until {acks} server(s) answer its death notice",
            k.tasks[t].name
        );
    }
}

/// Server `s` answered the death notice of task `t` on endpoint `ep`.
pub fn acknowledge_death(k: &mut Kernel, s: TaskIdx, t: TaskIdx, ep: usize) -> abi::SysResult<()> {
    let State::Dead { acks } = k.tasks[t].state else {
        return Err(abi::Error::BadReplyToken);
    };
    if acks == 0 || k.endpoints.get(ep).is_none_or(|e| e.server != s) {
        return Err(abi::Error::BadReplyToken);
    }
    k.tasks[t].state = State::Dead { acks: acks - 1 };
    if acks == 1 {
        let frames = reclaim(k, t).freed;
        kprintln!(
            "task {}: death notices answered, {frames} frames reclaimed",
            k.tasks[t].name
        );
        restart_if_wanted(k, t);
    }
    Ok(())
}

/// A task the system description marks `restart`, which failed, comes
/// back from its boot-image record in the same slot (same capabilities,
/// badge and endpoints; a fresh address space; the next generation, which
/// it sees as its incarnation). Only after its old memory was reclaimed,
/// i.e. after every server that asked heard of its death and answered.
fn restart_if_wanted(k: &mut Kernel, t: TaskIdx) {
    let failed = !matches!(k.tasks[t].end, Some(End::Exited(0)));
    if !k.tasks[t].restart || !failed {
        return;
    }
    let Some((image, platform, pa_bits)) = k.boot.take() else {
        return;
    };
    let generation = k.tasks[t].generation.wrapping_add(1);
    let created = image
        .task(t as u32)
        .ok_or_else(|| alloc::string::String::from("no such task record"))
        .and_then(|rec| {
            super::loader::create_task(
                &rec,
                t,
                generation,
                &platform,
                &k.pci,
                &mut k.endpoints,
                &mut k.irqs,
                pa_bits,
            )
        });
    k.boot = Some((image, platform, pa_bits));
    match created {
        Ok(task) => {
            kprintln!("task {}: restarted (incarnation {generation})", task.name);
            k.tasks[t] = task;
            k.make_ready(t);
        }
        Err(e) => kprintln!("task {}: restart failed: {e}", k.tasks[t].name),
    }
}

/// Frees a dead task's memory once no CPU mapping can reach it; frames
/// the IOMMU server still has pinned are held for DMA instead, and IOMMU
/// pool frames are kept. Returns what happened to its frames.
fn reclaim(k: &mut Kernel, t: TaskIdx) -> Reclaimed {
    let Some(space) = k.tasks[t].space.take() else {
        return Reclaimed::default();
    };
    arch::mmu::flush_asid(space.asid());
    let r = space.destroy();
    let name = &k.tasks[t].name;
    if r.held > 0 {
        kprintln!(
            "task {name}: {} frames still pinned for DMA: held until the IOMMU server unpins them",
            r.held
        );
    }
    if r.pool_kept > 0 {
        kprintln!(
            "task {name}: {} IOMMU pool frames kept, never freed: the SMMU may still walk them",
            r.pool_kept
        );
    }
    r
}
