//! gzip at level 1 through ISA-L's igzip, linked from the system library
//! (Debian `libisal2`; building needs `libisal-dev`).
//!
//! igzip compresses our `_bulk` and OTLP bodies 3-4x faster than zlib-rs
//! at level 1, with a better ratio (docs/benchmarks.md, "End to end"), and
//! gzip is the cost that bounds an HTTP sink's records per second.
//!
//! `build.rs` fails the build when the installed header's stream layout is
//! not the one the bindings describe (`layout_check.c`).
//!
//! This crate is the sinks' only `unsafe` code: the calls into the C
//! library, behind one safe function (docs/adr/004-igzip.md says why it is
//! a crate of its own). The stream state is zero-initialised before the
//! library's own initialisation, so every byte of it is initialised on the
//! Rust side; input and output are passed as pointer and length of live
//! slices, and the library writes at most the output's length.
#![allow(
    unsafe_code,
    reason = "FFI to ISA-L igzip; the only unsafe of the sinks, reviewed in one place"
)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::cell::RefCell;
use std::mem::MaybeUninit;

use isal_sys::igzip_lib as ffi;

/// Why igzip did not compress a body (the caller falls back to another
/// gzip encoder: the wire format is the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The body is 4 GiB or longer: igzip counts bytes in 32 bits.
    TooLarge,
    /// This thread's working memory was in use (re-entry; not expected).
    Busy,
    /// The library returned this code (`STATELESS_OVERFLOW` when the output
    /// had no room; not expected, as the output is sized for stored blocks).
    Library(i32),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::TooLarge => write!(f, "body of 4 GiB or more"),
            Error::Busy => write!(f, "igzip working memory in use on this thread"),
            Error::Library(code) => write!(f, "igzip returned {code}"),
        }
    }
}

impl std::error::Error for Error {}

/// The most a level-1 gzip member of `n` input bytes can take: stored
/// blocks (igzip's fallback for incompressible input) add 5 bytes per
/// 64 KiB, the gzip header and trailer 18; generous margin beside.
pub fn max_compressed_len(n: usize) -> usize {
    n + n / 1024 + 1024
}

