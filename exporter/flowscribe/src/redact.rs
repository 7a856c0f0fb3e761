//! Redaction and pseudonymisation, applied to every explained flow before
//! it is encoded, so every format and every sink carries the same reduced
//! record (issue 7; GDPR-minded deployments that still need the flows).
//!
//! Rules, from `redact:` in the config, in order:
//! - `truncate` an address to a prefix (`ip`, `source.ip`,
//!   `destination.ip`; `only: public` keeps cluster and private addresses
//!   whole). The Community ID is computed from what is left; the event id
//!   is hashed before the rules run, from the addresses as captured, under
//!   a per-run secret (`pipeline::identify_and_redact`, ADR 005), so connections that
//!   differ only in the truncated bits keep distinct ids.
//! - `keyed_hash` a name (`pod.name`, `pod.service_account`): HMAC-SHA256
//!   with a key from a file, shown as `h:` and 16 hex digits, stable for
//!   the key so records can still be correlated.
//! - `drop` labels (`pod.labels`, `namespace.labels`) or the service account.
//!
//! The active rules (without the key) are declared in the audit trail's
//! start record. Pure: no IO after the key is read.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use flowscribe_model::{Endpoint, EndpointKind, ExplainedFlow, PodIdentity};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One rule as written in the config.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub field: String,
    pub action: String,
    pub prefix_v4: Option<u8>,
    pub prefix_v6: Option<u8>,
    pub only: Option<String>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Destination,
    Both,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    Truncate {
        side: Side,
        v4: u8,
        v6: u8,
        public_only: bool,
    },
    HashPodName {
        key: Vec<u8>,
    },
    HashServiceAccount {
        key: Vec<u8>,
    },
    DropServiceAccount,
    DropPodLabels,
    DropNamespaceLabels,
}

/// The compiled rules.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    rules: Vec<Rule>,
    declared: Vec<serde_json::Value>,
}

/// Validate the rules: every problem as `(path, message)`.
pub fn compile(raw: &[RawRule]) -> Result<Redactor, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let mut r = Redactor::default();
    for (i, rule) in raw.iter().enumerate() {
        let at = |f: &str| format!("redact[{i}].{f}");
        let key = |problems: &mut Vec<(String, String)>| -> Option<Vec<u8>> {
            let Some(path) = &rule.key_file else {
                problems.push((at("key_file"), "keyed_hash needs a key_file".into()));
                return None;
            };
            match std::fs::read(path) {
                Ok(k) if k.len() >= 16 => Some(k),
                Ok(_) => {
                    problems.push((
                        at("key_file"),
                        format!("{}: a key needs at least 16 bytes", path.display()),
                    ));
                    None
                }
                Err(e) => {
                    problems.push((at("key_file"), format!("{}: {e}", path.display())));
                    None
                }
            }
        };
        let compiled = match (rule.field.as_str(), rule.action.as_str()) {
            (f @ ("ip" | "source.ip" | "destination.ip"), "truncate") => {
                let side = match f {
                    "ip" => Side::Both,
                    "source.ip" => Side::Source,
                    _ => Side::Destination,
                };
                let v4 = rule.prefix_v4.unwrap_or(24);
                let v6 = rule.prefix_v6.unwrap_or(48);
                if v4 > 32 {
                    problems.push((at("prefix_v4"), format!("{v4} is longer than 32")));
                }
                if v6 > 128 {
                    problems.push((at("prefix_v6"), format!("{v6} is longer than 128")));
                }
                let public_only = match rule.only.as_deref() {
                    None | Some("all") => false,
                    Some("public") => true,
                    Some(o) => {
                        problems.push((at("only"), format!("{o:?} is not public or all")));
                        false
                    }
                };
                Some(Rule::Truncate {
                    side,
                    v4,
                    v6,
                    public_only,
                })
            }
            ("pod.name", "keyed_hash") => key(&mut problems).map(|key| Rule::HashPodName { key }),
            ("pod.service_account", "keyed_hash") => {
                key(&mut problems).map(|key| Rule::HashServiceAccount { key })
            }
            ("pod.service_account", "drop") => Some(Rule::DropServiceAccount),
            ("pod.labels", "drop") => Some(Rule::DropPodLabels),
            ("namespace.labels", "drop") => Some(Rule::DropNamespaceLabels),
            (f, a) => {
                let known = matches!(
                    f,
                    "ip" | "source.ip"
                        | "destination.ip"
                        | "pod.name"
                        | "pod.service_account"
                        | "pod.labels"
                        | "namespace.labels"
                );
                if known {
                    problems.push((at("action"), format!("{a:?} does not apply to {f}")));
                } else {
                    problems.push((
                        at("field"),
                        format!(
                            "{f:?} is not a redactable field; use ip, source.ip, destination.ip, \
                             pod.name, pod.service_account, pod.labels or namespace.labels"
                        ),
                    ));
                }
                None
            }
        };
        if let Some(c) = compiled {
            let mut declared = serde_json::json!({"field": rule.field, "action": rule.action});
            if let Rule::Truncate {
                v4,
                v6,
                public_only,
                ..
            } = &c
            {
                declared["prefix_v4"] = (*v4).into();
                declared["prefix_v6"] = (*v6).into();
                declared["only"] = if *public_only { "public" } else { "all" }.into();
            }
            r.declared.push(declared);
            r.rules.push(c);
        }
    }
    if problems.is_empty() {
        Ok(r)
    } else {
        Err(problems)
    }
}

