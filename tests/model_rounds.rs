//! Randomized model test of threads that are replaced while their blocks
//! are still being freed by others: abandonment, adoption, remote frees
//! into exited threads' heaps. A process of its own, so that the memory
//! figures of `model.rs` are not disturbed by it.

mod common;

use common::*;
use obmem::direct;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[test]
fn replaced_threads_free_each_others_blocks_while_running() {
    // Rounds of threads: each allocates, hands half its blocks to a thread
    // of the next round (through `carry`) and the rest to a sibling of its
    // own round, frees what it was handed, and exits while its siblings
    // may still be freeing its blocks. Later rounds adopt the abandoned
    // heaps and free blocks of heaps whose threads are gone.
    const ROUNDS: usize = 6;
    const THREADS: usize = 3;
    let mut carry: Vec<Live> = Vec::new();
    for round in 0..ROUNDS {
        let inboxes: Arc<Vec<Mutex<Vec<Live>>>> =
            Arc::new((0..THREADS).map(|_| Mutex::new(Vec::new())).collect());
        let inherited: Vec<Vec<Live>> = (0..THREADS)
            .map(|t| carry.iter().skip(t).step_by(THREADS).copied().collect())
            .collect();
        let handles: Vec<_> = inherited
            .into_iter()
            .enumerate()
            .map(|(t, mine)| {
                let inboxes = inboxes.clone();
                std::thread::spawn(move || {
                    let mut rng = Rng(0x5eed + (round * THREADS + t) as u64 * 104_729);
                    for b in mine {
                        check(&b, usize::MAX);
                        // SAFETY: a live block of the model, freed once.
                        unsafe { direct::free(b.p as *mut u8, "free") };
                    }
                    let mut model = Model {
                        live: BTreeMap::new(),
                    };
                    run_ops(
                        &mut rng,
                        &mut model,
                        4_000,
                        2_000,
                        Some(&inboxes[(t + 1) % THREADS]),
                    );
                    let given: Vec<Live> = std::mem::take(&mut *inboxes[t].lock().unwrap());
                    for b in given {
                        check(&b, usize::MAX);
                        // SAFETY: as above.
                        unsafe { direct::free(b.p as *mut u8, "free") };
                    }
                    // Half of what is left outlives this thread.
                    let keys: Vec<usize> = model.live.keys().copied().collect();
                    let mut kept = Vec::new();
                    for (i, p) in keys.into_iter().enumerate() {
                        let b = model.live.remove(&p).unwrap();
                        if i % 2 == 0 {
                            kept.push(b);
                        } else {
                            check(&b, usize::MAX);
                            // SAFETY: as above.
                            unsafe { direct::free(b.p as *mut u8, "free") };
                        }
                    }
                    kept
                })
            })
            .collect();
        carry = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        for b in inboxes.iter() {
            carry.extend(std::mem::take(&mut *b.lock().unwrap()));
        }
    }
    for b in carry {
        check(&b, usize::MAX);
        // SAFETY: as above.
        unsafe { direct::free(b.p as *mut u8, "free") };
    }
}
