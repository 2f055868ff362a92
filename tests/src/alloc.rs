//! A counting global allocator for allocation-budget tests.
//!
//! [`CountingAlloc`] forwards to [`System`] and records, **per thread**, every allocation,
//! reallocation and deallocation with their byte counts, the largest single request and the
//! peak of live bytes. Because the counters are thread-local, tests running in parallel on
//! other threads do not disturb a measurement.
//!
//! A test binary opts in by installing it:
//!
//! ```ignore
//! use moq_tests::alloc::{CountingAlloc, measure};
//!
//! #[global_allocator]
//! static ALLOC: CountingAlloc = CountingAlloc::new();
//!
//! #[test]
//! fn no_allocation() {
//!     moq_tests::alloc::assert_installed();
//!     let ((), stats) = measure(|| { /* code under test */ });
//!     assert_eq!(stats.allocs, 0, "{stats}");
//! }
//! ```
//!
//! Only allocations made by the calling thread inside the closure are counted; work handed to
//! other threads is not. Without the allocator installed every count stays zero, so call
//! [`assert_installed`] first to keep a test from passing vacuously.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};

/// Live bytes of the whole process (every thread), for leak tests that run work on runtime
/// threads: see [`process_live_bytes`].
static PROCESS_LIVE: AtomicI64 = AtomicI64::new(0);

/// Bytes allocated and not yet freed by the whole process since it started, as seen by
/// [`CountingAlloc`] (0 when it is not installed). Unlike [`measure`], this counts every
/// thread, so it shows state that outlives work done on a runtime's worker threads.
pub fn process_live_bytes() -> i64 {
    PROCESS_LIVE.load(Ordering::Relaxed)
}

/// A [`GlobalAlloc`] that forwards to [`System`] and counts per thread.
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingAlloc;

impl CountingAlloc {
    /// The allocator (a unit value; usable in a `static`).
    pub const fn new() -> Self {
        CountingAlloc
    }
}

/// The raw per-thread counters. Plain `Cell`s with a `const` initialiser: no lazy
/// initialisation, no destructor and no allocation, so they are safe to touch from inside the
/// allocator, even while the thread is being torn down.
struct Counters {
    allocs: Cell<u64>,
    reallocs: Cell<u64>,
    deallocs: Cell<u64>,
    bytes_allocated: Cell<u64>,
    bytes_deallocated: Cell<u64>,
    largest: Cell<u64>,
    live: Cell<i64>,
    peak: Cell<i64>,
}

impl Counters {
    const fn new() -> Self {
        Self {
            allocs: Cell::new(0),
            reallocs: Cell::new(0),
            deallocs: Cell::new(0),
            bytes_allocated: Cell::new(0),
            bytes_deallocated: Cell::new(0),
            largest: Cell::new(0),
            live: Cell::new(0),
            peak: Cell::new(0),
        }
    }

    fn grow(&self, bytes: u64) {
        self.bytes_allocated
            .set(self.bytes_allocated.get().wrapping_add(bytes));
        self.largest.set(self.largest.get().max(bytes));
        let live = self.live.get().wrapping_add(bytes as i64);
        self.live.set(live);
        self.peak.set(self.peak.get().max(live));
    }

    fn shrink(&self, bytes: u64) {
        self.bytes_deallocated
            .set(self.bytes_deallocated.get().wrapping_add(bytes));
        self.live.set(self.live.get().wrapping_sub(bytes as i64));
    }
}

thread_local! {
    static COUNTERS: Counters = const { Counters::new() };
}

/// Run `f` on this thread's counters, doing nothing if they are unavailable.
#[inline]
fn with_counters(f: impl FnOnce(&Counters)) {
    let _ = COUNTERS.try_with(f);
}

