//! Which interfaces to capture on: include/exclude globs over interface names.
//!
//! Pure selection logic for stage 1; the attach manager applies it to the
//! links that netlink reports.

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::netlink::{LINK_TYPE_ETHER, LINK_TYPE_LOOPBACK, LinkInfo};

/// A problem with an interface pattern.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("interface pattern {pattern:?} is not a valid glob: {reason}")]
    InvalidGlob { pattern: String, reason: String },
}

/// Compiled include/exclude patterns.
#[derive(Debug, Clone)]
pub struct InterfaceFilter {
    include: GlobSet,
    exclude: GlobSet,
}

/// Whether a pattern names one interface literally (no glob metacharacters).
pub fn is_literal(pattern: &str) -> bool {
    !pattern.contains(['*', '?', '[', ']', '{', '}'])
}

fn build(patterns: &[String]) -> Result<GlobSet, PatternError> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let glob = Glob::new(p).map_err(|e| PatternError::InvalidGlob {
            pattern: p.clone(),
            reason: e.kind().to_string(),
        })?;
        b.add(glob);
    }
    b.build().map_err(|e| PatternError::InvalidGlob {
        pattern: patterns.join(","),
        reason: e.to_string(),
    })
}

impl InterfaceFilter {
    /// Empty `include` means every interface.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, PatternError> {
        let include = if include.is_empty() {
            build(&["*".to_string()])?
        } else {
            build(include)?
        };
        Ok(InterfaceFilter {
            include,
            exclude: build(exclude)?,
        })
    }

    /// Whether the interface name is selected by the patterns.
    pub fn selects(&self, name: &str) -> bool {
        self.include.is_match(name) && !self.exclude.is_match(name)
    }

    /// Whether we can parse this link's frames: Ethernet framing only
    /// (loopback frames carry a zeroed Ethernet header too). L3 devices such as
    /// tun or wireguard are reported and skipped.
    pub fn supported(link: &LinkInfo) -> bool {
        link.link_type == LINK_TYPE_ETHER || link.link_type == LINK_TYPE_LOOPBACK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn selection_table() {
        // (include, exclude, name, selected)
        let cases: &[(&[&str], &[&str], &str, bool)] = &[
            (&[], &["lo"], "eth0", true),
            (&[], &["lo"], "lo", false),
            (&["veth*"], &["lo"], "veth12ab", true),
            (&["veth*"], &["lo"], "eth0", false),
            (&["veth*", "eth0"], &["veth9*"], "veth9x", false),
            (&["veth*", "eth0"], &["veth9*"], "eth0", true),
            (&["cali?"], &[], "cali1", true),
            (&["cali?"], &[], "cali12", false),
        ];
        for (inc, exc, name, want) in cases {
            let f = InterfaceFilter::new(&s(inc), &s(exc)).unwrap();
            assert_eq!(f.selects(name), *want, "{inc:?} {exc:?} {name}");
        }
    }

    #[test]
    fn invalid_globs_are_named() {
        let err = InterfaceFilter::new(&s(&["veth[", "eth0"]), &[]).unwrap_err();
        assert!(matches!(err, PatternError::InvalidGlob { ref pattern, .. } if pattern == "veth["));
    }

    #[test]
    fn literal_patterns() {
        assert!(is_literal("eth0"));
        assert!(!is_literal("eth*"));
        assert!(!is_literal("veth[0-9]"));
    }
}
