//! Large blocks: requests above the largest size class. Each has a
//! 64-byte header (`Header`) before the block: just before it for a span,
//! at the start of a mapping of its own, where the arena map finds it from
//! the block's chunk. `malloc_usable_size` is the end of the block's pages
//! (`base + map_size`) minus its start.
//!
//! Blocks of up to `LARGE_SPAN_MAX` aligned to at most a granule are spans
//! of 64 KiB granules in regions (region.rs): a freed span's granules keep
//! their pages for the purge delay and serve the next blocks, split and
//! merged as the requests need, so a program that frees and allocates
//! large blocks reuses resident pages instead of faulting fresh ones. A
//! freed block's header says FREED while its page is resident, and the
//! region records where it started until the granule is reused, so a
//! double free is reported. `realloc` of a span grows into the free
//! granules after it or gives back its last granules, else the caller
//! copies to a new block, with room to grow if the step was small
//! (`roomy_size`).
//!
//! Bigger blocks, over-aligned ones and those for which no region can be
//! made get a mapping of their own, unmapped on free; `realloc` grows them
//! with mremap, in place when the pages after the mapping are free,
//! otherwise by moving the pages (no copy) to a new aligned reservation.

mod region;
mod span_cache;
mod stretches;

pub use span_cache::SpanCache;

use crate::arena_map::{self, CHUNK_LARGE, CHUNK_LARGE_BEHIND, CHUNK_SPAN};
use crate::config::*;
use crate::counters;
use crate::fault::Site;
use crate::os;
use crate::purge;
use crate::report;
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering::*};
use region::{Refused, GRANULE};

pub(crate) const HEADER: usize = 64;
/// Mappings of their own of at least this size ask for transparent huge pages.
const HUGE_LARGE_MIN: usize = 4 << 20;
const LIVE: usize = 0x6f62_6d65_6d4c_5247; // "obmemLRG"
const FREED: usize = 0x6f62_6d65_6d46_5245; // "obmemFRE"

#[repr(C)]
struct Header {
    magic: AtomicUsize,
    /// The block handed out.
    user: usize,
    /// The start of the block's memory: its span, or its own mapping (which
    /// starts with this header).
    base: usize,
    /// Bytes of the block's pages from `base`.
    map_size: usize,
    /// Granules of the block's span in a region; 0 for a mapping of its own.
    span: usize,
    /// A heap profile's sample (`stacks::record`'s tag, 0: none) and
    /// the bytes and blocks it stands for.
    sample: [usize; 3],
}

const _: () = assert!(core::mem::size_of::<Header>() <= HEADER);

#[inline]
fn round_pages(n: usize) -> Option<usize> {
    n.checked_add(PAGE_SIZE - 1).map(|v| v & !(PAGE_SIZE - 1))
}

/// The header of the large block at `p`, given the map's kind for `p`'s
/// chunk; null if `p` cannot be a block there.
fn header_of(p: *const u8, kind: u8) -> *mut Header {
    let p = p as usize;
    let at = match kind {
        // Blocks in regions are aligned, and a region's bookkeeping before
        // its first marked chunk is mapped: the 64 bytes before any such
        // `p` are readable.
        CHUNK_SPAN if p.is_multiple_of(ALIGNMENT) => p - HEADER,
        CHUNK_SPAN => 0,
        CHUNK_LARGE_BEHIND => (p & !ARENA_MASK) - ARENA_SIZE,
        _ => p & !ARENA_MASK,
    };
    at as *mut Header
}

/// Gives back every free page of the regions (`obm_trim`); returns the
/// bytes.
pub fn trim() -> usize {
    let mut bytes = 0;
    for slot in &SAMPLES {
        let base = slot.swap(0, Acquire);
        if base != 0 {
            // SAFETY: a kept sample's header, ours since the swap.
            let span = unsafe { (*(base as *const Header)).span };
            release_memory(base, PAGE_SIZE, span, base + HEADER);
            if span == 0 {
                bytes += PAGE_SIZE;
            }
        }
    }
    bytes + region::trim()
}

