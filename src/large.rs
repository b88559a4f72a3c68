//! Large blocks: requests above the largest size class get a mapping of
//! their own, aligned to the arena size so the arena map finds them.
//!
//! Layout: a 64-byte header at the start of the mapping, the block right
//! after it (or at the requested alignment). For alignments of an arena or
//! more, the block starts one arena after the header, and the map marks the
//! block's chunk `CHUNK_LARGE_BEHIND`. `malloc_usable_size` is the mapping's
//! end minus the block's start.
//!
//! Freed mappings of up to `LARGE_CACHE_MAX_BLOCK` are kept in a small cache
//! (bounded in slots, and in bytes by `LARGE_CACHE_MAX_BYTES` or half the
//! recent demand) so a malloc/free loop does not map and unmap
//! each time; they stay registered with a FREED header, which makes a double
//! free detectable. A cached mapping keeps its pages for the purge delay
//! (purge.rs), then is unmapped; the resident ones are bounded by
//! `LARGE_CACHE_RESIDENT` or the most bytes of live large blocks since
//! mappings last expired, whichever is more (recent demand), beyond which
//! a mapping's pages are
//! discarded but for the header's as it enters the cache. A cached mapping
//! serves a request of between half its size and its size, shrunk in place
//! (mremap) when it is more than a quarter too big. `realloc`
//! grows with mremap, in place when the pages after the mapping are free,
//! otherwise by moving the pages (no copy) to a new aligned reservation.

use crate::arena_map::{self, CHUNK_LARGE, CHUNK_LARGE_BEHIND};
use crate::config::*;
use crate::counters;
use crate::fault::Site;
use crate::os;
use crate::report;
use crate::sync::SpinLock;
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering::*};

pub(crate) const HEADER: usize = 64;
/// Large mappings of at least this size ask for transparent huge pages.
const HUGE_LARGE_MIN: usize = 4 << 20;
const LIVE: usize = 0x6f62_6d65_6d4c_5247; // "obmemLRG"
const FREED: usize = 0x6f62_6d65_6d46_5245; // "obmemFRE"

#[repr(C)]
struct Header {
    magic: AtomicUsize,
    /// Bytes mapped, from the header to the end.
    map_size: usize,
    /// The block handed out.
    user: usize,
    /// A heap profile's sample (`stacks::record`'s tag, 0: none) and
    /// the bytes and blocks it stands for.
    sample: [usize; 3],
}

const _: () = assert!(core::mem::size_of::<Header>() <= HEADER);

#[inline]
fn round_pages(n: usize) -> Option<usize> {
    n.checked_add(PAGE_SIZE - 1).map(|v| v & !(PAGE_SIZE - 1))
}

/// The header of the large block at `p`, given the map's kind for `p`'s chunk.
fn header_of(p: *const u8, kind: u8) -> *mut Header {
    let chunk = (p as usize) & !ARENA_MASK;
    let base = if kind == CHUNK_LARGE_BEHIND {
        chunk - ARENA_SIZE
    } else {
        chunk
    };
    base as *mut Header
}

#[derive(Clone, Copy)]
struct Cached {
    base: usize,
    size: usize,
    /// The pages past the header's are still resident.
    resident: bool,
    /// When it was freed (`purge::now_ms`).
    freed_at: u64,
}

const NO_ENTRY: Cached = Cached {
    base: 0,
    size: 0,
    resident: false,
    freed_at: 0,
};

/// Oldest first. `bytes` and `resident` sum the sizes of all and of the
/// resident entries.
struct Cache {
    slots: [Cached; LARGE_CACHE_SLOTS],
    count: usize,
    bytes: usize,
    resident: usize,
}

impl Cache {
    fn remove(&mut self, i: usize) -> Cached {
        let e = self.slots[i];
        self.slots.copy_within(i + 1..self.count, i);
        self.count -= 1;
        self.bytes -= e.size;
        if e.resident {
            self.resident -= e.size;
        }
        e
    }

