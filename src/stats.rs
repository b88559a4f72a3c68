//! Statistics: the snapshot (`obm_stats`) merged from the counters
//! (`counters`), the heaps, the pools and the large regions, and the
//! table `obm_print_stats` and `OBMEM_SHOW_STATS=1` print.

use crate::config::{NUM_CLASSES, UNIT_SIZE};
use crate::counters::*;
use core::sync::atomic::Ordering::Relaxed;

/// Statistics of one size class.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct obm_class_stats {
    /// Bytes per block.
    pub block_size: usize,
    /// Pools serving this class.
    pub pools: usize,
    /// Blocks handed out and not yet freed (blocks freed by another thread
    /// count until the owning thread takes them back).
    pub blocks_in_use: usize,
    /// Blocks of those pools available for allocation.
    pub blocks_free: usize,
    /// Allocations served from this class since the start.
    pub allocations: usize,
}

/// The number of size classes (`obm_stats.classes`).
pub const OBM_NUM_CLASSES: usize = 96;
const _: () = assert!(OBM_NUM_CLASSES == NUM_CLASSES);

/// A snapshot of the allocator's statistics (`obm_get_stats`).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy)]
pub struct obm_stats {
    /// Bytes in blocks handed out (block sizes, pools and large blocks).
    pub bytes_in_use: usize,
    /// Bytes currently mapped from the OS (arenas, large blocks, metadata).
    pub bytes_mapped: usize,
    /// The most `bytes_mapped` has been.
    pub peak_mapped: usize,
    /// Arenas handed to thread heaps since the start.
    pub arenas_allocated: usize,
    /// Arenas returned empty since the start.
    pub arenas_freed: usize,
    /// Arenas held by thread heaps now.
    pub arenas_in_use: usize,
    /// The most arenas held at once.
    pub arenas_peak: usize,
    /// Large (mapped) blocks in use and their usable bytes.
    pub large_blocks: usize,
    pub large_bytes: usize,
    /// Large blocks allocated since the start.
    pub large_allocations: usize,
    /// Freed large mappings kept for reuse, and their bytes.
    pub large_cached: usize,
    pub large_cached_bytes: usize,
    /// Free memory kept for reuse with its pages resident: free units of
    /// arenas and cached large mappings that have not yet waited the purge
    /// delay (`OBMEM_PURGE_DELAY_MS`). The empty pools a thread keeps for
    /// its next allocations (queue heads and kept pools) are not counted.
    pub bytes_kept: usize,
    /// Free memory given back to the OS since the start (pages discarded or
    /// unmapped while free).
    pub bytes_purged: usize,
    /// Thread heaps ever created.
    pub heaps: usize,
    /// Bytes mapped but not usable for blocks, as sys._debugmallocstats
    /// counts them: each arena's header unit and each large block's header;
    /// the tail of each pool too short for one more block; the padding
    /// before over-aligned large blocks.
    pub bytes_lost_headers: usize,
    pub bytes_lost_quantization: usize,
    pub bytes_lost_alignment: usize,
    pub num_classes: usize,
    pub classes: [obm_class_stats; OBM_NUM_CLASSES],
}