/// Gives back about `bytes` of the free pages kept for large blocks,
/// expired or not (`purge::units_took_fresh`).
pub fn give_back(bytes: usize) {
    region::give_back(bytes);
}

/// Gives back the free pages of the regions whose purge delay has run out
/// at `now` (the process-wide sweep, `heap::purge_if_due`).
pub fn purge_expired(now: u64) {
    region::purge_expired(now);
}

/// A mapping of its own for `map_size` bytes whose block, `offset` bytes
/// in, is aligned to `align`; null if the OS refuses.
fn map_own(map_size: usize, align: usize, offset: usize) -> *mut u8 {
    let base = os::map_aligned_at(
        map_size,
        align.max(ARENA_SIZE),
        offset & !ARENA_MASK,
        Site::Large,
    );
    if !base.is_null() {
        counters::add_mapped(map_size);
        if map_size >= HUGE_LARGE_MIN {
            // SAFETY: the mapping was just made by os.
            unsafe { os::advise_huge(base, map_size) };
        }
    }
    base
}

fn enomem() -> (*mut u8, bool) {
    os::set_errno(libc::ENOMEM);
    (ptr::null_mut(), false)
}

/// Allocates a large block of `n` bytes aligned to `align` (a power of two).
/// Returns the block and whether its memory is known to be zero.
pub fn alloc(n: usize, align: usize, spans: Option<&SpanCache>) -> (*mut u8, bool) {
    // A zero-byte request still needs a byte of its own: with a header one
    // arena back, the block would otherwise start past its mapping's end.
    let n = n.max(1);
    let behind = align >= ARENA_SIZE;
    let offset = if behind {
        ARENA_SIZE
    } else {
        align.max(HEADER)
    };
    let Some(map_size) = n.checked_add(offset).and_then(round_pages) else {
        return enomem();
    };
    if n > MAX_REQUEST {
        return enomem();
    }
    let mut taken = None;
    if let Some(spans) = spans {
        // The thread's cache missed: its spans go back if they have waited
        // the purge delay (another thread's sweep would find them too).
        spans.flush_if_expired(|c| uncache(c, true));
    }
    if align <= GRANULE && map_size <= LARGE_SPAN_MAX {
        match region::take(map_size.div_ceil(GRANULE), map_size, spans) {
            Ok(s) => taken = Some(s),
            Err(Refused::Failed) => return enomem(),
            Err(Refused::NoRegion) => {}
        }
    }
    let (base, span, zeroed) = match taken {
        Some(s) => (s.base, s.granules, s.zeroed),
        None => {
            let mut base = map_own(map_size, align, offset);
            if base.is_null()
                && os::address_space_limited()
                && crate::arena::give_back_address_space()
            {
                // Under RLIMIT_AS, the free arenas the reserve kept mapped
                // may have been what was missing.
                base = map_own(map_size, align, offset);
            }
            if base.is_null() {
                return enomem();
            }
            (base as usize, 0, true)
        }
    };
    let user = base + offset;
    let hdr = if span != 0 { user - HEADER } else { base } as *mut Header;
    // SAFETY: the header lies in the block's memory, before the block,
    // which nobody else references.
    unsafe {
        (*hdr).user = user;
        (*hdr).base = base;
        (*hdr).map_size = map_size;
        (*hdr).span = span;
        (*hdr).sample[0] = 0;
        (*hdr).magic.store(LIVE, Release);
    }
    if span == 0 {
        let kind = if behind {
            CHUNK_LARGE_BEHIND
        } else {
            CHUNK_LARGE
        };
        if !arena_map::set(user & !ARENA_MASK, kind) {
            // SAFETY: the mapping was just made and is not registered.
            unsafe { os::unmap(base as *mut u8, map_size) };
            counters::sub_mapped(map_size);
            return enomem();
        }
    }
    count_alloc(base, map_size, user);
    (user as *mut u8, zeroed)
}

