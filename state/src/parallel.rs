//! Spreading a commit's hashing and reads over the machine's cores. The work is split into
//! chunks in order and every result lands where a single thread would have put it, so what a
//! commit writes never depends on how many cores did it.

use std::num::NonZeroUsize;
use std::sync::{Mutex, OnceLock};

/// Threads one piece of work is split over at most.
const MAX_THREADS: usize = 8;

/// `work` over matching chunks of `items` and `out` (of equal lengths): at most one chunk per
/// thread (`threads`, this one included; [`cores`] in use), each of `min_chunk` items or more,
/// taken by scoped threads and by this thread once it has run `meanwhile`. A thread that cannot
/// be started (e.g. no address space left under RLIMIT_AS) leaves its chunks to the others.
pub fn in_chunks<T: Sync, R: Send>(
    threads: usize,
    items: &[T],
    out: &mut [R],
    min_chunk: usize,
    work: impl Fn(&[T], &mut [R]) + Sync,
    meanwhile: impl FnOnce(),
) {
    assert_eq!(items.len(), out.len(), "one result per item");
    let threads = threads.min(items.len() / min_chunk.max(1)).max(1);
    let chunk = items.len().div_ceil(threads).max(1);
    let chunks = Mutex::new(items.chunks(chunk).zip(out.chunks_mut(chunk)).collect::<Vec<_>>());
    let take = || chunks.lock().expect("a worker panicked").pop();
    let drain = || {
        while let Some((items, out)) = take() {
            work(items, out);
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..threads {
            let _ = std::thread::Builder::new().spawn_scoped(scope, &drain);
        }
        meanwhile();
        drain();
    });
}

/// The cores this process may use (its cgroup's CPU quota included), at most [`MAX_THREADS`].
/// Asked once: the answer reads cgroup files, and every commit asks.
pub fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get).min(MAX_THREADS))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every item's result lands in its place, on one thread or several (more than this
    /// machine's cores too), in one chunk or several, and `meanwhile` runs once.
    #[test]
    fn every_result_lands_where_one_thread_would_put_it() {
        for threads in [1, 2, 3, 8] {
            for (len, min_chunk) in [(0, 1), (1, 1), (5, 10), (1000, 1), (1000, 7), (4097, 1024)] {
                let items: Vec<u64> = (0..len).collect();
                let mut out = vec![0; items.len()];
                let (mut ran, workers) = (0, Mutex::new(std::collections::HashSet::new()));
                let square = |items: &[u64], out: &mut [u64]| {
                    workers.lock().unwrap().insert(std::thread::current().id());
                    items.iter().zip(out).for_each(|(i, o)| *o = i * i);
                };
                in_chunks(threads, &items, &mut out, min_chunk, square, || ran += 1);
                let case = format!("{len} items, chunks of {min_chunk}+, {threads} threads");
                assert_eq!(out, items.iter().map(|i| i * i).collect::<Vec<_>>(), "{case}");
                assert_eq!(ran, 1, "{case}");
                assert!(workers.lock().unwrap().len() <= threads.min(len.max(1) as usize / min_chunk).max(1), "{case}");
            }
        }
        // Spread: 4 threads over 4000 items in chunks of 1000 or more start 3 workers.
        let workers = Mutex::new(std::collections::HashSet::new());
        let record = |_: &[u64], _: &mut [u64]| {
            workers.lock().unwrap().insert(std::thread::current().id());
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        in_chunks(4, &[0; 4000], &mut [0; 4000], 1000, record, || ());
        assert!(workers.lock().unwrap().len() >= 2, "the chunks all ran on one thread");
    }
}
