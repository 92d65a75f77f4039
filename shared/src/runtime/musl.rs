//! `memcpy` and `memmove` for the shipped static musl binaries on x86_64.
//!
//! musl's x86_64 `memcpy` copies with `rep movsq` and single-byte `movsb`, which costs tens of
//! cycles however small the copy; Rust code makes millions of small copies (every string a
//! serializer appends, every buffer it extends). Measured on the audit function with 10,000
//! rules, 128 KB events: `memcpy` took 48 % of the musl build's time, and the build took 21 ms an
//! event against the glibc build's 10 ms (docs/performance.md). These two replace musl's in the
//! static link: copies of up to 64 bytes are a few overlapping unaligned loads and stores, longer
//! ones `rep movsb`, which x86_64 processors run at full speed from a few dozen bytes on (ERMS).
//!
//! The copies read every byte of a short copy before writing any, so they are also correct
//! between overlapping buffers; a long backward move (destination after an overlapping source)
//! runs `rep movsb` with the direction flag set. Nothing here calls `memcpy` or loops, so the
//! compiler cannot turn a body back into a call to itself.
#![allow(unsafe_code)]

use core::arch::asm;
use core::ptr::{read_unaligned as load, write_unaligned as store};

/// Copies `n` bytes from `src` to `dest`, forward; correct for any overlap where `dest` is not
/// after `src` within the copy, and for any overlap when `n` is at most 64.
///
/// # Safety
/// `src` readable and `dest` writable for `n` bytes.
#[inline(always)]
pub(crate) unsafe fn copy_forward(dest: *mut u8, src: *const u8, n: usize) {
    if n <= 64 {
        // SAFETY: the caller's contract.
        unsafe { copy_short(dest, src, n) };
        return;
    }
    if n <= MEDIUM {
        // SAFETY: the caller's contract; `n` > 64.
        unsafe { copy_medium(dest, src, n) };
        return;
    }
    // SAFETY: `rep movsb` copies `rcx` bytes from `rsi` to `rdi`, forward (the ABI keeps the
    // direction flag clear), within the caller's bounds.
    unsafe {
        asm!(
            "rep movsb",
            inout("rcx") n => _,
            inout("rdi") dest => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags)
        );
    }
}

/// Copies up to this many bytes in 64-byte steps of unaligned 16-byte loads and stores; longer
/// copies take `rep movsb`, whose start-up costs more than such a loop below about 2 KiB (glibc
/// switches at the same size).
const MEDIUM: usize = 2048;

/// Copies `n` bytes forward, 64 < `n`: the last 64 bytes are read first (so a forward move
/// onto an overlapping source is correct), then 64-byte steps from the start while more than
/// 64 bytes are left, then the last 64 bytes written. A loop in assembly, so the compiler
/// cannot make it a call to `memcpy`.
///
/// # Safety
/// `src` readable and `dest` writable for `n` bytes; `n` > 64.
#[inline(always)]
unsafe fn copy_medium(dest: *mut u8, src: *const u8, n: usize) {
    // SAFETY: every access lies within the first `n` bytes of `src` or `dest`: the steps stop
    // while more than 64 bytes are left, and the tail is the last 64.
    unsafe {
        asm!(
            "movdqu xmm4, [{src} + {n} - 64]",
            "movdqu xmm5, [{src} + {n} - 48]",
            "movdqu xmm6, [{src} + {n} - 32]",
            "movdqu xmm7, [{src} + {n} - 16]",
            "lea {tail}, [{dest} + {n} - 64]",
            "2:",
            "movdqu xmm0, [{src}]",
            "movdqu xmm1, [{src} + 16]",
            "movdqu xmm2, [{src} + 32]",
            "movdqu xmm3, [{src} + 48]",
            "movdqu [{dest}], xmm0",
            "movdqu [{dest} + 16], xmm1",
            "movdqu [{dest} + 32], xmm2",
            "movdqu [{dest} + 48], xmm3",
            "add {src}, 64",
            "add {dest}, 64",
            "sub {n}, 64",
            "cmp {n}, 64",
            "ja 2b",
            "movdqu [{tail}], xmm4",
            "movdqu [{tail} + 16], xmm5",
            "movdqu [{tail} + 32], xmm6",
            "movdqu [{tail} + 48], xmm7",
            src = inout(reg) src => _,
            dest = inout(reg) dest => _,
            n = inout(reg) n => _,
            tail = out(reg) _,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
            out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
            options(nostack)
        );
    }
}