/// The size to allocate for a large block of `n` bytes that `realloc`
/// moves after a small step of growth: half as much again, if that stays
/// a span. The room costs address space in a region, and memory only
/// where it takes dirty granules, until the block grows into it. Blocks
/// bigger than a span get none: they grow with mremap, without copying.
pub fn roomy_size(n: usize) -> usize {
    let roomy = n.saturating_add(n / 2);
    if roomy <= LARGE_SPAN_MAX - PAGE_SIZE {
        roomy
    } else {
        n
    }
}

/// A block of `n` bytes at the default alignment from the span of a block
/// the calling thread freed (`cache` is its heap's), or null.
pub fn alloc_cached(cache: &SpanCache, n: usize) -> *mut u8 {
    let Some(map_size) = n.max(1).checked_add(HEADER).and_then(round_pages) else {
        return ptr::null_mut();
    };
    let k = map_size.div_ceil(GRANULE);
    if k > span_cache::MAX_GRANULES {
        return ptr::null_mut();
    }
    let Some(c) = cache.take(k) else {
        return ptr::null_mut();
    };
    if map_size != c.map_size {
        count_resized(c.map_size, map_size);
    }
    let hdr = c.base as *mut Header;
    // SAFETY: the span is ours since `take`; its first 64 bytes are the
    // header of the block freed into it, resident, a normal block's (its
    // `user` right after it). Fields are written only if they change: a
    // program that has just written a cold line waits for that store once
    // the CPU's store buffer fills (BENCHMARKS.md, nineteenth session).
    unsafe {
        debug_assert_eq!((*hdr).user, c.base + HEADER);
        if (*hdr).map_size != map_size {
            (*hdr).map_size = map_size;
        }
        if (*hdr).sample[0] != 0 {
            (*hdr).sample[0] = 0;
        }
        (*hdr).magic.store(LIVE, Release);
    }
    (c.base + HEADER) as *mut u8
}

/// A cached span serves a block of `new` bytes of pages where the shared
/// counters count the `old` of the block freed into it: they count the
/// new one (span_cache.rs).
#[inline(never)]
fn count_resized(old: usize, new: usize) {
    counters::remap(new, old);
    if new > old {
        region::note_live(counters::LARGE_BYTES.fetch_add(new - old, Relaxed) + (new - old));
    } else {
        counters::LARGE_BYTES.fetch_sub(old - new, Relaxed);
    }
}

/// Returns a span of the calling thread's cache (`SpanCache`) to its
/// region, its pages kept for reuse unless `expired` (then given back).
fn uncache(c: span_cache::FreedSpan, expired: bool) {
    c.uncount();
    region::release(c.base, c.granules, c.map_size, true, expired);
}

/// Returns the spans of `cache` to their regions: all of them, or only if
/// the oldest has waited the purge delay at `now` (`Some(now)`), in which
/// case their pages go back to the OS.
pub fn flush_cache(cache: &SpanCache, expired_at: Option<u64>) {
    cache.flush(expired_at, |c| uncache(c, expired_at.is_some()));
}

/// Counts a new live block at `user` in the pages [base, base + map_size).
fn count_alloc(base: usize, map_size: usize, user: usize) {
    counters::LARGE_BLOCKS.fetch_add(1, Relaxed);
    counters::LARGE_ALLOCS.fetch_add(1, Relaxed);
    let usable = base + map_size - user;
    region::note_live(counters::LARGE_BYTES.fetch_add(usable, Relaxed) + usable);
    let loss = user - base - HEADER;
    if loss != 0 {
        counters::LARGE_ALIGN_LOSS.fetch_add(loss, Relaxed);
    }
}

// ---------------------------------------------------------------------------
// The heap profiler's samples