    /// Moves the resident entries whose purge delay has run out (all
    /// entries if `all`) to `out`; returns how many.
    fn take_expired(
        &mut self,
        now: u64,
        all: bool,
        out: &mut [Cached; LARGE_CACHE_SLOTS],
    ) -> usize {
        let mut n = 0;
        let mut i = 0;
        while i < self.count {
            let e = self.slots[i];
            if all || (e.resident && crate::purge::expired(e.freed_at, now)) {
                out[n] = self.remove(i);
                n += 1;
            } else {
                i += 1;
            }
        }
        if n != 0 {
            // Demand is measured again from what is live now.
            RECENT_PEAK.store(counters::LARGE_BYTES.load(Relaxed), Relaxed);
        }
        n
    }
}

/// Unmaps evicted entries, counting the resident ones as given back.
fn unmap_evicted(evicted: &[Cached]) -> usize {
    let mut bytes = 0;
    for e in evicted {
        if e.resident {
            bytes += e.size;
        }
        unmap_block(e.base, e.size);
    }
    crate::purge::given_back(bytes);
    bytes
}

/// The most bytes of live large blocks since cached mappings last expired:
/// the recent demand, which bounds what the cache keeps resident.
static RECENT_PEAK: AtomicUsize = AtomicUsize::new(0);

static CACHE: SpinLock<Cache> = SpinLock::new(Cache {
    slots: [NO_ENTRY; LARGE_CACHE_SLOTS],
    count: 0,
    bytes: 0,
    resident: 0,
});

/// The smallest cached mapping of between `need` and `2 * need` bytes,
/// shrunk to `need` if it is more than a quarter bigger; resident ones
/// first.
fn cache_take(need: usize) -> Option<(usize, usize)> {
    let mut evicted = [NO_ENTRY; LARGE_CACHE_SLOTS];
    let (e, n) = {
        let mut c = CACHE.lock();
        let n = c.take_expired(crate::purge::now_ms(), false, &mut evicted);
        let mut best: Option<usize> = None;
        for i in 0..c.count {
            let e = c.slots[i];
            let better = |b: usize| {
                let o = c.slots[b];
                (e.resident, usize::MAX - e.size) > (o.resident, usize::MAX - o.size)
            };
            if e.size >= need && e.size / 2 <= need && best.is_none_or(better) {
                best = Some(i);
            }
        }
        (best.map(|b| c.remove(b)), n)
    };
    unmap_evicted(&evicted[..n]);
    let e = e?;
    if e.size - need > need / 4 {
        // SAFETY: the mapping holds no live block and is ours alone; its
        // tail past `need` goes back to the OS.
        if unsafe { os::remap_in_place(e.base as *mut u8, e.size, need) } {
            counters::sub_mapped(e.size - need);
            if e.resident {
                crate::purge::given_back(e.size - need);
            }
            return Some((e.base, need));
        }
    }
    Some((e.base, e.size))
}

