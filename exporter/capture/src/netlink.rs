//! Minimal rtnetlink: list links, wait for link changes, delete a clsact qdisc.
//!
//! Part of stage 1 (capture): the attach manager needs to know which
//! interfaces exist *in the exporter's own network namespace* and to hear
//! when one comes or goes (pods come and go). /sys/class/net is not used
//! because it shows the namespace of whoever mounted sysfs, not ours.
//!
//! Only this module and the aya calls talk to the kernel's netlink; it holds
//! no state beyond its sockets.
#![allow(
    unsafe_code,
    reason = "raw netlink sockets through libc; each call has a SAFETY note"
)]

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const TCMSG_LEN: usize = 20;
const RTMGRP_LINK: u32 = 1;
const IFLA_IFNAME: u16 = 3;
const TC_H_CLSACT: u32 = 0xFFFF_FFF1;
const TC_H_CLSACT_HANDLE: u32 = 0xFFFF_0000;

/// One network interface of the current namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub ifindex: u32,
    pub name: String,
    /// ARPHRD_* type: 1 Ethernet, 772 loopback, 65534 none (tun, wireguard).
    pub link_type: u16,
}

/// ARPHRD_ETHER.
pub const LINK_TYPE_ETHER: u16 = 1;
/// ARPHRD_LOOPBACK (frames carry a zeroed Ethernet header).
pub const LINK_TYPE_LOOPBACK: u16 = 772;

fn socket(groups: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the returned fd is checked and owned.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as u16;
    addr.nl_groups = groups;
    // SAFETY: addr is a valid sockaddr_nl and the length matches it.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn send(fd: &OwnedFd, msg: &[u8]) -> io::Result<()> {
    // SAFETY: msg is a valid buffer of msg.len() bytes.
    let rc = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn recv(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid writable buffer of buf.len() bytes.
    let rc = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

fn header(len: usize, ty: u16, flags: u16, seq: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn i32_at(b: &[u8], off: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// Parse one RTM_NEWLINK payload (ifinfomsg + attributes).
fn parse_link(payload: &[u8]) -> Option<LinkInfo> {
    let link_type = u16_at(payload, 2)?;
    let ifindex = i32_at(payload, 4)? as u32;
    let mut off = IFINFOMSG_LEN;
    while off + 4 <= payload.len() {
        let len = u16_at(payload, off)? as usize;
        let ty = u16_at(payload, off + 2)? & 0x3fff;
        if len < 4 {
            return None;
        }
        if ty == IFLA_IFNAME {
            let raw = payload.get(off + 4..off + len)?;
            let name = raw.split(|b| *b == 0).next()?;
            return Some(LinkInfo {
                ifindex,
                name: String::from_utf8_lossy(name).into_owned(),
                link_type,
            });
        }
        off += (len + 3) & !3;
    }
    None
}

/// List the links of the current network namespace (RTM_GETLINK dump).
pub fn list_links() -> io::Result<Vec<LinkInfo>> {
    let fd = socket(0)?;
    let len = NLMSG_HDRLEN + IFINFOMSG_LEN;
    let mut msg = header(
        len,
        libc::RTM_GETLINK,
        (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16,
        1,
    );
    msg.resize(len, 0);
    msg[NLMSG_HDRLEN] = libc::AF_UNSPEC as u8;
    send(&fd, &msg)?;
    let mut links = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = recv(&fd, &mut buf)?;
        let mut off = 0;
        while off + NLMSG_HDRLEN <= n {
            let mlen = u32_at(&buf, off).unwrap_or(0) as usize;
            let ty = u16_at(&buf, off + 4).unwrap_or(0);
            if mlen < NLMSG_HDRLEN || off + mlen > n {
                return Err(io::Error::other("malformed netlink reply"));
            }
            match i32::from(ty) {
                libc::NLMSG_DONE => return Ok(links),
                libc::NLMSG_ERROR => {
                    let errno = i32_at(&buf, off + NLMSG_HDRLEN).unwrap_or(0);
                    return Err(io::Error::from_raw_os_error(-errno));
                }
                _ if ty == libc::RTM_NEWLINK => {
                    if let Some(link) = parse_link(&buf[off + NLMSG_HDRLEN..off + mlen]) {
                        links.push(link);
                    }
                }
                _ => {}
            }
            off += (mlen + 3) & !3;
        }
    }
}

/// A subscription to link changes (RTMGRP_LINK) of the current namespace.
#[derive(Debug)]
pub struct LinkWatcher {
    fd: OwnedFd,
}

impl LinkWatcher {
    pub fn new() -> io::Result<Self> {
        Ok(LinkWatcher {
            fd: socket(RTMGRP_LINK)?,
        })
    }

    /// Wait up to `timeout` for link changes. Returns true when something
    /// changed (or notifications overflowed, which means the same: rescan).
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: pfd is a valid pollfd array of length 1.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            };
        }
        if rc == 0 {
            return Ok(false);
        }
        // Drain everything queued; the content does not matter, a rescan does.
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: buf is valid for buf.len() bytes; MSG_DONTWAIT never blocks.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EAGAIN) => Ok(true),
                    Some(libc::ENOBUFS) => Ok(true),
                    _ => Err(e),
                };
            }
        }
    }
}

/// Delete the clsact qdisc of an interface (legacy attach cleanup).
/// A missing interface or qdisc is not an error: there is nothing left to clean.
pub fn delete_clsact(ifindex: u32) -> io::Result<()> {
    let fd = socket(0)?;
    let len = NLMSG_HDRLEN + TCMSG_LEN;
    let mut msg = header(
        len,
        libc::RTM_DELQDISC,
        (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16,
        1,
    );
    // struct tcmsg { u8 family, pad1, u16 pad2, i32 ifindex, u32 handle, u32 parent, u32 info }
    msg.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    msg.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    msg.extend_from_slice(&TC_H_CLSACT_HANDLE.to_ne_bytes());
    msg.extend_from_slice(&TC_H_CLSACT.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    send(&fd, &msg)?;
    let mut buf = vec![0u8; 4096];
    let n = recv(&fd, &mut buf)?;
    if n >= NLMSG_HDRLEN + 4 && i32::from(u16_at(&buf, 4).unwrap_or(0)) == libc::NLMSG_ERROR {
        let errno = -i32_at(&buf, NLMSG_HDRLEN).unwrap_or(0);
        if errno != 0 && errno != libc::ENODEV && errno != libc::ENOENT && errno != libc::EINVAL {
            return Err(io::Error::from_raw_os_error(errno));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_the_loopback_interface() {
        let links = list_links().unwrap();
        let lo = links.iter().find(|l| l.name == "lo").expect("lo is listed");
        assert_eq!(lo.ifindex, 1);
        assert_eq!(lo.link_type, LINK_TYPE_LOOPBACK);
    }

    #[test]
    fn parse_link_rejects_truncated_payloads() {
        let mut p = vec![0u8; IFINFOMSG_LEN];
        p[2..4].copy_from_slice(&1u16.to_ne_bytes());
        p[4..8].copy_from_slice(&7i32.to_ne_bytes());
        p.extend_from_slice(&8u16.to_ne_bytes());
        p.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
        p.extend_from_slice(b"eth\0");
        let full = parse_link(&p).unwrap();
        assert_eq!(
            (full.ifindex, full.name.as_str(), full.link_type),
            (7, "eth", 1)
        );
        for cut in 0..p.len() {
            assert_eq!(parse_link(&p[..cut]), None, "cut at {cut}");
        }
    }
}
