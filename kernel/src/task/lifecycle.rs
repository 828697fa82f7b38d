//! The end of a task: the report when it faults or exits, failing every
//! call that depended on it, masking its interrupts, announcing its death
//! to servers that asked for it, and reclaiming its memory only after
//! every one of those servers has answered (the IOMMU server must tear
//! down the device mappings of the memory before it can be reused). The
//! answers are counted by `Kernel::death_notices`: each delivered notice
//! is answered once, by the server it went to, with the token it carried;
//! anything else is `BadReplyToken` and changes nothing. Never frees a
//! frame a TLB may still translate to, one whose notices are owed, nor one
//! the IOMMU server still has pinned: those are held for DMA until the
//! last unpin (`mm::frames`). When the IOMMU server itself ends,
//! `dma_stop` stops all DMA before anything of it is freed; its pool is
//! freed only if the SMMU acknowledged that stop, and kept otherwise.

use super::ipc::{self, fail_call};
use kernel_core::death::Notice;

use super::{Cap, End, Kernel, State, TaskIdx};
use crate::arch::Fault;
use crate::mm::user::Reclaimed;
use crate::{arch, kprintln};

/// A task's fault: report it by name with the architecture's description
/// (kind, decoded syndrome, fault address, where), stop it.
pub fn fault(k: &mut Kernel, t: TaskIdx, fault: &Fault) {
    kprintln!("task {} faulted: {fault}; stopped", k.tasks[t].name);
    end(k, t, End::Faulted);
}

/// Ends task `t` (exit or fault) and releases what it held.
pub fn end(k: &mut Kernel, t: TaskIdx, how: End) {
    if let End::Exited(code) = how {
        kprintln!("task {} exited with code {code}", k.tasks[t].name);
    }
    // The SMMU owner's death stops all DMA before anything is freed.
    crate::dma_stop::on_task_end(k, t);
    if let State::SendBlocked { ep } = k.tasks[t].state {
        k.endpoints[ep].senders.retain(|&c| c != t);
    }
    k.tasks[t].end = Some(how);
    k.tasks[t].call = None;
    k.tasks[t].state = State::Dead;

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
        arch::irq::mask(intid);
        k.irqs.remove(&intid);
    }

    // Notices it received as a server and did not answer go back to their
    // endpoints, for its next instance.
    let me = k.task_ref(t);
    k.death_notices.server_ended(me);

    // Servers that asked to hear of their clients' deaths are told; the
    // memory waits for their answers.
    let notices: alloc::vec::Vec<(usize, u32)> = k.tasks[t]
        .caps
        .iter()
        .filter_map(|c| match *c {
            Cap::Endpoint {
                ep,
                serve: false,
                badge,
            } => Some((ep, badge)),
            _ => None,
        })
        .filter(|&(ep, _)| {
            let e = &k.endpoints[ep];
            e.death_notices && k.tasks[e.server].end.is_none()
        })
        .collect();
    if k.current == Some(t) {
        k.current = None;
    }
    if k.death_notices.free() < notices.len() {
        // Sized at load so that this cannot happen; if it did, nothing
        // could ever say the memory is unreachable: keep it.
        kprintln!(
            "task {}: no room to record its death notices; its memory is kept for good",
            k.tasks[t].name
        );
        return;
    }
    for (ep, badge) in notices {
        let notice = Notice {
            dead: me,
            endpoint: ep as u16,
            badge,
        };
        if k.death_notices.announce(notice).is_ok() {
            ipc::try_receive(k, k.endpoints[ep].server);
        }
    }
    let owed = k.death_notices.outstanding(me);
    if owed == 0 {
        reclaim(k, t);
        restart_if_wanted(k, t);
    } else {
        kprintln!(
            "task {}: memory kept until {owed} server(s) answer its death notice",
            k.tasks[t].name
        );
    }
}

/// Server `s` answers a death notice with `tok`: accepted once, only from
/// the server instance the notice was delivered to with that token. When
/// the last notice of a dead task is answered its memory is reclaimed
/// (and the task restarted if it should be).
pub fn acknowledge_death(k: &mut Kernel, s: TaskIdx, tok: u64) -> abi::SysResult<()> {
    let replier = k.task_ref(s);
    let acked = k
        .death_notices
        .acknowledge(tok, replier)
        .ok_or(abi::Error::BadReplyToken)?;
    if acked.remaining > 0 {
        return Ok(());
    }
    let dead = acked.notice.dead;
    let t = usize::from(dead.index);
    // The ledger holds notices of dead instances only (a restart forgets
    // the old instance's): this is that instance.
    if k.tasks
        .get(t)
        .is_none_or(|x| x.state != State::Dead || x.generation != dead.generation)
    {
        return Ok(());
    }
    let frames = reclaim(k, t).freed;
    kprintln!(
        "task {}: death notices answered, {frames} frames reclaimed",
        k.tasks[t].name
    );
    restart_if_wanted(k, t);
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
            // Nothing of the old instance is owed any more; nothing of it
            // may ever be delivered as the new one's.
            let old = k.task_ref(t);
            k.death_notices.forget(old);
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
    // The CPU may still have this space installed (the task died running):
    // take it off before its tables are freed.
    if k.user_space.is_some_and(|(root, _)| root == space.root()) {
        arch::mmu::clear_user_space();
        k.user_space = None;
    }
    arch::mmu::flush_tag(space.asid());
    let mut r = space.destroy();
    crate::dma_stop::after_reclaim(k, t, &mut r);
    let name = &k.tasks[t].name;
    kprintln!(
        "task {name}: {} frames reclaimed, {} of them page tables (kernel quota {})",
        r.freed,
        r.tables,
        r.table_quota
    );
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