/// Caches a freed mapping, evicting the oldest if needed. False if it is
/// not cacheable (the caller unmaps it).
fn cache_put(base: usize, size: usize) -> bool {
    if size > LARGE_CACHE_MAX_BLOCK {
        return false;
    }
    // Discarded before the entry is published: once in the cache, another
    // thread may take it and write to it. (Only the budget is read here; it
    // may be exceeded by what other threads insert meanwhile.)
    let budget = LARGE_CACHE_RESIDENT.max(RECENT_PEAK.load(Relaxed));
    let keep_pages = crate::purge::delay_ms() != 0 && CACHE.lock().resident + size <= budget;
    if !keep_pages {
        // SAFETY: the mapping holds no live block and nobody else can reach
        // it yet; its header page, with the FREED mark, stays.
        unsafe { os::discard((base + PAGE_SIZE) as *mut u8, size - PAGE_SIZE) };
        crate::purge::given_back(size - PAGE_SIZE);
    }
    let mut evicted = [NO_ENTRY; LARGE_CACHE_SLOTS];
    let now = crate::purge::now_ms();
    // Address space follows recent demand too, so that a program whose
    // large blocks are many and big finds one of the right size.
    let max_bytes = LARGE_CACHE_MAX_BYTES.max(RECENT_PEAK.load(Relaxed) / 2);
    let n_evicted;
    {
        let mut c = CACHE.lock();
        let mut n = c.take_expired(now, false, &mut evicted);
        while c.count > 0 && (c.count == LARGE_CACHE_SLOTS || c.bytes + size > max_bytes) {
            evicted[n] = c.remove(0);
            n += 1;
        }
        n_evicted = n;
        let i = c.count;
        c.slots[i] = Cached {
            base,
            size,
            resident: keep_pages,
            freed_at: now,
        };
        c.count += 1;
        c.bytes += size;
        if keep_pages {
            c.resident += size;
        }
    }
    unmap_evicted(&evicted[..n_evicted]);
    true
}

/// Unmaps every cached mapping (`obm_trim`); returns the resident bytes
/// given back.
pub fn trim() -> usize {
    let mut evicted = [NO_ENTRY; LARGE_CACHE_SLOTS];
    let n = CACHE.lock().take_expired(0, true, &mut evicted);
    let mut bytes = unmap_evicted(&evicted[..n]);
    for slot in &SAMPLES {
        let base = slot.swap(0, Acquire);
        if base != 0 {
            unmap_block(base, PAGE_SIZE);
            crate::purge::given_back(PAGE_SIZE);
            bytes += PAGE_SIZE;
        }
    }
    bytes
}

fn unmap_block(base: usize, size: usize) {
    // Only blocks with the header in their own chunk (CHUNK_LARGE) are cached.
    arena_map::clear(base);
    // SAFETY: the mapping holds no live block and is no longer registered.
    unsafe { os::unmap(base as *mut u8, size) };
    counters::sub_mapped(size);
}

/// Allocates a large block of `n` bytes aligned to `align` (a power of two).
/// Returns the block and whether its memory is known to be zero.
pub fn alloc(n: usize, align: usize) -> (*mut u8, bool) {
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
        os::set_errno(libc::ENOMEM);
        return (ptr::null_mut(), false);
    };
    if n > MAX_REQUEST {
        os::set_errno(libc::ENOMEM);
        return (ptr::null_mut(), false);
    }
    let mut zeroed = true;
    let cached = if offset == HEADER {
        cache_take(map_size)
    } else {
        None
    };
    let (base, size) = match cached {
        Some(e) => {
            zeroed = false;
            e
        }
        None => {
            // The header is at `base`; the block at base + offset must be
            // aligned to `align` (and its chunk to the arena size).
            let base = os::map_aligned_at(
                map_size,
                align.max(ARENA_SIZE),
                offset & !ARENA_MASK,
                Site::Large,
            );
            if base.is_null() {
                os::set_errno(libc::ENOMEM);
                return (ptr::null_mut(), false);
            }
            counters::add_mapped(map_size);
            if map_size >= HUGE_LARGE_MIN {
                // SAFETY: the mapping was just made by os.
                unsafe { os::advise_huge(base, map_size) };
            }
            (base as usize, map_size)
        }
    };
    let user = base + offset;
    let kind = if behind {
        CHUNK_LARGE_BEHIND
    } else {
        CHUNK_LARGE
    };
    if !arena_map::set(user & !ARENA_MASK, kind) {
        unmap_block(base, size);
        os::set_errno(libc::ENOMEM);
        return (ptr::null_mut(), false);
    }
    let hdr = base as *mut Header;
    // SAFETY: the header lies at the start of the mapping, which nobody
    // else references.
    unsafe {
        (*hdr).map_size = size;
        (*hdr).user = user;
        (*hdr).sample[0] = 0;
        (*hdr).magic.store(LIVE, Release);
    }
    count_alloc(base, size, user);
    (user as *mut u8, zeroed)
}

