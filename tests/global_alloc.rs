//! `obmem::Obmem` as this test binary's `#[global_allocator]`: every Box,
//! Vec, String and HashMap below lives in obmem's pools, which its
//! statistics show; alignment, zeroing and realloc keep Rust's contract.

use obmem::direct::snapshot;
use obmem::Obmem;
use std::collections::HashMap;
use std::thread;

#[global_allocator]
static GLOBAL: Obmem = Obmem;

/// Allocations counted by obmem's class table.
fn class_allocations() -> usize {
    let s = snapshot();
    s.classes[..s.num_classes]
        .iter()
        .map(|c| c.allocations)
        .sum()
}

fn is_obmem_block(p: *const u8) -> bool {
    // usable_size aborts on a pointer obmem never returned.
    obmem::direct::usable_size(p, "test") > 0
}

/// Builds, checks and drops a HashMap and Vecs, `rounds` times: about
/// 2500 allocations a round (975 non-empty Vecs, map growth, Strings).
fn churn(seed: u64, rounds: usize) -> u64 {
    let mut sum = 0u64;
    for r in 0..rounds {
        let mut map: HashMap<u64, (u64, Vec<u64>)> = HashMap::new();
        for k in 0..1000u64 {
            let key = k.wrapping_mul(seed + r as u64);
            let v: Vec<u64> = (0..(k % 40)).map(|i| i ^ key).collect();
            map.insert(key, (k, v));
        }
        let mut text = String::new();
        for (k, (i, v)) in &map {
            assert_eq!(v.len() as u64, i % 40);
            assert!(v.iter().enumerate().all(|(j, &x)| x == j as u64 ^ k));
            sum = sum.wrapping_add(v.iter().sum::<u64>());
            assert!(v.capacity() == 0 || is_obmem_block(v.as_ptr() as *const u8));
            if text.len() < 10_000 {
                text.push_str(&k.to_string());
            }
        }
        sum = sum.wrapping_add(text.len() as u64);
    }
    sum
}

#[test]
fn threads_with_hashmap_and_vec_churn_are_served_by_obmem() {
    let before = class_allocations();
    let handles: Vec<_> = (0..4u64)
        .map(|t| thread::spawn(move || churn(t + 3, 4)))
        .collect();
    let sums: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    // Same work, same result, whichever thread did it.
    assert_eq!(sums[0], churn(3, 4));
    let counted = class_allocations() - before;
    assert!(
        counted >= 4 * 4 * 2000,
        "obmem counted {counted} allocations for about 40000"
    );

    // A live Vec shows in the blocks in use of its class, a large one in
    // the large blocks.
    let v: Vec<u8> = Vec::with_capacity(600);
    assert!(is_obmem_block(v.as_ptr()));
    let big: Vec<u8> = Vec::with_capacity(4 << 20);
    let s = snapshot();
    assert!(s.large_blocks >= 1 && s.large_bytes >= 4 << 20);
    drop(big);
    drop(v);
}

#[repr(align(64))]
struct Line([u8; 64]);
#[repr(align(4096))]
struct Page([u8; 4096]);

#[test]
fn alignment_zeroing_and_realloc() {
    for _ in 0..100 {
        let a = Box::new(Line([7; 64]));
        assert_eq!(&*a as *const Line as usize % 64, 0);
        let b = Box::new(Page([9; 4096]));
        assert_eq!(&*b as *const Page as usize % 4096, 0);
        assert!(is_obmem_block(&*b as *const Page as *const u8));
    }
    // Dirty blocks of the classes alloc_zeroed will reuse.
    for n in [24usize, 600, 5000, 200_000] {
        drop(vec![0xAAu8; n]);
        let z = vec![0u8; n];
        assert!(z.iter().all(|&x| x == 0), "alloc_zeroed of {n} bytes");
    }
    let z: Vec<Page> = (0..3).map(|_| Page([0; 4096])).collect();
    assert!(z.iter().all(|p| p.0.iter().all(|&x| x == 0)));
    // Growth by realloc keeps the contents, small to large.
    let mut v: Vec<u32> = Vec::new();
    for i in 0..300_000u32 {
        v.push(i);
    }
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32));
    v.truncate(10);
    v.shrink_to_fit();
    assert_eq!(v, (0..10).collect::<Vec<u32>>());
    // Over-aligned realloc (RawVec of 64-byte-aligned elements).
    let mut lines: Vec<Line> = Vec::new();
    for i in 0..2000u32 {
        lines.push(Line([i as u8; 64]));
        assert_eq!(lines.as_ptr() as usize % 64, 0);
    }
    assert!(lines.iter().enumerate().all(|(i, l)| l.0[63] == i as u8));
}

