//! The bpf(2) calls aya 0.14 does not expose: BPF_MAP_LOOKUP_AND_DELETE_ELEM
//! for hash maps, which lets the drain read an entry's final counters and
//! remove it in one step (kernel >= 5.14 for hash maps), BPF_MAP_LOOKUP_BATCH,
//! and BPF_PROG_TEST_RUN (the clock probe, and the cache flush on each CPU).
#![allow(unsafe_code, reason = "direct bpf(2) syscall; see the SAFETY note")]

use std::io;
use std::os::fd::{AsFd, AsRawFd};

const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// Read and delete `key`. Ok(None) when the key is not in the map.
pub fn lookup_and_delete<K: aya::Pod, V: aya::Pod + Default>(
    map: &impl AsFd,
    key: &K,
) -> io::Result<Option<V>> {
    let mut value = V::default();
    let attr = MapElemAttr {
        map_fd: map.as_fd().as_raw_fd() as u32,
        pad: 0,
        key: (key as *const K) as u64,
        value: (&mut value as *mut V) as u64,
        flags: 0,
    };
    // SAFETY: attr points at a valid key of the map's key size and at a
    // writable value of the map's value size (K and V are the map's Pod
    // types); the kernel reads/writes exactly those sizes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_AND_DELETE_ELEM,
            &attr as *const MapElemAttr,
            std::mem::size_of::<MapElemAttr>() as u32,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENOENT) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    Ok(Some(value))
}

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// `union bpf_attr` as BPF_MAP_*_BATCH reads it.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Every entry of a hash map, read `chunk` entries per bpf(2) call with
/// BPF_MAP_LOOKUP_BATCH (kernel >= 5.6) instead of two calls per entry.
/// Like any walk of a live map it is not a snapshot: entries added or
/// removed meanwhile may or may not appear. `chunk` must be at least the
/// longest bucket chain; it grows when the kernel says ENOSPC.
pub fn lookup_batch<K: aya::Pod + Default, V: aya::Pod + Default>(
    map: &impl AsFd,
    chunk: usize,
) -> io::Result<Vec<(K, V)>> {
    let mut chunk = chunk.max(1);
    let mut out = Vec::new();
    let mut keys: Vec<K> = Vec::new();
    let mut values: Vec<V> = Vec::new();
    // Hash maps use a u32 bucket index as the batch token.
    let (mut token_in, mut token_out, mut started) = (0u32, 0u32, false);
    loop {
        keys.resize(chunk, K::default());
        values.resize(chunk, V::default());
        let mut attr = BatchAttr {
            in_batch: if started {
                (&token_in as *const u32) as u64
            } else {
                0
            },
            out_batch: (&mut token_out as *mut u32) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk as u32,
            map_fd: map.as_fd().as_raw_fd() as u32,
            elem_flags: 0,
            flags: 0,
        };
        // SAFETY: keys and values hold `count` elements of the map's key and
        // value types (K and V are the map's Pod types), the tokens are valid
        // u32s, and attr outlives the call; the kernel writes at most `count`
        // elements and the count back into attr.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                std::mem::size_of::<BatchAttr>() as u32,
            )
        };
        let err = (rc < 0).then(io::Error::last_os_error);
        let n = (attr.count as usize).min(chunk);
        out.extend(keys[..n].iter().copied().zip(values[..n].iter().copied()));
        match err.as_ref().and_then(io::Error::raw_os_error) {
            None => {}
            Some(libc::ENOENT) => return Ok(out),
            Some(libc::ENOSPC) if n == 0 => {
                // One bucket holds more entries than fit: retry it bigger.
                chunk *= 2;
                continue;
            }
            Some(_) => return Err(err.unwrap_or_else(io::Error::last_os_error)),
        }
        token_in = token_out;
        started = true;
    }
}

const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// `union bpf_attr` as BPF_PROG_TEST_RUN reads it (the fields up to
/// `batch_size`; the kernel zero-checks nothing beyond the size we pass).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    pad: u32,
}