/// Counts a new live block at `user` in the mapping [base, base + size).
fn count_alloc(base: usize, size: usize, user: usize) {
    counters::LARGE_BLOCKS.fetch_add(1, Relaxed);
    counters::LARGE_ALLOCS.fetch_add(1, Relaxed);
    let live = counters::LARGE_BYTES.fetch_add(base + size - user, Relaxed) + base + size - user;
    RECENT_PEAK.fetch_max(live, Relaxed);
    counters::LARGE_ALIGN_LOSS.fetch_add(user - base - HEADER, Relaxed);
}

/// Validates a pointer the arena map marks as large; returns its header.
fn checked_header(p: *const u8, kind: u8, func: &str) -> *mut Header {
    let hdr = header_of(p, kind);
    // SAFETY: the map says a large block's header is mapped at `hdr`.
    let (magic, user) = unsafe { ((*hdr).magic.load(Acquire), (*hdr).user) };
    if user != p as usize {
        report::invalid_pointer(func, p);
    }
    if magic == FREED {
        report::fatal(format_args!("{func}(): double free of {p:p}"));
    }
    if magic != LIVE {
        report::invalid_pointer(func, p);
    }
    hdr
}

/// Usable bytes of the large block `p`.
///
/// # Safety
/// `kind` is what `arena_map::lookup(p)` returned for `p`, and is a large
/// kind (`CHUNK_LARGE` or `CHUNK_LARGE_BEHIND`): it says where the header is.
pub unsafe fn usable_size(p: *const u8, kind: u8, func: &str) -> usize {
    let hdr = checked_header(p, kind, func);
    // SAFETY: checked_header validated a live header.
    unsafe { hdr as usize + (*hdr).map_size - p as usize }
}

/// The usable size of `p` if it is a live large block's start, else 0
/// (never reports: for callers that only count).
pub fn size_if_block(p: *const u8, kind: u8) -> usize {
    let hdr = header_of(p, kind);
    // SAFETY: the map says a large block's header is mapped at `hdr`.
    let (magic, user, size) = unsafe { ((*hdr).magic.load(Acquire), (*hdr).user, (*hdr).map_size) };
    if magic == LIVE && user == p as usize {
        hdr as usize + size - user
    } else {
        0
    }
}

// ---------------------------------------------------------------------------
// The heap profiler's samples

/// Freed one-page sampled blocks, kept mapped and registered (with a FREED
/// header, as in the cache) for the next samples. Most samples are small
/// blocks, and the cache's bookkeeping (lock, expiry scan, eviction) cost
/// about as much per sample as the rest of the sampling (BENCHMARKS.md,
/// issue 14). A slot is taken by swapping it to 0, so no lock (and nothing
/// to do at fork); at most `SAMPLE_SLOTS` pages, given back by `trim`.
static SAMPLES: [AtomicUsize; SAMPLE_SLOTS] = [const { AtomicUsize::new(0) }; SAMPLE_SLOTS];
const SAMPLE_SLOTS: usize = 16;

/// `alloc` for a heap profile's sample: a freed one-page sample's mapping
/// if `n` bytes fit one at the default alignment and `SAMPLES` has one.
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
            // SAFETY: taking the slot made the mapping ours; its header
            // already holds its size and block (`sample_put`).
            unsafe {
                (*hdr).sample[0] = 0;
                (*hdr).magic.store(LIVE, Release);
            }
            count_alloc(base, PAGE_SIZE, base + HEADER);
            return ((base + HEADER) as *mut u8, false);
        }
    }
    alloc(n, align)
}

/// Keeps the freed one-page sample at `base` in `SAMPLES`; false if full.
fn sample_put(base: usize) -> bool {
    SAMPLES.iter().any(|slot| {
        slot.load(Relaxed) == 0 && slot.compare_exchange(0, base, Release, Relaxed).is_ok()
    })
}