thread_local! {
    /// igzip level 1's working memory (hash tables), one per thread:
    /// allocated once rather than per body.
    static LEVEL_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Append `data` gzipped (one gzip member, level 1) to `out`.
///
/// On error `out` is left as it was.
pub fn gzip_level1(data: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let avail_in = u32::try_from(data.len()).map_err(|_| Error::TooLarge)?;
    let room = max_compressed_len(data.len());
    let avail_out = u32::try_from(room).map_err(|_| Error::TooLarge)?;
    out.reserve(room);
    LEVEL_BUF.with(|level_buf| {
        // Nothing here calls back into this function, so the buffer is
        // never borrowed already; if it were, the caller falls back.
        let Ok(mut level_buf) = level_buf.try_borrow_mut() else {
            return Err(Error::Busy);
        };
        let need = ffi::ISAL_DEF_LVL1_DEFAULT as usize;
        if level_buf.len() < need {
            level_buf.resize(need, 0);
        }
        let level_buf_size = u32::try_from(level_buf.len()).map_err(|_| Error::TooLarge)?;

        // Every byte zero, then the library's own initialisation: the
        // struct is plain integers and raw pointers, for which zero is a
        // valid value, so it is fully initialised from here on.
        let mut stream: Box<MaybeUninit<ffi::isal_zstream>> = Box::new_zeroed();
        // SAFETY: `stream` points to writable memory of the struct's size
        // and alignment; the function only writes fields of it.
        unsafe { ffi::isal_deflate_stateless_init(stream.as_mut_ptr()) };
        // SAFETY: zeroed above, then initialised by the library; all its
        // fields are integers or raw pointers, valid at any bit pattern.
        let s = unsafe { stream.assume_init_mut() };
        s.level = 1;
        s.level_buf = level_buf.as_mut_ptr();
        s.level_buf_size = level_buf_size;
        s.gzip_flag = ffi::IGZIP_GZIP as u16;
        s.end_of_stream = 1;
        s.flush = ffi::NO_FLUSH as u16;
        // The library reads `next_in` only (the pointer type is C's lack
        // of const).
        s.next_in = data.as_ptr().cast_mut();
        s.avail_in = avail_in;
        let spare = out.spare_capacity_mut();
        s.next_out = spare.as_mut_ptr().cast::<u8>();
        s.avail_out = avail_out;
        // SAFETY: `next_in`/`avail_in` describe `data` (live and unmoved
        // for the call), `next_out`/`avail_out` the reserved spare capacity
        // of `out` (at least `room` bytes), `level_buf` a live buffer of
        // `level_buf_size` bytes; the library writes only within them.
        let rc = unsafe { ffi::isal_deflate_stateless(s) };
        if rc != ffi::COMP_OK as i32 {
            return Err(Error::Library(rc));
        }
        let written = s.total_out as usize;
        if written > room || s.avail_in != 0 || written != room - s.avail_out as usize {
            // The library broke its contract (wrote past the room it had,
            // left input unread, or miscounted): do not trust the bytes.
            return Err(Error::Library(ffi::STATELESS_OVERFLOW));
        }
        let len = out.len();
        // SAFETY: the library initialised `written` (<= `room`, checked)
        // bytes of the spare capacity, which starts at `len`.
        unsafe { out.set_len(len + written) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn gunzip(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut d = flate2::read::MultiGzDecoder::new(body);
        d.read_to_end(&mut out).expect("a valid gzip member");
        out
    }

    /// Deterministic bytes no compressor can shrink.
    fn noise(n: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn every_body_decodes_back_to_itself() {
        let ndjson: Vec<u8> = (0..5000)
            .flat_map(|i| {
                format!("{{\"create\":{{\"_id\":\"{i:08x}\"}}}}\n{{\"source\":{{\"ip\":\"10.0.{}.{}\"}}}}\n", i / 256, i % 256)
                    .into_bytes()
            })
            .collect();
        for body in [
            Vec::new(),
            vec![b'x'],
            noise(1),
            noise(70_000),
            noise(3 << 20),
            vec![0u8; 1 << 20],
            ndjson.clone(),
        ] {
            let mut out = Vec::new();
            gzip_level1(&body, &mut out).expect("compresses");
            assert_eq!(&out[..2], &[0x1f, 0x8b], "a gzip member");
            assert!(out.len() <= max_compressed_len(body.len()));
            assert_eq!(gunzip(&out), body, "{} bytes", body.len());
        }
        // It compresses: repetitive NDJSON shrinks several times over.
        let mut out = Vec::new();
        gzip_level1(&ndjson, &mut out).expect("compresses");
        assert!(
            out.len() * 4 < ndjson.len(),
            "{} of {}",
            out.len(),
            ndjson.len()
        );
    }

    #[test]
    fn the_bindings_match_the_system_header() {
        // The bindings' side of what build.rs checks against the system
        // header (layout_check.c): both must agree with these numbers.
        assert_eq!(std::mem::size_of::<ffi::isal_zstream>(), 82_384);
        assert_eq!(std::mem::offset_of!(ffi::isal_zstream, level_buf), 48);
        assert_eq!(std::mem::offset_of!(ffi::isal_zstream, gzip_flag), 60);
        assert_eq!(std::mem::offset_of!(ffi::isal_zstream, internal_state), 64);
        assert_eq!(ffi::ISAL_DEF_LVL1_DEFAULT, 282_624);
    }

    #[test]
    fn appends_after_what_the_buffer_holds() {
        let mut out = b"prefix".to_vec();
        gzip_level1(b"hello hello hello", &mut out).expect("compresses");
        assert_eq!(&out[..6], b"prefix");
        assert_eq!(gunzip(&out[6..]), b"hello hello hello");
    }

    #[test]
    fn one_thread_many_bodies_reuses_its_working_memory() {
        // The level buffer is reused between calls: a body must not be
        // affected by the one before it.
        let a = noise(200_000);
        let b = b"abcabcabcabc".repeat(10_000);
        let (mut first, mut again) = (Vec::new(), Vec::new());
        gzip_level1(&b, &mut first).expect("compresses");
        gzip_level1(&a, &mut Vec::new()).expect("compresses");
        gzip_level1(&b, &mut again).expect("compresses");
        assert_eq!(first, again, "the same body gives the same bytes");
        assert_eq!(gunzip(&again), b);
    }
}