/// Run a loaded program once on `packet` (BPF_PROG_TEST_RUN) and return
/// its return value. For a classifier the packet must be at least an
/// Ethernet header long.
pub fn prog_test_run(prog: &impl AsFd, packet: &[u8]) -> io::Result<u32> {
    let mut attr = TestRunAttr {
        prog_fd: prog.as_fd().as_raw_fd() as u32,
        data_size_in: packet.len() as u32,
        data_in: packet.as_ptr() as u64,
        repeat: 1,
        ..TestRunAttr::default()
    };
    // data_in points at packet.len() readable bytes that outlive the call;
    // no output buffers are given (data_out and ctx_out are 0).
    test_run(&mut attr)
}

/// BPF_PROG_TEST_RUN with `attr`, whose input pointers (if any) must point
/// at readable memory of the sizes given and whose output pointers must be
/// 0: the kernel then writes only into `attr`. Returns the program's return
/// value.
fn test_run(attr: &mut TestRunAttr) -> io::Result<u32> {
    // SAFETY: per the contract above, the kernel reads only the input
    // buffers the caller described and writes only into attr, which is
    // valid and writable for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            attr as *mut TestRunAttr,
            std::mem::size_of::<TestRunAttr>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(attr.retval)
}

/// `BPF_F_TEST_RUN_ON_CPU`: run a raw tracepoint program on `cpu`.
const BPF_F_TEST_RUN_ON_CPU: u32 = 1;

/// Run a loaded raw tracepoint program once on `cpu` (BPF_PROG_TEST_RUN with
/// BPF_F_TEST_RUN_ON_CPU) and return its return value. The kernel runs it
/// in an IPI on that CPU, or directly with preemption off when `cpu` is the
/// caller's. ENXIO when the CPU is offline.
pub fn prog_test_run_on_cpu(prog: &impl AsFd, cpu: u32) -> io::Result<u32> {
    let mut attr = TestRunAttr {
        prog_fd: prog.as_fd().as_raw_fd() as u32,
        flags: BPF_F_TEST_RUN_ON_CPU,
        cpu,
        ..TestRunAttr::default()
    };
    // No input or output buffers (all pointers are 0).
    test_run(&mut attr)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::fd::{FromRawFd, OwnedFd};

    use super::*;

    #[repr(C)]
    #[derive(Default)]
    struct CreateAttr {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
    }

    fn bpf(cmd: libc::c_long, attr: *const u8, size: usize) -> io::Result<i64> {
        // SAFETY: attr points at a live attribute struct of `size` bytes
        // whose pointers reference live buffers of the map's sizes.
        let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr, size as u32) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    }

    /// A real kernel hash map with `n` entries (key i -> value i * 3), read
    /// back in chunks far smaller than the map: every entry exactly once.
    /// Needs CAP_BPF (the test suite runs as root).
    #[test]
    fn lookup_batch_reads_every_entry_exactly_once_across_many_chunks() {
        let n = 10_000u64;
        let create = CreateAttr {
            map_type: 1, // BPF_MAP_TYPE_HASH
            key_size: 8,
            value_size: 8,
            max_entries: n as u32,
            map_flags: 0,
        };
        let fd = bpf(
            0,
            (&create as *const CreateAttr).cast(),
            size_of::<CreateAttr>(),
        )
        .expect("BPF_MAP_CREATE (needs root)");
        // SAFETY: the kernel returned a new fd that nothing else owns.
        let map = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        for k in 0..n {
            let v = k * 3;
            let attr = MapElemAttr {
                map_fd: map.as_raw_fd() as u32,
                pad: 0,
                key: (&k as *const u64) as u64,
                value: (&v as *const u64) as u64,
                flags: 0,
            };
            bpf(
                2,
                (&attr as *const MapElemAttr).cast(),
                size_of::<MapElemAttr>(),
            )
            .expect("BPF_MAP_UPDATE_ELEM");
        }
        for chunk in [1, 7, 256, 4096, 20_000] {
            let got: Vec<(u64, u64)> = lookup_batch(&map, chunk).unwrap();
            assert_eq!(got.len() as u64, n, "chunk {chunk}");
            let by_key: BTreeMap<u64, u64> = got.into_iter().collect();
            assert_eq!(by_key.len() as u64, n, "chunk {chunk}: duplicates");
            assert!(by_key.iter().all(|(k, v)| *v == k * 3), "chunk {chunk}");
        }
    }
}