/// Tags the large block `p`, just allocated, as a heap profile's sample.
/// `align` is the alignment it was allocated with, which says where its
/// header is (as in `alloc`), without a lookup in the map.
pub fn set_sample(p: *mut u8, align: usize, tag: usize, bytes: u64, blocks: u64) {
    let kind = if align >= ARENA_SIZE {
        CHUNK_LARGE_BEHIND
    } else {
        CHUNK_LARGE
    };
    let hdr = header_of(p, kind);
    // SAFETY: p is a live large block the caller just allocated.
    unsafe { (*hdr).sample = [tag, bytes as usize, blocks as usize] };
}

/// Frees the large block `p`.
///
/// # Safety
/// `kind` is what `arena_map::lookup(p)` returned for `p`, and is a large
/// kind (`CHUNK_LARGE` or `CHUNK_LARGE_BEHIND`): it says where the header is.
pub unsafe fn free(p: *mut u8, kind: u8, func: &str) {
    let hdr = checked_header(p, kind, func);
    // SAFETY: checked_header validated a live header.
    let (map_size, user, sample) = unsafe { ((*hdr).map_size, (*hdr).user, (*hdr).sample) };
    if sample[0] != 0 {
        crate::stacks::release(sample[0], sample[1] as u64, sample[2] as u64);
    }
    let base = hdr as usize;
    counters::LARGE_BLOCKS.fetch_sub(1, Relaxed);
    counters::LARGE_BYTES.fetch_sub(base + map_size - user, Relaxed);
    counters::LARGE_ALIGN_LOSS.fetch_sub(user - base - HEADER, Relaxed);
    // SAFETY: the header is ours; marking it FREED makes a second free fail loudly.
    unsafe { (*hdr).magic.store(FREED, Release) };
    if kind == CHUNK_LARGE && user == base + HEADER {
        let sample_page = sample[0] != 0 && map_size == PAGE_SIZE;
        if (sample_page && sample_put(base)) || cache_put(base, map_size) {
            return;
        }
    }
    arena_map::clear(user & !ARENA_MASK);
    // SAFETY: the block is freed and unregistered.
    unsafe { os::unmap(base as *mut u8, map_size) };
    counters::sub_mapped(map_size);
}

/// Resizes the large block `p` to `n` bytes in place or by moving its pages.
/// Null if it cannot (the caller falls back to allocate-copy-free); `p`
/// then stays valid.
///
/// # Safety
/// `kind` is what `arena_map::lookup(p)` returned for `p`, and is a large
/// kind (`CHUNK_LARGE` or `CHUNK_LARGE_BEHIND`): it says where the header is.
pub unsafe fn realloc(p: *mut u8, kind: u8, n: usize, func: &str) -> *mut u8 {
    let hdr = checked_header(p, kind, func);
    // SAFETY: checked_header validated a live header.
    let (old_size, user) = unsafe { ((*hdr).map_size, (*hdr).user) };
    let base = hdr as usize;
    if kind != CHUNK_LARGE || user != base + HEADER {
        return ptr::null_mut();
    }
    let Some(new_size) = n.checked_add(HEADER).and_then(round_pages) else {
        return ptr::null_mut();
    };
    if new_size == old_size {
        return p;
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
        }
        counters::add_mapped(new_size - old_size);
        counters::LARGE_BYTES.fetch_add(new_size - old_size, Relaxed);
        return (dest as usize + HEADER) as *mut u8;
    }
    counters::add_mapped(new_size - old_size);
    counters::LARGE_BYTES.fetch_add(new_size - old_size, Relaxed);
    p
}

/// Cached mappings (with the kept samples'), their bytes, and the bytes
/// of those that keep their pages (for statistics).
pub fn cached() -> (usize, usize, usize) {
    let samples = SAMPLES.iter().filter(|s| s.load(Relaxed) != 0).count();
    let c = CACHE.lock();
    let bytes = samples * PAGE_SIZE;
    (c.count + samples, c.bytes + bytes, c.resident + bytes)
}

