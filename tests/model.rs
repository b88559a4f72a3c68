//! Randomized model tests of the allocator core: long random sequences of
//! malloc, calloc, realloc, aligned allocation and free, checked against a
//! shadow model (contents, alignment, usable size, no overlap), in one
//! thread and in several threads that free each other's blocks.
//!
//! The test binary links obmem, so its own malloc is obmem's too.

mod common;

use common::*;
use obmem::direct;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[test]
fn single_thread_random_sequences() {
    for seed in 1..=4u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut model = Model {
            live: BTreeMap::new(),
        };
        run_ops(&mut rng, &mut model, 60_000, 3_000, None);
        drain(&mut model);
    }
}

#[test]
fn threads_with_cross_thread_frees() {
    const THREADS: usize = 4;
    let boxes: Arc<Vec<Mutex<Vec<Live>>>> =
        Arc::new((0..THREADS).map(|_| Mutex::new(Vec::new())).collect());
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let boxes = boxes.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(0x1234_5678 + t as u64 * 7919);
                let mut model = Model {
                    live: BTreeMap::new(),
                };
                for round in 0..20 {
                    // Give blocks to the next thread; take what others gave us.
                    run_ops(
                        &mut rng,
                        &mut model,
                        3_000,
                        1_500,
                        Some(&boxes[(t + 1) % THREADS]),
                    );
                    let inbox: Vec<Live> = std::mem::take(&mut *boxes[t].lock().unwrap());
                    for b in inbox {
                        check(&b, usize::MAX);
                        if round % 2 == 0 {
                            // SAFETY: a live block of the model, handed over: freed once.
                            unsafe { direct::free(b.p as *mut u8, "free") };
                        } else {
                            model.live.insert(b.p, b); // adopt, free later
                        }
                    }
                }
                drain(&mut model);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for b in boxes.iter() {
        for b in std::mem::take(&mut *b.lock().unwrap()) {
            check(&b, usize::MAX);
            // SAFETY: as above.
            unsafe { direct::free(b.p as *mut u8, "free") };
        }
    }
}

#[test]
fn exited_threads_memory_is_reclaimed() {
    // A thread allocates and exits; this thread frees its blocks; the
    // abandoned heap takes them back and returns its arenas.
    let before = direct::snapshot();
    let blocks: Vec<usize> = std::thread::spawn(|| {
        (0..50_000)
            .map(|i| direct::malloc(16 + i % 400) as usize)
            .collect()
    })
    .join()
    .unwrap();
    let mid = direct::snapshot();
    assert!(mid.bytes_in_use >= before.bytes_in_use + 50_000 * 16);
    for p in blocks {
        // SAFETY: a block of this test's, freed once.
        unsafe { direct::free(p as *mut u8, "free") };
    }
    let after = direct::snapshot();
    // Other tests run concurrently in this process: allow their slack.
    assert!(
        after.bytes_in_use < mid.bytes_in_use - 50_000 * 16,
        "in use: before {} mid {} after {}",
        before.bytes_in_use,
        mid.bytes_in_use,
        after.bytes_in_use
    );
}
