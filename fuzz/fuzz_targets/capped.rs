//! The allocator of every fuzz target: any single allocation above LIMIT aborts, so libFuzzer records the
//! input as a crash. Inputs are at most a few KiB; a parser that asks for more has believed a declared size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;

const LIMIT: usize = 64 << 20;

pub struct Capped;

fn check(size: usize) {
    if size > LIMIT {
        // No formatting here: it could allocate inside the allocator.
        let _ = std::io::stderr().write_all(b"capped allocator: one allocation above 64 MiB\n");
        std::process::abort();
    }
}

unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}