/// Copies `n` bytes, `n` at most 64: every byte read before any is written.
///
/// # Safety
/// `src` readable and `dest` writable for `n` bytes.
#[inline(always)]
unsafe fn copy_short(dest: *mut u8, src: *const u8, n: usize) {
    // SAFETY: every access below lies within the first `n` bytes of `src` or `dest`: each
    // size class reads a head and a tail that may overlap each other, never past `n`.
    unsafe {
        match n {
            0 => {}
            1 => store(dest, load(src)),
            2..=3 => {
                let (head, tail) = (load(src as *const u16), load(src.add(n - 2) as *const u16));
                store(dest as *mut u16, head);
                store(dest.add(n - 2) as *mut u16, tail);
            }
            4..=7 => {
                let (head, tail) = (load(src as *const u32), load(src.add(n - 4) as *const u32));
                store(dest as *mut u32, head);
                store(dest.add(n - 4) as *mut u32, tail);
            }
            8..=16 => {
                let (head, tail) = (load(src as *const u64), load(src.add(n - 8) as *const u64));
                store(dest as *mut u64, head);
                store(dest.add(n - 8) as *mut u64, tail);
            }
            17..=32 => {
                let head = load(src as *const u128);
                let tail = load(src.add(n - 16) as *const u128);
                store(dest as *mut u128, head);
                store(dest.add(n - 16) as *mut u128, tail);
            }
            _ => {
                let a = load(src as *const u128);
                let b = load(src.add(16) as *const u128);
                let c = load(src.add(n - 32) as *const u128);
                let d = load(src.add(n - 16) as *const u128);
                store(dest as *mut u128, a);
                store(dest.add(16) as *mut u128, b);
                store(dest.add(n - 32) as *mut u128, c);
                store(dest.add(n - 16) as *mut u128, d);
            }
        }
    }
}

/// Moves `n` bytes from `src` to `dest`, the two possibly overlapping.
///
/// # Safety
/// `src` readable and `dest` writable for `n` bytes.
#[inline(always)]
pub(crate) unsafe fn copy_any(dest: *mut u8, src: *const u8, n: usize) {
    let after = (dest as usize).wrapping_sub(src as usize) < n;
    if n <= 64 || !after {
        // SAFETY: forward is correct unless `dest` lies after `src` within the copy, and a
        // short copy reads everything first.
        unsafe { copy_forward(dest, src, n) };
        return;
    }
    // SAFETY: backward from the last byte (direction flag set, then cleared as the ABI
    // requires), within the caller's bounds; `n` > 0.
    unsafe {
        asm!(
            "std",
            "rep movsb",
            "cld",
            inout("rcx") n => _,
            inout("rdi") dest.add(n - 1) => _,
            inout("rsi") src.add(n - 1) => _,
            options(nostack)
        );
    }
}

/// `memcpy`, replacing musl's in the static link.
///
/// # Safety
/// As C's `memcpy`.
#[cfg(target_env = "musl")]
#[no_mangle]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: C's contract.
    unsafe { copy_forward(dest, src, n) };
    dest
}

/// `memmove`, replacing musl's (which calls into musl's `memcpy`, so both are replaced).
///
/// # Safety
/// As C's `memmove`.
#[cfg(target_env = "musl")]
#[no_mangle]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: C's contract.
    unsafe { copy_any(dest, src, n) };
    dest
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length up to 300 and about the 2 KiB switch to `rep movsb`, at every pair of small
    /// offsets, within one buffer (so both overlaps are tried) and between two: each byte lands
    /// where `copy_within` puts it.
    #[test]
    fn copies_and_moves_agree_with_the_standard_library() {
        let original: Vec<u8> = (0..5000u32).map(|i| (i * 7 + 3) as u8).collect();
        for n in (0..300).chain([MEDIUM - 1, MEDIUM, MEDIUM + 1, 4000]) {
            for from in [0usize, 1, 3, 8, 17, 64] {
                for to in [0usize, 1, 5, 8, 33, 70] {
                    let mut expected = original.clone();
                    expected.copy_within(from..from + n, to);
                    let mut moved = original.clone();
                    let base = moved.as_mut_ptr();
                    // SAFETY: both ranges lie within the 5,000-byte buffer.
                    unsafe { copy_any(base.add(to), base.add(from), n) };
                    assert_eq!(moved, expected, "move of {n} from {from} to {to}");
                    let mut target = vec![0u8; 4100];
                    // SAFETY: distinct buffers, both long enough.
                    unsafe {
                        copy_forward(target.as_mut_ptr().add(to), original.as_ptr().add(from), n)
                    };
                    assert_eq!(
                        &target[to..to + n],
                        &original[from..from + n],
                        "copy of {n}"
                    );
                    assert!(
                        target[..to].iter().all(|&b| b == 0),
                        "nothing before the copy"
                    );
                    assert!(target[to + n..].iter().all(|&b| b == 0), "nothing after it");
                }
            }
        }
    }
}
