//! The musl binaries' allocator: musl's `malloc` behind lists of freed small blocks.
//!
//! musl's malloc (mallocng) gives a group of slots back to the kernel as soon as its last slot
//! is freed, so a function that builds and drops a batch's records every event maps and unmaps
//! memory thousands of times an event (3,036 `mmap` and 2,830 `munmap` calls over 14 events of
//! the audit function; the glibc build: none), and touches fresh pages each time. Here a freed
//! block of up to [`LARGEST`] bytes goes onto a list of its size class instead, and the next
//! allocation of that class takes it back — what glibc's tcache does — up to [`KEPT_BYTES`]
//! held in all. The peaks grow by more than the lists hold (3 to 15 MB as measured: blocks kept
//! keep mallocng's groups from going back), inside every function's target (docs/performance.md,
//! "The musl build against the glibc build").
//!
//! Large blocks, which musl maps on their own and unmaps when freed (an event's decoded batch,
//! its records, hash tables: about 3 MB in blocks of 128 KiB to 1 MiB, every event), are kept
//! too, from 128 KiB to 8 MiB by size class, up to [`KEPT_LARGE_BYTES`]: the next event takes
//! them back instead of faulting fresh pages in. Blocks between 4 KiB and 128 KiB, which share
//! mallocng's groups, are not.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, Ordering};

/// The largest small block the lists keep, bytes.
const LARGEST: usize = 4096;

/// The most the small blocks' lists hold in all, bytes.
const KEPT_BYTES: usize = 4 * 1024 * 1024;

/// Large blocks kept: from musl's threshold for mapping a block on its own (below it, blocks
/// share mallocng's groups, and keeping them keeps groups from going back) up to this.
const LARGE: std::ops::RangeInclusive<usize> = 128 * 1024..=8 * 1024 * 1024;

/// The most the large blocks' lists hold in all, bytes.
const KEPT_LARGE_BYTES: usize = 6 * 1024 * 1024;

/// Size classes: 16-byte steps up to 256 bytes, then four a doubling up to the largest large
/// block (those between [`LARGEST`] and the large ones unused).
const CLASSES: usize = class_of(*LARGE.end()) + 1;

/// The first large class: the one whose blocks are 128 KiB (the last quarter of 64–128 KiB).
const FIRST_LARGE: usize = class_of(*LARGE.start());

/// Every block the lists hand out is aligned to this (musl's `malloc` gives 16).
const ALIGN: usize = 16;

/// The size class of a request of `size` bytes (`size` ≤ the largest large block).
#[inline]
const fn class_of(size: usize) -> usize {
    if size <= 256 {
        return size.saturating_sub(1) / 16;
    }
    // The doubling 256 · 2^k < size ≤ 256 · 2^(k+1), then its quarter.
    let k = (usize::BITS - 1 - ((size - 1) >> 8).leading_zeros()) as usize;
    let base = 256 << k;
    16 + 4 * k + (size - 1 - base) / (base / 4)
}

/// The bytes a block of class `class` holds.
#[inline]
fn class_size(class: usize) -> usize {
    if class < 16 {
        return (class + 1) * 16;
    }
    let (k, quarter) = ((class - 16) / 4, (class - 16) % 4);
    let base = 256 << k;
    base + (quarter + 1) * (base / 4)
}

/// Which budget a class counts against: 0 small, 1 large.
#[inline]
fn budget(class: usize) -> usize {
    usize::from(class >= FIRST_LARGE)
}

/// A freed block on its list: the next one.
struct Free {
    next: *mut Free,
}

struct Lists {
    heads: [*mut Free; CLASSES],
    /// Bytes held: small blocks, large blocks.
    bytes: [usize; 2],
}

/// musl's `malloc` with the lists in front.
pub struct Cached {
    lock: AtomicBool,
    lists: std::cell::UnsafeCell<Lists>,
}

// SAFETY: the lists are only touched with `lock` held.
unsafe impl Sync for Cached {}

