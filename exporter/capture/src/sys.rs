//! The one bpf(2) call aya 0.14 does not expose for hash maps:
//! BPF_MAP_LOOKUP_AND_DELETE_ELEM, which lets the drain read an entry's final
//! counters and remove it in one step (kernel >= 5.14 for hash maps).
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
