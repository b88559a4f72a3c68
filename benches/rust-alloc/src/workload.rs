//! The workload every binary runs with its own global allocator: 4 threads,
//! each building word indexes (a HashMap of Strings to Vecs) of generated
//! text and dropping them, 200 rounds (or `ROUNDS` from the environment)
//! of 5000 words. Prints the wall time.

use std::collections::HashMap;
use std::time::Instant;

const THREADS: u64 = 4;
const WORDS: u32 = 5000;

fn rounds() -> usize {
    std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

fn index_rounds(seed: u64, rounds: usize) -> usize {
    let mut rng = seed | 1;
    let mut total = 0;
    for _ in 0..rounds {
        let mut index: HashMap<String, Vec<u32>> = HashMap::new();
        for pos in 0..WORDS {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            index
                .entry(format!("w{}", rng % 2000))
                .or_default()
                .push(pos);
        }
        total += index.values().map(Vec::len).sum::<usize>();
    }
    total
}

pub fn run(allocator: &str) {
    let rounds = rounds();
    let start = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| std::thread::spawn(move || index_rounds(t + 1, rounds)))
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("worker panicked"), rounds * WORDS as usize);
    }
    println!("{allocator} {:.1} ms", start.elapsed().as_secs_f64() * 1e3);
}