/// Freed one-page sampled blocks, their span or mapping kept (still taken
/// from its region, or registered) with a FREED header at `base`, for the
/// next samples. Most samples are small blocks, and a region's or the
/// OS's bookkeeping cost more per sample than the rest of the sampling
/// (BENCHMARKS.md, issue 14). A slot is taken by swapping it to 0, so no
/// lock (and nothing to do at fork); at most `SAMPLE_SLOTS` pages, given
/// back by `trim`.
static SAMPLES: [AtomicUsize; SAMPLE_SLOTS] = [const { AtomicUsize::new(0) }; SAMPLE_SLOTS];
const SAMPLE_SLOTS: usize = 16;

/// `alloc` for a heap profile's sample: a kept sample's page if `n` bytes
/// fit one at the default alignment and `SAMPLES` has one.
pub fn alloc_sample(n: usize, align: usize) -> (*mut u8, bool) {
    if n <= PAGE_SIZE - HEADER && align <= HEADER {
        for slot in &SAMPLES {
            if slot.load(Relaxed) == 0 {
                continue;
            }
            let base = slot.swap(0, Acquire);
            if base == 0 {
                continue;
            }
            let hdr = base as *mut Header;
            // SAFETY: taking the slot made the block ours; its header
            // still holds its memory's fields (`free` keeps them).
            unsafe {
                (*hdr).sample[0] = 0;
                (*hdr).magic.store(LIVE, Release);
            }
            count_alloc(base, PAGE_SIZE, base + HEADER);
            return ((base + HEADER) as *mut u8, false);
        }
    }
    alloc(n, align, None)
}

/// Keeps the freed one-page sample whose header is at `base`; false if
/// `SAMPLES` is full.
fn sample_put(base: usize) -> bool {
    SAMPLES.iter().any(|slot| {
        slot.load(Relaxed) == 0 && slot.compare_exchange(0, base, Release, Relaxed).is_ok()
    })
}

/// Gives a freed block's memory back: its span to its region, or its
/// mapping to the OS.
fn release_memory(base: usize, map_size: usize, span: usize, user: usize) {
    if span != 0 {
        // The region records where a normal block started.
        region::release(base, span, map_size, user == base + HEADER, false);
        return;
    }
    arena_map::clear(user & !ARENA_MASK);
    // SAFETY: the block is freed and unregistered.
    unsafe { os::unmap(base as *mut u8, map_size) };
    counters::sub_mapped(map_size);
}

/// Validates a pointer the arena map marks as large; returns its header.
#[inline(always)]
fn checked_header(p: *const u8, kind: u8, func: &str) -> *mut Header {
    let hdr = header_of(p, kind);
    if hdr.is_null() {
        report::invalid_pointer(func, p);
    }
    // SAFETY: the map says a large block's header, if p is one, is mapped
    // at `hdr` (header_of).
    let (magic, user) = unsafe { ((*hdr).magic.load(Acquire), (*hdr).user) };
    if user == p as usize && magic == LIVE {
        return hdr;
    }
    not_live(p, kind, magic, user, func)
}

/// `checked_header` found no live block at `p`: reports it.
#[cold]
#[inline(never)]
fn not_live(p: *const u8, kind: u8, magic: usize, user: usize, func: &str) -> ! {
    // A freed span's header may have gone back with its pages: the region
    // remembers where freed blocks started.
    if (user == p as usize && magic == FREED)
        || (kind == CHUNK_SPAN && region::freed_block_at(p as usize))
    {
        report::fatal(format_args!("{func}(): double free of {p:p}"));
    }
    report::invalid_pointer(func, p)
}

/// Usable bytes of the large block `p`.
///
/// # Safety
/// `kind` is what `arena_map::lookup(p)` returned for `p`, and is a large
/// kind (`CHUNK_LARGE`, `CHUNK_LARGE_BEHIND` or `CHUNK_SPAN`): it says
/// where the header is.
pub unsafe fn usable_size(p: *const u8, kind: u8, func: &str) -> usize {
    let hdr = checked_header(p, kind, func);
    // SAFETY: checked_header validated a live header.
    unsafe { (*hdr).base + (*hdr).map_size - p as usize }
}