/// Merges every heap's counters and the global ones.
pub fn snapshot() -> obm_stats {
    crate::heap::reclaim_abandoned();
    crate::heap::drain_current();
    let mut s = obm_stats {
        bytes_in_use: 0,
        bytes_mapped: MAPPED.load(Relaxed),
        peak_mapped: PEAK_MAPPED.load(Relaxed),
        arenas_allocated: ARENAS_ALLOCATED.load(Relaxed),
        arenas_freed: ARENAS_FREED.load(Relaxed),
        arenas_in_use: 0,
        arenas_peak: ARENAS_PEAK.load(Relaxed),
        large_blocks: LARGE_BLOCKS.load(Relaxed),
        large_bytes: LARGE_BYTES.load(Relaxed),
        large_allocations: LARGE_ALLOCS.load(Relaxed),
        large_cached: 0,
        large_cached_bytes: 0,
        bytes_kept: 0,
        bytes_purged: crate::purge::PURGED_BYTES.load(Relaxed),
        heaps: 0,
        bytes_lost_headers: 0,
        bytes_lost_quantization: 0,
        bytes_lost_alignment: LARGE_ALIGN_LOSS.load(Relaxed),
        num_classes: NUM_CLASSES,
        classes: [obm_class_stats::default(); OBM_NUM_CLASSES],
    };
    s.arenas_in_use = s.arenas_allocated - s.arenas_freed.min(s.arenas_allocated);
    let large_resident;
    (s.large_cached, s.large_cached_bytes, large_resident) = crate::large::cached();
    let mut allocs = [0u64; NUM_CLASSES];
    let (mut cached_spans, mut cached_bytes) = (0usize, 0usize);
    crate::heap::for_each_heap(|h| {
        s.heaps += 1;
        for (c, n) in allocs.iter_mut().enumerate() {
            *n = n.wrapping_add(h.stats.allocs[c + 1].load(Relaxed));
        }
        // The shared counters count a thread's cached spans as the blocks
        // freed into them (large/span_cache.rs).
        let (spans, bytes, taken) = h.spans.counts();
        cached_spans += spans;
        cached_bytes += bytes;
        s.large_allocations = s.large_allocations.wrapping_add(taken);
    });
    s.large_blocks = s.large_blocks.saturating_sub(cached_spans);
    s.large_bytes = s
        .large_bytes
        .saturating_sub(cached_bytes - cached_spans * crate::large::HEADER);
    // Read apart from the peak, which another thread may just be raising.
    s.peak_mapped = s.peak_mapped.max(s.bytes_mapped);
    s.large_cached += cached_spans;
    s.large_cached_bytes += cached_bytes;
    let mut pools = [0usize; NUM_CLASSES];
    let mut in_use = [0usize; NUM_CLASSES];
    let mut dirty_units = 0;
    crate::arena::for_each_arena(|a| {
        dirty_units += a.dirty_count();
    });
    crate::arena::for_each_pool(|pool| {
        pools[pool.class()] += 1;
        in_use[pool.class()] += pool.used() as usize;
        allocs[pool.class()] = allocs[pool.class()].wrapping_add(pool.allocs.load(Relaxed));
    });
    s.bytes_kept = dirty_units * UNIT_SIZE
        + crate::arena::reserve_warm_units() * UNIT_SIZE
        + large_resident
        + cached_bytes;
    for c in 0..NUM_CLASSES {
        // SAFETY: c < NUM_CLASSES.
        let info = unsafe { crate::size_class::info(c) };
        let cs = &mut s.classes[c];
        cs.block_size = info.block_size as usize;
        cs.pools = pools[c];
        cs.blocks_in_use = in_use[c];
        cs.blocks_free = (cs.pools * info.capacity as usize).saturating_sub(cs.blocks_in_use);
        // The counters and the pools are read one after the other while
        // other threads allocate: a block counted in a pool may not be in
        // its heap's counter yet. Keep the snapshot consistent.
        cs.allocations = (allocs[c] as usize).max(cs.blocks_in_use);
        s.bytes_in_use += cs.blocks_in_use * cs.block_size;
        let pool_bytes = info.units as usize * UNIT_SIZE;
        s.bytes_lost_quantization +=
            cs.pools * (pool_bytes - info.capacity as usize * cs.block_size);
    }
    s.bytes_lost_headers = s.arenas_in_use * UNIT_SIZE + s.large_blocks * crate::large::HEADER;
    s.bytes_in_use += s.large_bytes;
    s
}

/// Writes the statistics table to `fd` (sys._debugmallocstats style).
pub fn print(fd: i32) {
    use core::fmt::Write;
    let s = snapshot();
    let mut b = crate::report::LineBuf::new();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let _ = writeln!(b, "obmem statistics (pid {pid})");
    let _ = writeln!(
        b,
        "class   size   pools    in use      free     allocations"
    );
    b.flush_to(fd);
    for (c, cs) in s.classes.iter().enumerate() {
        if cs.pools == 0 && cs.allocations == 0 {
            continue;
        }
        let _ = writeln!(
            b,
            "{c:>5} {:>6} {:>7} {:>9} {:>9} {:>15}",
            cs.block_size, cs.pools, cs.blocks_in_use, cs.blocks_free, cs.allocations
        );
        b.flush_to(fd);
    }
    let _ = writeln!(b, "bytes in use          {:>14}", s.bytes_in_use);
    let _ = writeln!(b, "bytes mapped          {:>14}", s.bytes_mapped);
    let _ = writeln!(b, "peak bytes mapped     {:>14}", s.peak_mapped);
    let _ = writeln!(
        b,
        "arenas in use         {:>14}   (allocated {}, freed {}, peak {})",
        s.arenas_in_use, s.arenas_allocated, s.arenas_freed, s.arenas_peak
    );
    b.flush_to(fd);
    let _ = writeln!(
        b,
        "large blocks in use   {:>14}   ({} bytes; {} allocated; {} cached, {} bytes)",
        s.large_blocks, s.large_bytes, s.large_allocations, s.large_cached, s.large_cached_bytes
    );
    let _ = writeln!(
        b,
        "bytes kept for reuse  {:>14}   (given back to the OS so far {})",
        s.bytes_kept, s.bytes_purged
    );
    let _ = writeln!(b, "thread heaps          {:>14}", s.heaps);
    let _ = writeln!(
        b,
        "bytes lost to headers {:>14}   (quantization {}, alignment {})",
        s.bytes_lost_headers, s.bytes_lost_quantization, s.bytes_lost_alignment
    );
    b.flush_to(fd);
    if let Some((recorded, quarantined, bytes)) = crate::debug::counts() {
        let _ = writeln!(
            b,
            "debug hooks on: {recorded} blocks recorded, {quarantined} in quarantine ({bytes} bytes)"
        );
        b.flush_to(fd);
    }
    print_census(fd);
}

/// The census section of the table: live objects and bytes per type,
/// most bytes first (nothing when no object lives).
fn print_census(fd: i32) {
    use core::fmt::Write;
    let mut b = crate::report::LineBuf::new();
    let mut first = true;
    crate::census::sorted(|ty, objects, bytes| {
        if first {
            let _ = writeln!(b, "objects by type          objects          bytes");
            first = false;
        }
        let name = if ty.is_null() {
            "(other types)"
        } else {
            crate::object::type_name(ty as *const crate::object::obm_type)
        };
        let _ = writeln!(b, "  {name:<20.20} {objects:>12} {bytes:>14}");
        b.flush_to(fd);
    });
}
