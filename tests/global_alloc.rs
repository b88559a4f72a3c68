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