/// The usable size of `p` if it is a live large block's start, else 0
/// (never reports: for callers that only count).
pub fn size_if_block(p: *const u8, kind: u8) -> usize {
    let hdr = header_of(p, kind);
    if hdr.is_null() {
        return 0;
    }
    // SAFETY: as in checked_header.
    let (magic, user, end) = unsafe {
        (
            (*hdr).magic.load(Acquire),
            (*hdr).user,
            (*hdr).base + (*hdr).map_size,
        )
    };
    if magic == LIVE && user == p as usize {
        end - user
    } else {
        0
    }
}

/// Tags the large block `p`, just allocated, as a heap profile's sample.
///
/// # Safety
/// `p` is a live large block (`alloc_sample`'s) that the caller alone
/// uses: its header is written unchecked.
pub unsafe fn set_sample(p: *mut u8, tag: usize, bytes: u64, blocks: u64) {
    let hdr = header_of(p, arena_map::lookup(p as usize));
    // SAFETY: per the contract, hdr is the header of p, ours to write.
    unsafe { (*hdr).sample = [tag, bytes as usize, blocks as usize] };
}

/// Frees the large block `p`, into `cache` (the calling thread's) if it
/// is a span it keeps.
///
/// # Safety
/// `kind` is what `arena_map::lookup(p)` returned for `p`, and is a large
/// kind: it says where the header is.
pub unsafe fn free(p: *mut u8, kind: u8, func: &str, cache: Option<&SpanCache>) {
    let hdr = checked_header(p, kind, func);
    // SAFETY: checked_header validated a live header.
    let h = unsafe { &*hdr };
    // The common case first, with few registers to save (the rest is out
    // of line): a program freeing a block has often just written a cold
    // line, and waits for that store once the CPU's store buffer fills
    // (BENCHMARKS.md, nineteenth session).
    if let Some(cache) = cache.filter(|cache| h.sample[0] == 0 && caches_span(cache, h)) {
        let c = freed_span(h);
        h.magic.store(FREED, Release);
        if !cache.put_if_room(c) {
            put(cache, c);
        }
        return;
    }
    // SAFETY: as above.
    unsafe { free_checked(hdr, cache) }
}

/// Whether `cache`, the freeing thread's, keeps the span of the block of
/// header `h` when it is freed: a span of a normal block small enough,
/// while freed pages wait before they go back.
#[inline(always)]
fn caches_span(cache: &SpanCache, h: &Header) -> bool {
    cache.keeps()
        && (1..=span_cache::MAX_GRANULES).contains(&h.span)
        && h.user == h.base + HEADER
        && purge::delay_ms() != 0
}

#[inline(always)]
fn freed_span(h: &Header) -> span_cache::FreedSpan {
    span_cache::FreedSpan {
        base: h.base,
        granules: h.span,
        map_size: h.map_size,
    }
}

/// `SpanCache::put`, evicted spans back to their regions.
#[inline(never)]
fn put(cache: &SpanCache, c: span_cache::FreedSpan) {
    cache.put(c, |evicted| uncache(evicted, false));
}

/// `free` of the large block whose live header is `hdr`, past the common
/// case.
///
/// # Safety
/// `hdr` is a header `checked_header` validated.
#[inline(never)]
unsafe fn free_checked(hdr: *mut Header, cache: Option<&SpanCache>) {
    // SAFETY: per the contract.
    let h = unsafe { &*hdr };
    let (user, base, map_size, span, sample) = (h.user, h.base, h.map_size, h.span, h.sample);
    if sample[0] != 0 {
        crate::stacks::release(sample[0], sample[1] as u64, sample[2] as u64);
    }
    let sample_page = sample[0] != 0 && map_size == PAGE_SIZE && user == base + HEADER;
    if let Some(cache) = cache.filter(|cache| !sample_page && caches_span(cache, h)) {
        h.magic.store(FREED, Release);
        put(cache, freed_span(h));
        return;
    }
    counters::LARGE_BLOCKS.fetch_sub(1, Relaxed);
    counters::LARGE_BYTES.fetch_sub(base + map_size - user, Relaxed);
    let loss = user - base - HEADER;
    if loss != 0 {
        counters::LARGE_ALIGN_LOSS.fetch_sub(loss, Relaxed);
    }
    // The header is ours; marking it FREED makes a second free fail loudly
    // (while its page is resident: see region.rs for after).
    h.magic.store(FREED, Release);
    if sample_page && sample_put(base) {
        return;
    }
    release_memory(base, map_size, span, user);
}

