//! The static musl build's allocator: dlmalloc behind a spin lock, with
//! small freed blocks kept in a few shards for reuse without that lock.
//!
//! musl's own allocator maps and unmaps small regions every few allocations,
//! each a system call and page faults (see packaging/build); dlmalloc takes
//! memory in large steps. dlmalloc's own global wrapper guards it with a
//! pthread mutex, and when two threads allocate at once (the two threads of a
//! large parse, the server's threads) the loser sleeps in the kernel and is
//! woken by the next unlock: two system calls and two context switches for a
//! critical section of tens of nanoseconds. Here a waiting thread spins
//! instead, and only yields its core when the holder is taking long, as when
//! the holder itself was descheduled.
//!
//! Even spinning, threads that allocate at once take turns at the one lock,
//! and its cache line moves between their cores at every turn. Most
//! allocations are small and freed by the thread that made them, so a freed
//! block of up to [`SMALL`] bytes goes to the freeing thread's shard, a free
//! list per size class, and that thread's next allocation of the class takes
//! it from there. Each thread is given one of [`SHARDS`] shards, in turn; a
//! shard only ever *tries* its lock, so a thread that finds its shard busy
//! (more threads than shards) goes to dlmalloc instead of waiting. A class
//! keeps at most [`KEEP`] blocks per shard; the rest go back to dlmalloc.
//!
//! dlmalloc takes its memory from the system at least [`SEGMENT`] bytes at
//! a time ([`Segments`]), and blocks of [`MAPPED_FROM`] bytes or more are
//! mappings of their own ([`Place::Mapped`]).

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::cell::{Cell, UnsafeCell};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use dlmalloc::Dlmalloc;

/// dlmalloc's alignment: its chunks are multiples of it.
const STEP: usize = 16;
/// The usable size of dlmalloc's smallest chunk (32 bytes, less the size
/// word it keeps in each).
const MIN_USABLE: usize = 24;
/// Size classes: the usable sizes of dlmalloc's chunks, from the smallest
/// up. A small request is served a block of its class, which takes the same
/// chunk the request would have taken from dlmalloc directly, so keeping
/// blocks by class wastes no memory.
const CLASSES: usize = 16;
/// The largest block size the shards keep.
const SMALL: usize = class_size(CLASSES - 1);
/// Shards, each used by the threads given it.
const SHARDS: usize = 4;
/// The most blocks of one class a shard keeps (all shards together keep
/// about half a megabyte at most).
const KEEP: u32 = 64;

/// The global allocator.
pub struct Allocator {
    locked: AtomicBool,
    heap: UnsafeCell<Dlmalloc<Segments>>,
    shards: [Shard; SHARDS],
    /// The shard the next thread is given.
    next: AtomicUsize,
}

// SAFETY: `heap` is only reached through `with`, which holds `locked`, and
// each shard's lists only under that shard's lock.
unsafe impl Sync for Allocator {}

