//! Host checks before anything is loaded, so that a missing privilege or an
//! unsuitable kernel is one clear sentence instead of a verifier error.

use std::path::Path;

/// Oldest kernel we support: hash-map lookup-and-delete (5.14), ring buffer
/// (5.8), tp_btf (5.5) and boot-clock timestamps (5.8) all exist in 5.15 LTS.
pub const MIN_KERNEL: (u32, u32) = (5, 15);
/// TCX links exist from 6.6 on.
pub const TCX_KERNEL: (u32, u32) = (6, 6);
const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// What the checks found about the host.
#[derive(Debug, Clone)]
pub struct HostInfo {
    pub kernel: String,
    pub tcx: bool,
}

/// A reason the host cannot run capture.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PreflightError {
    #[error(
        "missing capabilities {missing}: run as root or grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (in Kubernetes: securityContext.capabilities.add)"
    )]
    Capabilities { missing: String },
    #[error(
        "kernel BTF is missing ({BTF_PATH} not found): use a kernel built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf,
    #[error("kernel {kernel} is too old: flowscribe needs Linux 5.15 or newer")]
    KernelTooOld { kernel: String },
    #[error(
        "kernel {kernel} has no TCX (needs Linux 6.6 or newer): set capture.attach_mode to auto or tc"
    )]
    TcxUnsupported { kernel: String },
    #[error("cannot read {what}: {reason}")]
    Unreadable { what: String, reason: String },
}

/// Parse "6.18.44-foo" into (6, 18).
pub fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Missing capabilities in an effective set (the CapEff hex mask).
pub fn missing_capabilities(cap_eff: u64) -> Vec<&'static str> {
    let has = |bit: u32| cap_eff & (1u64 << bit) != 0;
    let mut missing = Vec::new();
    // CAP_SYS_ADMIN covers BPF and PERFMON on every kernel.
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_PERFMON");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    missing
}

fn read(path: &str) -> Result<String, PreflightError> {
    std::fs::read_to_string(path).map_err(|e| PreflightError::Unreadable {
        what: path.to_string(),
        reason: e.to_string(),
    })
}

/// Check kernel version, BTF and capabilities of this process.
pub fn preflight() -> Result<HostInfo, PreflightError> {
    let status = read("/proc/self/status")?;
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let missing = missing_capabilities(cap_eff);
    if !missing.is_empty() {
        return Err(PreflightError::Capabilities {
            missing: missing.join(", "),
        });
    }
    let kernel = read("/proc/sys/kernel/osrelease")?.trim().to_string();
    let version = parse_kernel_version(&kernel).unwrap_or((0, 0));
    if version < MIN_KERNEL {
        return Err(PreflightError::KernelTooOld { kernel });
    }
    if !Path::new(BTF_PATH).exists() {
        return Err(PreflightError::NoBtf);
    }
    Ok(HostInfo {
        tcx: version >= TCX_KERNEL,
        kernel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        let cases = [
            ("6.18.44-fc-v657", Some((6, 18))),
            ("5.15.0-91-generic", Some((5, 15))),
            ("6.6", Some((6, 6))),
            ("garbage", None),
        ];
        for (release, want) in cases {
            assert_eq!(parse_kernel_version(release), want, "{release}");
        }
        assert!((5, 4) < MIN_KERNEL && (6, 5) < TCX_KERNEL && (6, 6) >= TCX_KERNEL);
    }

    #[test]
    fn capability_masks() {
        let bit = |b: u32| 1u64 << b;
        let cases: [(u64, &[&str]); 4] = [
            (0, &["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"]),
            (bit(CAP_BPF) | bit(CAP_PERFMON) | bit(CAP_NET_ADMIN), &[]),
            (bit(CAP_SYS_ADMIN) | bit(CAP_NET_ADMIN), &[]),
            (bit(CAP_BPF) | bit(CAP_NET_ADMIN), &["CAP_PERFMON"]),
        ];
        for (mask, want) in cases {
            assert_eq!(missing_capabilities(mask), want, "mask {mask:#x}");
        }
    }
}
