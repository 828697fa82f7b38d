//! The frames the kernel may give back once it has stopped all DMA after
//! the IOMMU server died (`crate::dma_stop`): the dead server's pool and
//! the frames held for DMA by its pins. Only `dma_stop` calls this, and
//! only after the SMMU acknowledged the global abort; never before.

use kernel_core::ledger::AfterDmaStop;

use super::{FRAMES, LEDGER, give_back};

/// Frees every dead server's pool run and drops every pin (held frames
/// become free), through the ledger. The caller has stopped all DMA.
pub fn release_after_dma_stop() -> AfterDmaStop {
    let mut frames = FRAMES.lock();
    let out = LEDGER.lock().release_after_dma_stop();
    for &(f, n) in &out.freed {
        give_back(&mut frames, f, n);
    }
    out
}