fn truncate(addr: IpAddr, v4: u8, v6: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(v4)).unwrap_or(0);
            IpAddr::from((u32::from(a) & mask).to_be_bytes())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(v6)).unwrap_or(0);
            IpAddr::from((u128::from(a) & mask).to_be_bytes())
        }
    }
}

/// HMAC-SHA256(key, value), shown as `h:` + 16 hex digits.
fn keyed_hash(key: &[u8], value: &str) -> String {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(value.as_bytes())
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    let hex: String = outer[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("h:{hex}")
}

fn cluster_kind(kind: EndpointKind) -> bool {
    !matches!(kind, EndpointKind::PublicNetwork | EndpointKind::Unknown)
}

impl Redactor {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a rule truncates addresses (the flow key then loses bits
    /// that tell connections apart, so event ids are hashed before it).
    pub fn truncates(&self) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(r, Rule::Truncate { .. }))
    }

    /// The rules as the start record declares them (no keys).
    pub fn declared(&self) -> Vec<serde_json::Value> {
        self.declared.clone()
    }

    /// Apply every rule to one flow.
    pub fn apply(&self, flow: &mut ExplainedFlow) {
        for rule in &self.rules {
            match rule {
                Rule::Truncate {
                    side,
                    v4,
                    v6,
                    public_only,
                } => {
                    let f = &mut flow.flow;
                    let key = &mut f.flow.key;
                    if matches!(side, Side::Source | Side::Both)
                        && !(*public_only && cluster_kind(f.source.kind))
                    {
                        key.src_addr = truncate(key.src_addr, *v4, *v6);
                    }
                    if matches!(side, Side::Destination | Side::Both)
                        && !(*public_only && cluster_kind(f.destination.kind))
                    {
                        key.dst_addr = truncate(key.dst_addr, *v4, *v6);
                    }
                }
                Rule::HashPodName { key } => {
                    pods(flow, |p| p.name = keyed_hash(key, &p.name).into())
                }
                Rule::HashServiceAccount { key } => pods(flow, |p| {
                    if let Some(sa) = &p.service_account {
                        p.service_account = Some(keyed_hash(key, sa).into());
                    }
                }),
                Rule::DropServiceAccount => pods(flow, |p| p.service_account = None),
                Rule::DropPodLabels => pods(flow, |p| p.labels = Arc::new(BTreeMap::new())),
                Rule::DropNamespaceLabels => {
                    pods(flow, |p| p.namespace_labels = Arc::new(BTreeMap::new()))
                }
            }
        }
    }
}

/// Change the pod identity of both ends (a copy: the index keeps its own).
fn pods(flow: &mut ExplainedFlow, change: impl Fn(&mut PodIdentity)) {
    let ends: [&mut Endpoint; 2] = [&mut flow.flow.source, &mut flow.flow.destination];
    for end in ends {
        if let Some(p) = &end.pod {
            let mut copy = PodIdentity::clone(p);
            change(&mut copy);
            end.pod = Some(Arc::new(copy));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_masks_to_the_prefix() {
        let t = |a: &str, v4, v6| truncate(a.parse().unwrap(), v4, v6).to_string();
        assert_eq!(t("203.0.113.77", 24, 48), "203.0.113.0");
        assert_eq!(t("203.0.113.77", 16, 48), "203.0.0.0");
        assert_eq!(t("203.0.113.77", 0, 48), "0.0.0.0");
        assert_eq!(t("203.0.113.77", 32, 48), "203.0.113.77");
        assert_eq!(t("2001:db8:abcd:12::1", 24, 48), "2001:db8:abcd::");
    }

    #[test]
    fn keyed_hash_is_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            keyed_hash(b"Jefe", "what do ya want for nothing?"),
            "h:5bdcc146bf60754e"
        );
    }

    #[test]
    fn every_bad_rule_is_named_with_its_path() {
        let rules = vec![
            RawRule {
                field: "pod.ip".into(),
                action: "drop".into(),
                ..RawRule::default()
            },
            RawRule {
                field: "pod.labels".into(),
                action: "truncate".into(),
                ..RawRule::default()
            },
            RawRule {
                field: "ip".into(),
                action: "truncate".into(),
                prefix_v4: Some(33),
                only: Some("some".into()),
                ..RawRule::default()
            },
            RawRule {
                field: "pod.name".into(),
                action: "keyed_hash".into(),
                ..RawRule::default()
            },
        ];
        let paths: Vec<String> = compile(&rules)
            .unwrap_err()
            .into_iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(
            paths,
            vec![
                "redact[0].field",
                "redact[1].action",
                "redact[2].prefix_v4",
                "redact[2].only",
                "redact[3].key_file"
            ]
        );
    }
}