thread_local! {
    /// This thread's shard, once given (no destructor: reading it never
    /// allocates and works until the thread ends).
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

impl Allocator {
    pub const fn new() -> Self {
        Self {
            locked: AtomicBool::new(false),
            heap: UnsafeCell::new(Dlmalloc::new_with_allocator(Segments)),
            shards: [const { Shard::new() }; SHARDS],
            next: AtomicUsize::new(0),
        }
    }

    /// Runs `f` on the heap, alone.
    fn with<T>(&self, f: impl FnOnce(&mut Dlmalloc<Segments>) -> T) -> T {
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

    /// The calling thread's shard.
    fn shard(&self) -> &Shard {
        let index = SHARD
            .try_with(|shard| {
                if shard.get() == usize::MAX {
                    shard.set(self.next.fetch_add(1, Ordering::Relaxed) % SHARDS);
                }
                shard.get()
            })
            .unwrap_or(0);
        &self.shards[index]
    }
}

/// The least memory dlmalloc takes from the system at a time. Its own step
/// is 64 kB: a 100,000-series push mapped 166 regions one by one, each a
/// system call made while holding the heap lock, which the other parsing
/// thread then waited on (690 `sched_yield`s). Mapped memory costs nothing
/// until it is touched, so a larger step only takes address space.
const SEGMENT: usize = 4 << 20;

/// Where dlmalloc gets its memory: anonymous private mappings, of at least
/// [`SEGMENT`] bytes.
struct Segments;

// SAFETY: every region returned is a fresh anonymous mapping of the size
// reported, readable, writable and zeroed; regions are resized and
// released only as dlmalloc asks, with the sizes it was given.
unsafe impl dlmalloc::Allocator for Segments {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        let size = size.max(SEGMENT);
        match map(size) {
            Some(region) => (region, size, 0),
            None => (ptr::null_mut(), 0, 0),
        }
    }

    fn remap(&self, region: *mut u8, old: usize, new: usize, can_move: bool) -> *mut u8 {
        let flags = if can_move { libc::MREMAP_MAYMOVE } else { 0 };
        // SAFETY: `region` is a mapping of `old` bytes made here.
        let moved = unsafe { libc::mremap(region.cast(), old, new, flags) };
        if moved == libc::MAP_FAILED {
            ptr::null_mut()
        } else {
            moved.cast()
        }
    }

    fn free_part(&self, region: *mut u8, old: usize, new: usize) -> bool {
        // SAFETY: `region` is a mapping of `old` bytes made here; its tail
        // past `new` is unmapped.
        unsafe {
            libc::mremap(region.cast(), old, new, 0) != libc::MAP_FAILED
                || libc::munmap(region.add(new).cast(), old - new) == 0
        }
    }

    fn free(&self, region: *mut u8, size: usize) -> bool {
        // SAFETY: `region` is a mapping of `size` bytes made here.
        unsafe { libc::munmap(region.cast(), size) == 0 }
    }

    fn can_release_part(&self, _flags: u32) -> bool {
        true
    }

    fn allocates_zeros(&self) -> bool {
        true
    }

    fn page_size(&self) -> usize {
        page_size()
    }
}

/// Blocks of at least this many bytes are mappings of their own, outside
/// dlmalloc, as in glibc's allocator: a mapping is zeroed without being
/// touched, grows by moving pages instead of bytes (`mremap`), and goes
/// back to the system as soon as it is freed. (In dlmalloc, the freed
/// buffers of a request body that grew to 64 MiB stayed resident.)
const MAPPED_FROM: usize = 1 << 20;

/// Where a block of `layout` lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// A block of this size class, kept by the shards when freed.
    Small(usize),
    /// dlmalloc's.
    Heap,
    /// A mapping of its own, of [`mapped_size`] bytes.
    Mapped,
}

fn place(layout: Layout) -> Place {
    if let Some(class) = class(layout) {
        Place::Small(class)
    } else if layout.size() >= MAPPED_FROM && layout.align() <= page_size() {
        Place::Mapped
    } else {
        Place::Heap
    }
}

