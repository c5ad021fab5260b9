//! Row-parallel loops for the fused kernels (the laboratory's and [`super::gemm`]'s), on candle's
//! barrier pool (the threads candle's own element-wise ops use, so no second pool competes for
//! the cores).

use std::cell::Cell;

thread_local! {
    /// Set while this thread runs one of [`for_each_alone`]'s items.
    static ALONE: Cell<bool> = const { Cell::new(false) };
}

/// The number of threads a fused kernel may split its work over: candle's thread count, or 1
/// inside an item of [`for_each_alone`] (the pool is busy running the items themselves, and
/// candle's barrier pool cannot be entered again from inside one of its own calls).
pub fn threads() -> usize {
    if ALONE.with(|a| a.get()) {
        1
    } else {
        candle_core::utils::get_num_threads()
    }
}

/// Runs `f(0)`, …, `f(n - 1)` concurrently on the barrier pool, each item on one thread, and
/// everything an item calls single-threaded ([`threads`] is 1 inside it). For a few independent
/// pieces of work too small to split well, such as the two directions of a bidirectional LSTM
/// layer (each a chain of small products). Serial, in order, when one thread would do.
pub fn for_each_alone(n: usize, f: impl Fn(usize) + Sync) {
    if threads() <= 1 || n <= 1 {
        (0..n).for_each(f);
        return;
    }
    candle_core::utils::barrier_pool().execute_chunked(n, |items| {
        let was = ALONE.with(|a| a.replace(true));
        items.for_each(&f);
        ALONE.with(|a| a.set(was));
    });
}

/// Calls `f(r, row)` for every row r of `data` (rows of `width` values), the rows split into
/// blocks of at least `min_rows` that the pool's threads take in turn; returns f's results in
/// row order. Serial when one thread or one block would do.
pub fn map_rows<T: Send, R: Copy + Default + Send>(
    data: &mut [T],
    width: usize,
    min_rows: usize,
    f: impl Fn(usize, &mut [T]) -> R + Sync,
) -> Vec<R> {
    let rows = data.len().checked_div(width).unwrap_or(0);
    let mut out = vec![R::default(); rows];
    let threads = threads();
    let blocks = (rows / min_rows.max(1)).min(4 * threads);
    if threads <= 1 || blocks <= 1 {
        for (r, (row, o)) in data.chunks_exact_mut(width).zip(out.iter_mut()).enumerate() {
            *o = f(r, row);
        }
        return out;
    }
    let step = rows.div_ceil(blocks);
    let (data_p, out_p) = (data.as_mut_ptr() as usize, out.as_mut_ptr() as usize);
    candle_core::utils::barrier_pool().execute_chunked(blocks, |bs| {
        for b in bs {
            for r in b * step..((b + 1) * step).min(rows) {
                // SAFETY: every row index r is visited by exactly one block, so the row slices and
                // output slots handed out are disjoint, and all lie inside `data` / `out`, which
                // outlive the call (execute_chunked returns after every block has run).
                unsafe {
                    let row = std::slice::from_raw_parts_mut((data_p as *mut T).add(r * width), width);
                    *(out_p as *mut R).add(r) = f(r, row);
                }
            }
        }
    });
    out
}

/// Calls `f(range)` for consecutive ranges covering `0..n`, each of at least `min_len` items
/// (the last may be shorter), that the barrier pool's threads take in turn. Serial when one
/// thread or one range would do. `f` must only touch what its range owns.
pub fn for_ranges(n: usize, min_len: usize, f: impl Fn(std::ops::Range<usize>) + Sync) {
    let threads = threads();
    let blocks = (n / min_len.max(1)).min(4 * threads);
    if threads <= 1 || blocks <= 1 {
        if n > 0 {
            f(0..n);
        }
        return;
    }
    let step = n.div_ceil(blocks);
    candle_core::utils::barrier_pool().execute_chunked(blocks, |bs| {
        for b in bs {
            let lo = b * step;
            if lo < n {
                f(lo..((b + 1) * step).min(n));
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_visited_once_with_its_index() {
        for (rows, width, min_rows) in [(0usize, 3usize, 4usize), (1, 5, 1), (37, 3, 2), (1000, 7, 16)] {
            let mut data: Vec<u64> = (0..rows * width).map(|i| i as u64).collect();
            let sums = map_rows(&mut data, width, min_rows, |r, row| {
                row.iter_mut().for_each(|x| *x += 1);
                row.iter().sum::<u64>() + 1_000_000 * r as u64
            });
            assert_eq!(sums.len(), rows);
            for (r, &sum) in sums.iter().enumerate() {
                let expect: u64 = (0..width).map(|j| (r * width + j) as u64 + 1).sum::<u64>() + 1_000_000 * r as u64;
                assert_eq!(sum, expect, "row {r}");
            }
            assert!(data.iter().enumerate().all(|(i, &x)| x == i as u64 + 1));
        }
    }

    #[test]
    fn ranges_cover_every_item_once() {
        use std::sync::atomic::{AtomicU32, Ordering};
        for (n, min_len) in [(0usize, 4usize), (1, 1), (37, 2), (10_000, 64)] {
            let hits: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
            for_ranges(n, min_len, |r| {
                assert!(r.start < r.end && r.end <= n, "range {r:?} of {n}");
                r.for_each(|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "n = {n}");
        }
    }

    #[test]
    fn items_alone_run_once_each_and_split_nothing_inside() {
        use std::sync::atomic::{AtomicU32, Ordering};
        for n in [0usize, 1, 2, 5] {
            let hits: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
            for_each_alone(n, |i| {
                // Inside an item: one thread, and the pool-using loops run inline (entering the
                // barrier pool again from here would deadlock).
                if n > 1 {
                    assert_eq!(threads(), 1);
                }
                let inner = AtomicU32::new(0);
                for_ranges(10_000, 16, |r| {
                    inner.fetch_add(r.len() as u32, Ordering::Relaxed);
                });
                assert_eq!(inner.load(Ordering::Relaxed), 10_000);
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "n = {n}");
        }
        // and outside again, the full count
        assert_eq!(threads(), candle_core::utils::get_num_threads());
    }
}