impl Cached {
    /// Empty lists.
    pub const fn new() -> Self {
        Self {
            lock: AtomicBool::new(false),
            lists: std::cell::UnsafeCell::new(Lists {
                heads: [null_mut(); CLASSES],
                bytes: [0; 2],
            }),
        }
    }

    /// Runs `f` on the lists with the lock held (a spin lock: the functions allocate from one
    /// thread, so it is almost never contended).
    #[inline]
    fn with<T>(&self, f: impl FnOnce(&mut Lists) -> T) -> T {
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        // SAFETY: the lock is held.
        let out = f(unsafe { &mut *self.lists.get() });
        self.lock.store(false, Ordering::Release);
        out
    }

    /// The class of `layout`, when the lists serve it (small and large blocks).
    #[inline]
    fn class_for(layout: Layout) -> Option<usize> {
        let size = layout.size();
        ((size <= LARGEST || LARGE.contains(&size)) && layout.align() <= ALIGN)
            .then(|| class_of(size))
    }
}

impl Default for Cached {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every small block comes from `System` with its class's size and alignment, so any
// block of a class serves any request of that class; a block is on one list at most, and
// goes back to `System` with the layout it was allocated with.
unsafe impl GlobalAlloc for Cached {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = Self::class_for(layout) else {
            // SAFETY: the caller's contract.
            return unsafe { System.alloc(layout) };
        };
        let size = class_size(class);
        let kept = self.with(|lists| {
            let head = lists.heads[class];
            if !head.is_null() {
                // SAFETY: a block on a list holds a `Free` written when it was freed.
                lists.heads[class] = unsafe { (*head).next };
                lists.bytes[budget(class)] -= size;
            }
            head
        });
        if !kept.is_null() {
            return kept.cast();
        }
        // SAFETY: a non-zero size, a power-of-two alignment.
        unsafe { System.alloc(Layout::from_size_align_unchecked(size, ALIGN)) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(class) = Self::class_for(layout) else {
            // SAFETY: the caller's contract.
            return unsafe { System.dealloc(ptr, layout) };
        };
        let size = class_size(class);
        let kept = self.with(|lists| {
            let kind = budget(class);
            if lists.bytes[kind] + size > [KEPT_BYTES, KEPT_LARGE_BYTES][kind] {
                return false;
            }
            let block = ptr.cast::<Free>();
            // SAFETY: the block is the caller's no more, at least 16 bytes and 16-aligned.
            unsafe {
                block.write(Free {
                    next: lists.heads[class],
                })
            };
            lists.heads[class] = block;
            lists.bytes[kind] += size;
            true
        });
        if !kept {
            // SAFETY: allocated from `System` with this layout.
            unsafe { System.dealloc(ptr, Layout::from_size_align_unchecked(size, ALIGN)) }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = Layout::from_size_align(new_size, layout.align());
        match (Self::class_for(layout), new.ok().and_then(Self::class_for)) {
            // Still the same class: the block already holds it.
            (Some(class), Some(new_class)) if class == new_class => ptr,
            // Neither served by the lists: musl moves or grows it in place (`mremap` for mapped
            // blocks).
            // SAFETY: the caller's contract.
            (None, None) => unsafe { System.realloc(ptr, layout, new_size) },
            _ => {
                // SAFETY: the new layout is valid (the caller's contract); both blocks hold
                // the bytes copied.
                unsafe {
                    let moved =
                        self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
                    if !moved.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    moved
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size up to the largest falls in a class that holds it, the classes grow with the
    /// size, and no class wastes more than a quarter of its block beyond 256 bytes.
    #[test]
    fn size_classes_hold_their_sizes() {
        let mut last = 0;
        let sizes = (1..=LARGEST).chain((*LARGE.start()..=*LARGE.end()).step_by(4093));
        for size in sizes.chain([*LARGE.end()]) {
            let class = class_of(size);
            assert!(class < CLASSES, "{size}");
            assert!(class >= last, "{size}");
            last = class;
            let held = class_size(class);
            assert!(held >= size, "{size} in class {class} of {held}");
            assert!(
                class == 0 || class_size(class - 1) < size,
                "{size}: a smaller class holds it"
            );
            assert!(held % ALIGN == 0);
        }
        assert_eq!(class_of(*LARGE.end()), CLASSES - 1);
        assert_eq!(class_of(*LARGE.start()), FIRST_LARGE);
        assert_eq!(budget(class_of(LARGEST)), 0);
    }

    /// Blocks of every class and beyond come back whole through alloc, realloc and dealloc,
    /// freed blocks are reused, and the lists never hold more than their cap.
    #[test]
    fn blocks_survive_reuse_and_resizing() {
        let cached = Cached::new();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
        for step in 0..20_000u32 {
            match rng.u8(..4) {
                0 | 1 => {
                    let size = if rng.u8(..64) == 0 {
                        rng.usize(128 * 1024..1_000_000)
                    } else if rng.u8(..8) == 0 {
                        rng.usize(1..200_000)
                    } else {
                        rng.usize(1..3_000)
                    };
                    let layout = Layout::from_size_align(size, 1 << rng.usize(0..5)).unwrap();
                    // SAFETY: a non-zero size.
                    let ptr = unsafe { cached.alloc(layout) };
                    assert!(!ptr.is_null());
                    assert_eq!(ptr as usize % layout.align(), 0);
                    let fill = step as u8;
                    // SAFETY: the block holds `size` bytes.
                    unsafe { ptr.write_bytes(fill, size) };
                    live.push((ptr, layout, fill));
                }
                2 if !live.is_empty() => {
                    let (ptr, layout, fill) = live.swap_remove(rng.usize(..live.len()));
                    // SAFETY: allocated above with `layout`, filled with `fill`.
                    unsafe {
                        assert!(std::slice::from_raw_parts(ptr, layout.size())
                            .iter()
                            .all(|&b| b == fill));
                        cached.dealloc(ptr, layout);
                    }
                }
                _ if !live.is_empty() => {
                    let at = rng.usize(..live.len());
                    let (ptr, layout, fill) = live[at];
                    let new_size = rng.usize(1..300_000);
                    // SAFETY: allocated above with `layout`; then the new block holds
                    // `new_size` bytes, the old ones copied.
                    unsafe {
                        let moved = cached.realloc(ptr, layout, new_size);
                        assert!(!moved.is_null());
                        let kept = layout.size().min(new_size);
                        assert!(std::slice::from_raw_parts(moved, kept)
                            .iter()
                            .all(|&b| b == fill));
                        moved.write_bytes(fill, new_size);
                        live[at] = (
                            moved,
                            Layout::from_size_align(new_size, layout.align()).unwrap(),
                            fill,
                        );
                    }
                }
                _ => {}
            }
            let [small, large] = cached.with(|lists| lists.bytes);
            assert!(small <= KEPT_BYTES && large <= KEPT_LARGE_BYTES);
        }
        for (ptr, layout, _) in live {
            // SAFETY: allocated above with `layout`.
            unsafe { cached.dealloc(ptr, layout) };
        }
        // Freed blocks are taken back: one of the smallest class comes off its list.
        let layout = Layout::from_size_align(8, 8).unwrap();
        // SAFETY: a non-zero size; freed with its layout.
        unsafe {
            let a = cached.alloc(layout);
            cached.dealloc(a, layout);
            assert_eq!(cached.alloc(layout), a);
            cached.dealloc(a, layout);
        }
        // And so are large ones, of a size within their class.
        let (big, near) = (
            Layout::from_size_align(1_000_000, 8).unwrap(),
            Layout::from_size_align(1_000_100, 16).unwrap(),
        );
        // SAFETY: non-zero sizes; each freed with its layout.
        unsafe {
            let a = cached.alloc(big);
            cached.dealloc(a, big);
            assert_eq!(cached.alloc(near), a);
            cached.dealloc(a, near);
        }
    }
}