/// The system's page size.
fn page_size() -> usize {
    // SAFETY: no arguments to get wrong.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// The size of the mapping that holds a block of `size` bytes.
fn mapped_size(size: usize) -> usize {
    size.next_multiple_of(page_size())
}

/// A new zeroed, readable and writable anonymous mapping of `size` bytes.
fn map(size: usize) -> Option<*mut u8> {
    // SAFETY: a new mapping, at an address the kernel picks.
    let region = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    (region != libc::MAP_FAILED).then_some(region.cast())
}

/// The size class of `layout`, if the shards keep blocks of it.
fn class(layout: Layout) -> Option<usize> {
    let size = layout.size();
    (size <= SMALL && layout.align() <= STEP)
        .then(|| size.saturating_sub(MIN_USABLE).div_ceil(STEP))
}

/// What a block of `class` holds: every small block is this size in dlmalloc,
/// so that any freed block of a class serves any request of it.
const fn class_size(class: usize) -> usize {
    MIN_USABLE + class * STEP
}

/// A free block, linked through its first word.
struct Node {
    next: *mut Node,
}

#[derive(Clone, Copy)]
struct List {
    head: *mut Node,
    len: u32,
}

/// Free lists of small blocks, one per class, behind a lock that is only
/// ever tried.
struct Shard {
    locked: AtomicBool,
    lists: UnsafeCell<[List; CLASSES]>,
}

impl Shard {
    const fn new() -> Self {
        Self {
            locked: AtomicBool::new(false),
            lists: UnsafeCell::new(
                [List {
                    head: ptr::null_mut(),
                    len: 0,
                }; CLASSES],
            ),
        }
    }

    /// Runs `f` on the lists if the lock is free; `None` if it is not.
    fn try_with<T>(&self, f: impl FnOnce(&mut [List; CLASSES]) -> T) -> Option<T> {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        // SAFETY: the lock is held, so no other reference to the lists exists.
        let result = f(unsafe { &mut *self.lists.get() });
        self.locked.store(false, Ordering::Release);
        Some(result)
    }

    /// A kept block of `class`, if there is one and the shard is free.
    fn take(&self, class: usize) -> Option<*mut u8> {
        self.try_with(|lists| {
            let list = &mut lists[class];
            let node = list.head;
            if node.is_null() {
                return None;
            }
            // SAFETY: a listed node is a free block this shard owns, holding
            // the link written by `keep`.
            list.head = unsafe { (*node).next };
            list.len -= 1;
            Some(node.cast::<u8>())
        })
        .flatten()
    }

    /// Keeps `block` of `class`; `false` if the class is full or the shard
    /// busy, and the caller must free it.
    fn keep(&self, class: usize, block: *mut u8) -> bool {
        self.try_with(|lists| {
            let list = &mut lists[class];
            if list.len >= KEEP {
                return false;
            }
            // Every small block is aligned to `STEP`, more than a `Node` needs.
            #[allow(clippy::cast_ptr_alignment)]
            let node = block.cast::<Node>();
            // SAFETY: `block` is a free block of at least `MIN_USABLE`
            // bytes, aligned to `STEP`, that nothing else refers to any more.
            unsafe { node.write(Node { next: list.head }) };
            list.head = node;
            list.len += 1;
            true
        })
        .unwrap_or(false)
    }
}

// SAFETY: every block comes from dlmalloc, which meets GlobalAlloc's
// contract, under the lock, or is a mapping of its own, page-aligned, whose
// size follows from the layout's; a small block is one of `class_size`
// bytes aligned to `STEP`, which covers every layout of its class, and a
// kept block is handed out again only once. A layout's place is the same
// when a block is made and when it is freed or resized.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match place(layout) {
            Place::Small(class) => self.shard().take(class).unwrap_or_else(|| {
                self.with(|heap| unsafe { heap.malloc(class_size(class), STEP) })
            }),
            Place::Heap => self.with(|heap| unsafe { heap.malloc(layout.size(), layout.align()) }),
            Place::Mapped => map(mapped_size(layout.size())).unwrap_or(ptr::null_mut()),
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match place(layout) {
            Place::Small(_) => {
                let block = unsafe { self.alloc(layout) };
                if !block.is_null() {
                    unsafe { block.write_bytes(0, layout.size()) };
                }
                block
            }
            Place::Heap => self.with(|heap| unsafe { heap.calloc(layout.size(), layout.align()) }),
            // Fresh mappings are zeroed.
            Place::Mapped => unsafe { self.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match place(layout) {
            Place::Small(class) => {
                if !self.shard().keep(class, ptr) {
                    self.with(|heap| unsafe { heap.free(ptr, class_size(class), STEP) });
                }
            }
            Place::Heap => {
                self.with(|heap| unsafe { heap.free(ptr, layout.size(), layout.align()) });
            }
            Place::Mapped => {
                // SAFETY: the block is a mapping of this size made by `alloc`.
                unsafe { libc::munmap(ptr.cast(), mapped_size(layout.size())) };
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: GlobalAlloc::realloc's contract: `new_size`, rounded up to
        // the alignment, does not overflow.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (place(layout), place(new_layout)) {
            // Both dlmalloc's: it grows or moves the block itself.
            (Place::Heap, Place::Heap) => self
                .with(|heap| unsafe { heap.realloc(ptr, layout.size(), layout.align(), new_size) }),
            // The same class: the block already holds the new size.
            (Place::Small(old), Place::Small(new)) if old == new => ptr,
            // Both mappings: the kernel moves the pages, not the bytes.
            (Place::Mapped, Place::Mapped) => {
                // SAFETY: the block is a mapping of the old size made here.
                let moved = unsafe {
                    libc::mremap(
                        ptr.cast(),
                        mapped_size(layout.size()),
                        mapped_size(new_size),
                        libc::MREMAP_MAYMOVE,
                    )
                };
                if moved == libc::MAP_FAILED {
                    ptr::null_mut()
                } else {
                    moved.cast()
                }
            }
            // Across classes, or between places: a block's size must stay
            // its place's, so move it.
            _ => {
                let moved = unsafe { self.alloc(new_layout) };
                if !moved.is_null() {
                    unsafe {
                        ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                moved
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Allocates and fills blocks of many sizes, grows and shrinks them across
    /// classes and places, and checks every byte: blocks
    /// handed out twice, or moved short, would show as wrong bytes.
    fn churn(allocator: &Allocator, seed: usize) {
        let mut blocks: Vec<(*mut u8, Layout, u8)> = Vec::new();
        let check = |(block, layout, byte): &(*mut u8, Layout, u8)| {
            let bytes = unsafe { std::slice::from_raw_parts(*block, layout.size()) };
            assert!(
                bytes.iter().all(|b| b == byte),
                "a block changed under its owner"
            );
        };
        for round in 0..2000 {
            // Now and then a block about as large as MAPPED_FROM, of either
            // place.
            let size = if round % 40 == 7 {
                MAPPED_FROM / 2 + (round * 4099 + seed) % (2 * MAPPED_FROM)
            } else {
                1 + (round * 37 + seed * 11) % 6000
            };
            let align = [1, 8, 16, 64][round % 4];
            let layout = Layout::from_size_align(size, align).unwrap();
            let block = if round % 3 == 0 {
                unsafe { allocator.alloc_zeroed(layout) }
            } else {
                unsafe { allocator.alloc(layout) }
            };
            assert!(!block.is_null());
            assert_eq!(block as usize % align, 0, "misaligned block");
            if round % 3 == 0 {
                let bytes = unsafe { std::slice::from_raw_parts(block, size) };
                assert!(
                    bytes.iter().all(|&b| b == 0),
                    "alloc_zeroed gave dirty bytes"
                );
            }
            let byte = (round + seed) as u8;
            unsafe { block.write_bytes(byte, size) };
            blocks.push((block, layout, byte));
            if round % 5 == 4 {
                // Resize one, keeping its bytes up to the smaller size.
                let (block, layout, byte) = blocks.swap_remove(round % blocks.len());
                let new_size = if round % 40 == 9 {
                    MAPPED_FROM / 2 + (round * 7919) % (2 * MAPPED_FROM)
                } else {
                    1 + (round * 53) % 5000
                };
                let moved = unsafe { allocator.realloc(block, layout, new_size) };
                assert!(!moved.is_null());
                let kept =
                    unsafe { std::slice::from_raw_parts(moved, layout.size().min(new_size)) };
                assert!(kept.iter().all(|&b| b == byte), "realloc lost bytes");
                unsafe { moved.write_bytes(byte, new_size) };
                blocks.push((
                    moved,
                    Layout::from_size_align(new_size, layout.align()).unwrap(),
                    byte,
                ));
            }
            if round % 2 == 1 {
                let gone = blocks.swap_remove((round * 7) % blocks.len());
                check(&gone);
                unsafe { allocator.dealloc(gone.0, gone.1) };
            }
        }
        for block in blocks {
            check(&block);
            unsafe { allocator.dealloc(block.0, block.1) };
        }
    }

    #[test]
    fn blocks_stay_their_owners_across_threads_shards_and_classes() {
        static ALLOCATOR: Allocator = Allocator::new();
        // More threads than shards, so that shards are shared and busy.
        std::thread::scope(|scope| {
            for seed in 0..SHARDS * 2 {
                scope.spawn(move || churn(&ALLOCATOR, seed));
            }
        });
        // What the shards kept is bounded, and every kept block is listed
        // once.
        for shard in &ALLOCATOR.shards {
            shard
                .try_with(|lists| {
                    for list in lists {
                        assert!(list.len <= KEEP);
                        let (mut node, mut n) = (list.head, 0);
                        while !node.is_null() {
                            n += 1;
                            node = unsafe { (*node).next };
                        }
                        assert_eq!(n, list.len);
                    }
                })
                .expect("no thread holds a shard now");
        }
    }

    #[test]
    fn blocks_from_the_mapping_size_up_are_mappings_unless_overaligned() {
        let layout = |size, align| Layout::from_size_align(size, align).unwrap();
        assert_eq!(place(layout(MAPPED_FROM - 1, 8)), Place::Heap);
        assert_eq!(place(layout(MAPPED_FROM, 8)), Place::Mapped);
        assert_eq!(place(layout(MAPPED_FROM, page_size() * 2)), Place::Heap);
        assert_eq!(place(layout(16, 8)), Place::Small(0));
    }

    #[test]
    fn classes_cover_small_layouts_only() {
        let layout = |size, align| Layout::from_size_align(size, align).unwrap();
        assert_eq!(class(layout(0, 1)), Some(0));
        assert_eq!(class(layout(MIN_USABLE, 16)), Some(0));
        assert_eq!(class(layout(MIN_USABLE + 1, 8)), Some(1));
        assert_eq!(class(layout(256, 8)), Some(CLASSES - 1));
        assert_eq!(class(layout(SMALL + 1, 8)), None);
        assert_eq!(class(layout(8, 32)), None);
        for c in 0..CLASSES {
            assert_eq!(class(layout(class_size(c), 16)), Some(c));
            assert!(c == 0 || class(layout(class_size(c - 1) + 1, 1)) == Some(c));
        }
    }
}