pub fn lock_for_fork() {
    CACHE.lock_for_fork();
}

/// # Safety
/// Called after `lock_for_fork`, in the parent or the child.
pub unsafe fn unlock_after_fork() {
    // SAFETY: per the contract.
    unsafe { CACHE.unlock_after_fork() };
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
        unsafe { free(p, kind, "test") }
    }
    fn resize(p: *mut u8, n: usize) -> *mut u8 {
        let kind = arena_map::lookup(p as usize);
        // SAFETY: as in `usable`.
        unsafe { realloc(p, kind, n, "test") }
    }

    #[test]
    fn freed_spans_are_cached_and_reused() {
        // A size no other test uses, so the cache entry is ours.
        let n = (1 << 20) + 12_345;
        let (p, zeroed) = alloc(n, ALIGNMENT);
        assert!(!p.is_null() && zeroed);
        assert_eq!(p as usize % ARENA_SIZE, HEADER, "header at the chunk start");
        assert!(usable(p) >= n);
        release(p);
        let (q, zeroed) = alloc(n, ALIGNMENT);
        assert_eq!(q, p, "the freed mapping is reused");
        assert!(!zeroed, "a reused span is not known to be zero");
        release(q);
    }

    #[test]
    fn cached_spans_keep_their_pages_and_serve_smaller_requests() {
        // Sizes no other test uses (or could take: a request takes a span
        // of up to twice its size); live at once, so within recent demand.
        let n = (6 << 20) + 4096 * 7;
        let ps: [*mut u8; 3] = core::array::from_fn(|i| alloc(n + i * 4096 * 3, ALIGNMENT).0);
        for &p in &ps {
            assert!(!p.is_null());
            // SAFETY: p has more than n usable bytes.
            unsafe { core::ptr::write_bytes(p, 0x5a, n) };
        }
        for &p in &ps {
            release(p);
        }
        // SAFETY: the mappings are cached, still mapped, and no other test
        // takes these sizes.
        unsafe {
            for &p in &ps {
                assert_eq!(*p.add(n - 1), 0x5a, "kept resident for the purge delay");
            }
        }
        // A request of two thirds of the smallest takes it, shrunk in place.
        let small = n * 2 / 3;
        let (q, zeroed) = alloc(small, ALIGNMENT);
        assert_eq!(q, ps[0]);
        assert!(!zeroed);
        let usable = usable(q);
        assert!(
            usable >= small && usable < small + 2 * PAGE_SIZE,
            "shrunk: {usable}"
        );
        // SAFETY: q's first bytes are the old block's.
        assert_eq!(unsafe { *q.add(small - 1) }, 0x5a);
        release(q);
        for (i, &p) in ps.iter().enumerate().skip(1) {
            let (q, _) = alloc(n + i * 4096 * 3, ALIGNMENT);
            assert_eq!(q, p, "reused from the cache");
            release(q);
        }
    }

    #[test]
    fn oversized_spans_are_not_cached() {
        let n = LARGE_CACHE_MAX_BLOCK + 1;
        let (p, _) = alloc(n, ALIGNMENT);
        assert!(!p.is_null());
        release(p);
        assert_eq!(
            arena_map::lookup(p as usize),
            arena_map::CHUNK_NONE,
            "unmapped and forgotten"
        );
    }

    #[test]
    fn realloc_keeps_contents_and_alignment() {
        let (p, _) = alloc(300_000, ALIGNMENT);
        // SAFETY: p has 300_000 usable bytes.
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
        let (p, _) = alloc(1000, align);
        assert_eq!(p as usize % align, 0);
        assert_eq!(arena_map::lookup(p as usize), CHUNK_LARGE_BEHIND);
        assert!(usable(p) >= 1000);
        release(p);
        assert_eq!(arena_map::lookup(p as usize), arena_map::CHUNK_NONE);
    }
}