#[allow(unsafe_code)]
// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is exactly `System`'s. The bookkeeping only touches thread-local
// `Cell`s and one atomic, which never allocate, unwind or re-enter the allocator.
unsafe impl GlobalAlloc for CountingAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            PROCESS_LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
            with_counters(|c| {
                c.allocs.set(c.allocs.get() + 1);
                c.grow(layout.size() as u64);
            });
        }
        ptr
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc_zeroed`'s
        // contract.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            PROCESS_LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
            with_counters(|c| {
                c.allocs.set(c.allocs.get() + 1);
                c.grow(layout.size() as u64);
            });
        }
        ptr
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from `System` via this allocator.
        unsafe { System.dealloc(ptr, layout) };
        PROCESS_LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        with_counters(|c| {
            c.deallocs.set(c.deallocs.get() + 1);
            c.shrink(layout.size() as u64);
        });
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; `ptr` came from `System` via this allocator and the
        // caller upholds `GlobalAlloc::realloc`'s contract.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            PROCESS_LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
            with_counters(|c| {
                c.reallocs.set(c.reallocs.get() + 1);
                c.shrink(layout.size() as u64);
                c.grow(new_size as u64);
            });
        }
        new
    }
}

/// Allocation activity of one thread over a measured interval.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AllocStats {
    /// Calls to `alloc` and `alloc_zeroed`.
    pub allocs: u64,
    /// Calls to `realloc`.
    pub reallocs: u64,
    /// Calls to `dealloc`.
    pub deallocs: u64,
    /// Bytes requested: the size of every `alloc` plus the new size of every `realloc`.
    pub bytes_allocated: u64,
    /// Bytes released: the size of every `dealloc` plus the old size of every `realloc`.
    pub bytes_deallocated: u64,
    /// The largest single request (an `alloc` size or a `realloc` new size).
    pub largest: u64,
    /// The highest live-byte level reached, relative to the start of the interval
    /// (0 if it never rose above the starting level).
    pub peak_live: u64,
}

impl AllocStats {
    /// Allocations plus reallocations: every call that may have obtained new memory.
    pub fn acquisitions(&self) -> u64 {
        self.allocs + self.reallocs
    }

    /// True when nothing was allocated, reallocated or freed.
    pub fn is_zero(&self) -> bool {
        self.allocs == 0 && self.reallocs == 0 && self.deallocs == 0
    }

    /// Net bytes still held at the end of the interval (negative if more was freed).
    pub fn net_bytes(&self) -> i64 {
        self.bytes_allocated as i64 - self.bytes_deallocated as i64
    }
}

impl fmt::Display for AllocStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} allocs, {} reallocs, {} deallocs, {} B allocated, {} B freed, largest {} B, peak live +{} B",
            self.allocs,
            self.reallocs,
            self.deallocs,
            self.bytes_allocated,
            self.bytes_deallocated,
            self.largest,
            self.peak_live
        )
    }
}

/// This thread's cumulative counters since it started (`largest` and `peak_live` are those of
/// the innermost [`measure`] in progress, or of the whole thread outside one).
pub fn snapshot() -> AllocStats {
    let mut out = AllocStats::default();
    with_counters(|c| {
        out = AllocStats {
            allocs: c.allocs.get(),
            reallocs: c.reallocs.get(),
            deallocs: c.deallocs.get(),
            bytes_allocated: c.bytes_allocated.get(),
            bytes_deallocated: c.bytes_deallocated.get(),
            largest: c.largest.get(),
            peak_live: c.peak.get().max(0) as u64,
        };
    });
    out
}

/// Run `f` and report the allocations this thread made while it ran.
///
/// Measurements nest: an outer measurement includes everything an inner one saw. `measure`
/// itself does not allocate.
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, AllocStats) {
    // Start a fresh window for the maxima, remembering the enclosing window's.
    let mut saved = (0u64, 0i64, 0i64);
    with_counters(|c| {
        saved = (c.largest.get(), c.peak.get(), c.live.get());
        c.largest.set(0);
        c.peak.set(c.live.get());
    });
    let before = snapshot();
    let result = f();
    let after = snapshot();
    let mut window = (0u64, 0i64);
    with_counters(|c| {
        window = (c.largest.get(), c.peak.get());
        c.largest.set(saved.0.max(window.0));
        c.peak.set(saved.1.max(window.1));
    });
    let stats = AllocStats {
        allocs: after.allocs - before.allocs,
        reallocs: after.reallocs - before.reallocs,
        deallocs: after.deallocs - before.deallocs,
        bytes_allocated: after.bytes_allocated - before.bytes_allocated,
        bytes_deallocated: after.bytes_deallocated - before.bytes_deallocated,
        largest: window.0,
        peak_live: (window.1 - saved.2).max(0) as u64,
    };
    (result, stats)
}

/// Whether [`CountingAlloc`] is this binary's global allocator (a measured boxed allocation
/// is seen).
pub fn is_installed() -> bool {
    let (_, stats) = measure(|| std::hint::black_box(Box::new(std::hint::black_box(7u64))));
    stats.allocs > 0
}

/// Panic unless [`CountingAlloc`] is installed, so allocation tests cannot pass vacuously.
pub fn assert_installed() {
    assert!(
        is_installed(),
        "moq_tests::alloc::CountingAlloc is not the #[global_allocator] of this test binary"
    );
}
