//! The static musl build's allocator: dlmalloc behind a spin lock.
//!
//! musl's own allocator maps and unmaps small regions every few allocations,
//! each a system call and page faults (see packaging/build); dlmalloc takes
//! memory in large steps. dlmalloc's own global wrapper guards it with a
//! pthread mutex, and when two threads allocate at once (the two halves of a
//! large parse, the server's threads) the loser sleeps in the kernel and is
//! woken by the next unlock: two system calls and two context switches for a
//! critical section of tens of nanoseconds. Here a waiting thread spins
//! instead, and only yields its core when the holder is taking long, as when
//! the holder itself was descheduled.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};

use dlmalloc::Dlmalloc;

/// The global allocator.
pub struct Allocator {
    locked: AtomicBool,
    heap: UnsafeCell<Dlmalloc>,
}

// SAFETY: `heap` is only reached through `with`, which holds `locked`.
unsafe impl Sync for Allocator {}

impl Allocator {
    pub const fn new() -> Self {
        Self {
            locked: AtomicBool::new(false),
            heap: UnsafeCell::new(Dlmalloc::new()),
        }
    }

    /// Runs `f` on the heap, alone.
    fn with<T>(&self, f: impl FnOnce(&mut Dlmalloc) -> T) -> T {
        let mut spins = 0u32;
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.locked.load(Ordering::Relaxed) {
                if spins < 100 {
                    spins += 1;
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
        // SAFETY: the lock is held, so no other reference to the heap exists.
        let result = f(unsafe { &mut *self.heap.get() });
        self.locked.store(false, Ordering::Release);
        result
    }
}

// SAFETY: every call forwards to dlmalloc, which meets GlobalAlloc's
// contract, under the lock.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.with(|heap| unsafe { heap.malloc(layout.size(), layout.align()) })
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.with(|heap| unsafe { heap.calloc(layout.size(), layout.align()) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.with(|heap| unsafe { heap.free(ptr, layout.size(), layout.align()) });
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.with(|heap| unsafe { heap.realloc(ptr, layout.size(), layout.align(), new_size) })
    }
}