/// Resizes the large block `p` to `n` bytes in place or by moving its pages.
/// Null if it cannot (the caller falls back to allocate-copy-free); `p`
/// then stays valid.
///
/// # Safety
/// `kind` is what `arena_map::lookup(p)` returned for `p`, and is a large
/// kind: it says where the header is.
pub unsafe fn realloc(
    p: *mut u8,
    kind: u8,
    n: usize,
    func: &str,
    spans: Option<&SpanCache>,
) -> *mut u8 {
    let hdr = checked_header(p, kind, func);
    // SAFETY: checked_header validated a live header.
    let (old_size, user, base, span) =
        unsafe { ((*hdr).map_size, (*hdr).user, (*hdr).base, (*hdr).span) };
    if kind == CHUNK_LARGE_BEHIND || user != base + HEADER {
        return ptr::null_mut();
    }
    let Some(new_size) = n.checked_add(HEADER).and_then(round_pages) else {
        return ptr::null_mut();
    };
    if new_size == old_size {
        return p;
    }
    if span != 0 {
        // SAFETY: as for `hdr`.
        return unsafe { resize_span(hdr, span, old_size, new_size, spans) };
    }
    if new_size < old_size {
        // Shrinking in place always succeeds; the tail goes back to the OS.
        // SAFETY: [base, base+old_size) is this block's mapping.
        if unsafe { os::remap_in_place(base as *mut u8, old_size, new_size) } {
            // SAFETY: the header stays at base.
            unsafe { (*hdr).map_size = new_size };
            counters::sub_mapped(old_size - new_size);
            counters::LARGE_BYTES.fetch_sub(old_size - new_size, Relaxed);
            return p;
        }
        return ptr::null_mut();
    }
    // SAFETY: as above.
    if unsafe { os::remap_in_place(base as *mut u8, old_size, new_size) } {
        // SAFETY: the header stays at base.
        unsafe { (*hdr).map_size = new_size };
    } else {
        let dest = os::map_aligned(new_size, ARENA_SIZE, Site::LargeMove);
        if dest.is_null() {
            return ptr::null_mut();
        }
        if !arena_map::set(dest as usize, CHUNK_LARGE) {
            // SAFETY: dest was just mapped and is unpublished.
            unsafe { os::unmap(dest, new_size) };
            return ptr::null_mut();
        }
        // The old range is free the moment mremap returns, and another
        // thread's new mapping may land on it and register its chunk: the
        // old entry must be gone before then.
        arena_map::clear(base);
        // SAFETY: both are our mappings; dest holds nothing yet.
        if !unsafe { os::remap_to(base as *mut u8, old_size, dest, new_size) } {
            // Still mapped and ours: nobody can have registered the chunk,
            // and its leaf exists, so this cannot fail.
            let restored = arena_map::set(base, CHUNK_LARGE);
            debug_assert!(restored);
            arena_map::clear(dest as usize);
            // SAFETY: as above.
            unsafe { os::unmap(dest, new_size) };
            return ptr::null_mut();
        }
        let nh = dest as *mut Header;
        // SAFETY: the header moved with the pages to dest.
        unsafe {
            (*nh).map_size = new_size;
            (*nh).user = dest as usize + HEADER;
            (*nh).base = dest as usize;
        }
        counters::add_mapped(new_size - old_size);
        counters::LARGE_BYTES.fetch_add(new_size - old_size, Relaxed);
        return (dest as usize + HEADER) as *mut u8;
    }
    counters::add_mapped(new_size - old_size);
    counters::LARGE_BYTES.fetch_add(new_size - old_size, Relaxed);
    p
}