/// `GlobalAlloc::alloc_zeroed` called on `Obmem` itself, above all with
/// alignments over 16 (obmem's aligned path, zeroed by `Obmem`): for each
/// alignment from 16 to a page and two above a page, and sizes around it,
/// blocks of the same layout are dirtied and freed first so that the
/// zeroed ones likely reuse their memory. Each block must be aligned and
/// zero over its whole size, and `realloc` to a larger and then a smaller
/// size must keep the alignment and the contents.
#[test]
fn alloc_zeroed_over_aligned_reuses_dirty_blocks() {
    use std::alloc::{GlobalAlloc, Layout};
    const N: usize = 8;
    let fill = |i: usize, align: usize| (i.wrapping_mul(7) ^ (align >> 4)) as u8 | 1;
    for align in [
        16usize, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 65536,
    ] {
        let mut sizes = vec![
            1,
            align / 2,
            align - 1,
            align,
            align + 1,
            3 * align + 5,
            5000,
        ];
        sizes.retain(|&n| n > 0);
        sizes.sort_unstable();
        sizes.dedup();
        for size in sizes {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: every block is used within its layout and freed once
            // with the layout it has at that point.
            unsafe {
                let dirty: Vec<*mut u8> = (0..N).map(|_| Obmem.alloc(layout)).collect();
                for &p in &dirty {
                    assert!(!p.is_null());
                    std::ptr::write_bytes(p, 0xA5, size);
                }
                for p in dirty {
                    Obmem.dealloc(p, layout);
                }
                let zeroed: Vec<*mut u8> = (0..N).map(|_| Obmem.alloc_zeroed(layout)).collect();
                for &z in &zeroed {
                    assert!(!z.is_null());
                    assert_eq!(z as usize % align, 0, "alloc_zeroed({size}, align {align})");
                    let bytes = std::slice::from_raw_parts_mut(z, size);
                    assert!(
                        bytes.iter().all(|&b| b == 0),
                        "alloc_zeroed({size}, align {align}): byte {} is not zero",
                        bytes.iter().position(|&b| b != 0).unwrap_or(0)
                    );
                    for (i, b) in bytes.iter_mut().enumerate() {
                        *b = fill(i, align);
                    }
                }
                let bigger = 3 * size + 100;
                let smaller = (size / 2).max(1);
                for z in zeroed {
                    let q = Obmem.realloc(z, layout, bigger);
                    assert!(!q.is_null());
                    assert_eq!(
                        q as usize % align,
                        0,
                        "realloc({size} -> {bigger}, align {align})"
                    );
                    let kept = std::slice::from_raw_parts(q, size);
                    assert!(kept.iter().enumerate().all(|(i, &b)| b == fill(i, align)));
                    let big_layout = Layout::from_size_align(bigger, align).unwrap();
                    let r = Obmem.realloc(q, big_layout, smaller);
                    assert!(!r.is_null());
                    assert_eq!(
                        r as usize % align,
                        0,
                        "realloc({bigger} -> {smaller}, align {align})"
                    );
                    let kept = std::slice::from_raw_parts(r, smaller);
                    assert!(kept.iter().enumerate().all(|(i, &b)| b == fill(i, align)));
                    Obmem.dealloc(r, Layout::from_size_align(smaller, align).unwrap());
                }
            }
        }
    }
}