/// Resizes the block whose header is `hdr`, a span of `span` granules,
/// from `old_size` to `new_size` bytes of pages, within its span, grown
/// into the free granules after it or with its last granules given back.
/// Null if it cannot (the caller copies).
///
/// # Safety
/// `hdr` is a live block's header, validated by the caller, at its span's
/// start.
unsafe fn resize_span(
    hdr: *mut Header,
    span: usize,
    old_size: usize,
    new_size: usize,
    spans: Option<&SpanCache>,
) -> *mut u8 {
    if new_size > LARGE_SPAN_MAX {
        return ptr::null_mut();
    }
    let base = hdr as usize;
    let k = new_size.div_ceil(GRANULE);
    if new_size > old_size {
        if k > span && !region::grow(base, span, k, new_size - old_size, spans) {
            return ptr::null_mut();
        }
        if k <= span {
            counters::add_mapped(new_size - old_size);
        }
        let grown = new_size - old_size;
        region::note_live(counters::LARGE_BYTES.fetch_add(grown, Relaxed) + grown);
    } else {
        if k < span {
            // The pages past new_size in the last granule kept stay as
            // they are; the granules after it go.
            region::release(
                base + k * GRANULE,
                span - k,
                old_size - new_size,
                false,
                false,
            );
        } else {
            counters::sub_mapped(old_size - new_size);
        }
        counters::LARGE_BYTES.fetch_sub(old_size - new_size, Relaxed);
    }
    // SAFETY: per the contract.
    unsafe {
        (*hdr).map_size = new_size;
        (*hdr).span = k;
    }
    (base + HEADER) as *mut u8
}

/// Runs of free granules that keep pages (and kept samples), the bytes
/// they keep, and the same bytes as resident (for statistics).
pub fn cached() -> (usize, usize, usize) {
    let (runs, bytes) = region::kept();
    let samples = SAMPLES.iter().filter(|s| s.load(Relaxed) != 0).count();
    let bytes = bytes + samples * PAGE_SIZE;
    (runs + samples, bytes, bytes)
}

pub fn lock_for_fork() {
    region::lock_for_fork();
}

/// # Safety
/// Called after `lock_for_fork`, in the parent or the child.
pub unsafe fn unlock_after_fork() {
    // SAFETY: per the contract.
    unsafe { region::unlock_after_fork() };
}

#[cfg(test)]
mod tests {
    use super::*;

    // The large-block calls, for blocks the tests made with `alloc`: the
    // kind they pass is the arena map's, as the contract asks.
    fn usable(p: *const u8) -> usize {
        let kind = arena_map::lookup(p as usize);
        // SAFETY: kind is the arena map's for p, a live large block.
        unsafe { usable_size(p, kind, "test") }
    }
    fn release(p: *mut u8) {
        let kind = arena_map::lookup(p as usize);
        // SAFETY: as in `usable`.
        unsafe { free(p, kind, "test", None) }
    }
    fn resize(p: *mut u8, n: usize) -> *mut u8 {
        let kind = arena_map::lookup(p as usize);
        // SAFETY: as in `usable`.
        unsafe { realloc(p, kind, n, "test", None) }
    }

    #[test]
    fn spans_are_disjoint_and_sized() {
        // Other tests allocate at the same time: only what these blocks
        // hold is checked, not where they land.
        let sizes = [
            MEDIUM_MAX + 1,
            GRANULE - HEADER,
            GRANULE - HEADER + 1,
            (3 << 20) + 12_345,
            LARGE_SPAN_MAX - HEADER,
        ];
        let ps: [*mut u8; 5] = core::array::from_fn(|i| alloc(sizes[i], ALIGNMENT, None).0);
        for (i, &p) in ps.iter().enumerate() {
            assert!(!p.is_null());
            assert_eq!(arena_map::lookup(p as usize), CHUNK_SPAN);
            assert_eq!(p as usize % GRANULE, HEADER, "header at a granule's start");
            let u = usable(p);
            assert!(
                u >= sizes[i] && u < sizes[i] + PAGE_SIZE,
                "usable {u} for {}",
                sizes[i]
            );
            // SAFETY: p has u usable bytes.
            unsafe { core::ptr::write_bytes(p, i as u8 + 1, u) };
        }
        for (i, &p) in ps.iter().enumerate() {
            // SAFETY: as above; a block overlapping another would show
            // the other's byte.
            let all = unsafe { core::slice::from_raw_parts(p, usable(p)) };
            assert!(
                all.iter().all(|&b| b == i as u8 + 1),
                "block {i} overwritten"
            );
            release(p);
        }
    }

    #[test]
    fn spans_grow_into_free_granules_and_shrink() {
        let (p, _) = alloc(300_000, ALIGNMENT, None);
        assert!(!p.is_null());
        // SAFETY: p has 300_000 usable bytes.
        unsafe { core::ptr::write_bytes(p, 0xcd, 300_000) };
        // Grown in place if the granules after it are free, else null (the
        // caller copies); never moved by this function.
        let q = resize(p, 3 << 20);
        if !q.is_null() {
            assert_eq!(q, p);
            assert!(usable(q) >= 3 << 20);
            // SAFETY: q has 3 MiB usable bytes.
            unsafe { core::ptr::write_bytes(q, 0xcd, 3 << 20) };
        }
        let r = resize(p, 200_000);
        assert_eq!(r, p, "shrinking stays in place");
        let u = usable(r);
        assert!((200_000..200_000 + PAGE_SIZE).contains(&u), "shrunk: {u}");
        // SAFETY: r keeps its first 200_000 bytes.
        assert!(unsafe { core::slice::from_raw_parts(r, 200_000) }
            .iter()
            .all(|&b| b == 0xcd));
        assert!(
            resize(r, LARGE_SPAN_MAX + 1).is_null(),
            "too big for a span"
        );
        release(r);
    }

    #[test]
    fn blocks_above_the_span_limit_are_unmapped() {
        let n = LARGE_SPAN_MAX + 1;
        let (p, _) = alloc(n, ALIGNMENT, None);
        assert!(!p.is_null());
        release(p);
        assert_eq!(
            arena_map::lookup(p as usize),
            arena_map::CHUNK_NONE,
            "unmapped and forgotten"
        );
    }

    #[test]
    fn realloc_of_a_mapping_keeps_contents_and_alignment() {
        let (p, _) = alloc(LARGE_SPAN_MAX + 300_000, ALIGNMENT, None);
        // SAFETY: p has more than 300_000 usable bytes.
        unsafe { core::ptr::write_bytes(p, 0xab, 300_000) };
        let q = resize(p, 40 << 20);
        assert!(!q.is_null());
        assert_eq!(q as usize % ARENA_SIZE, HEADER);
        // SAFETY: q keeps the first 300_000 bytes.
        assert!(unsafe { core::slice::from_raw_parts(q, 300_000) }
            .iter()
            .all(|&b| b == 0xab));
        assert!(usable(q) >= 40 << 20);
        let r = resize(q, 200_000);
        assert_eq!(r, q, "shrinking stays in place");
        release(r);
    }

    #[test]
    fn huge_alignment_puts_the_header_one_arena_back() {
        let align = 4 * ARENA_SIZE;
        let (p, _) = alloc(1000, align, None);
        assert_eq!(p as usize % align, 0);
        assert_eq!(arena_map::lookup(p as usize), CHUNK_LARGE_BEHIND);
        assert!(usable(p) >= 1000);
        release(p);
        assert_eq!(arena_map::lookup(p as usize), arena_map::CHUNK_NONE);
    }
}
