//! The live policy source: kube-rs watchers on every policy resource the
//! explain stage understands, delivering the objects untouched (JSON) so
//! `flowscribe-policy` parses and compiles them, and [`PolicyObjects`], the
//! consumer that keeps the current set.
//!
//! Kubernetes NetworkPolicy always exists; the others are CRDs (Calico,
//! network-policy-api, our StagedNetworkPolicy) that a cluster may not have
//! installed. A 404 on such a resource means "not installed": reported once,
//! not a degradation, and retried with the watcher's backoff in case the
//! CRD appears later. Any other failure (403 above all) means the policy
//! set may be incomplete, so verdicts cannot be trusted: the source is
//! degraded until the resource lists again.
//!
//! Like [`crate::kube_source`], this is async code on the daemon's runtime;
//! [`PolicyObjects`] is pure.

use std::collections::{BTreeMap, HashSet};
use std::sync::mpsc::Sender;
use std::time::SystemTime;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use serde_json::Value;

use crate::kube_source::{SourceProblem, rbac_rule, source_problem, status_of};

/// One policy resource of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyResource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    /// A CRD: its absence (404) is normal.
    pub optional: bool,
}

impl PolicyResource {
    /// `group/version` (or `version` for the core group).
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }

    /// The RBAC rule needed to watch it.
    pub fn permission(&self) -> String {
        rbac_rule(self.group, self.plural)
    }
}

const fn crd(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
) -> PolicyResource {
    PolicyResource {
        group,
        version,
        kind,
        plural,
        optional: true,
    }
}

/// Every policy resource watched, in evaluation-tier order.
pub const POLICY_RESOURCES: &[PolicyResource] = &[
    crd(
        "policy.networking.k8s.io",
        "v1alpha2",
        "ClusterNetworkPolicy",
        "clusternetworkpolicies",
    ),
    crd(
        "policy.networking.k8s.io",
        "v1alpha1",
        "AdminNetworkPolicy",
        "adminnetworkpolicies",
    ),
    crd(
        "policy.networking.k8s.io",
        "v1alpha1",
        "BaselineAdminNetworkPolicy",
        "baselineadminnetworkpolicies",
    ),
    PolicyResource {
        group: "networking.k8s.io",
        version: "v1",
        kind: "NetworkPolicy",
        plural: "networkpolicies",
        optional: false,
    },
    crd("projectcalico.org", "v3", "Tier", "tiers"),
    crd(
        "projectcalico.org",
        "v3",
        "NetworkPolicy",
        "networkpolicies",
    ),
    crd(
        "projectcalico.org",
        "v3",
        "GlobalNetworkPolicy",
        "globalnetworkpolicies",
    ),
    crd(
        "projectcalico.org",
        "v3",
        "StagedNetworkPolicy",
        "stagednetworkpolicies",
    ),
    crd(
        "projectcalico.org",
        "v3",
        "StagedGlobalNetworkPolicy",
        "stagedglobalnetworkpolicies",
    ),
    crd(
        "projectcalico.org",
        "v3",
        "StagedKubernetesNetworkPolicy",
        "stagedkubernetesnetworkpolicies",
    ),
    crd(
        "flowscribe.dev",
        "v1alpha1",
        "StagedNetworkPolicy",
        "stagednetworkpolicies",
    ),
];

/// What the policy watchers report.
#[derive(Debug, Clone)]
pub enum PolicyEvent {
    /// The resource was (re)listed: these are all its objects now.
    Listed {
        resource: PolicyResource,
        objects: Vec<Value>,
    },
    /// One object was created or changed.
    Applied {
        resource: PolicyResource,
        object: Value,
    },
    Deleted {
        resource: PolicyResource,
        namespace: String,
        name: String,
    },
    /// The API does not serve the resource (CRD not installed).
    Absent { resource: PolicyResource },
    /// Listing or watching failed; the watcher backs off and retries.
    Failing {
        resource: PolicyResource,
        problem: SourceProblem,
    },
}

/// The object with the `apiVersion` and `kind` a list item may lack.
fn typed(resource: &PolicyResource, o: &DynamicObject) -> Value {
    let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), Value::from(resource.api_version()));
        m.insert("kind".into(), Value::from(resource.kind));
    }
    v
}

async fn watch_resource<S>(
    resource: PolicyResource,
    stream: S,
    tx: Sender<(SystemTime, PolicyEvent)>,
) where
    S: futures::Stream<Item = Result<Event<DynamicObject>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    let mut buffer = Vec::new();
    while let Some(ev) = stream.next().await {
        let out = match ev {
            Ok(Event::Init) => {
                buffer.clear();
                continue;
            }
            Ok(Event::InitApply(o)) => {
                buffer.push(typed(&resource, &o));
                continue;
            }
            Ok(Event::InitDone) => PolicyEvent::Listed {
                resource,
                objects: std::mem::take(&mut buffer),
            },
            Ok(Event::Apply(o)) => PolicyEvent::Applied {
                resource,
                object: typed(&resource, &o),
            },
            Ok(Event::Delete(o)) => PolicyEvent::Deleted {
                resource,
                namespace: o.metadata.namespace.clone().unwrap_or_default(),
                name: o.metadata.name.clone().unwrap_or_default(),
            },
            Err(e) => match status_of(&e) {
                Some(st) if st.code == 404 && resource.optional => PolicyEvent::Absent { resource },
                _ => PolicyEvent::Failing {
                    resource,
                    problem: source_problem(&e, || resource.permission()),
                },
            },
        };
        if tx.send((SystemTime::now(), out)).is_err() {
            return;
        }
    }
}

/// Start one watcher per policy resource on the current tokio runtime.
pub fn spawn_policy_watchers(client: kube::Client, tx: Sender<(SystemTime, PolicyEvent)>) {
    for resource in POLICY_RESOURCES {
        let gvk = GroupVersionKind::gvk(resource.group, resource.version, resource.kind);
        let ar = ApiResource::from_gvk_with_plural(&gvk, resource.plural);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let s = watcher(api, watcher::Config::default()).default_backoff();
        tokio::spawn(watch_resource(*resource, s, tx.clone()));
    }
}

/// What applying an event changed, for the daemon to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyReport {
    Listed {
        resource: PolicyResource,
        objects: usize,
    },
    /// First time a CRD was found missing.
    Absent {
        resource: PolicyResource,
    },
    /// First failure of a resource (repeats are not reported).
    Failing {
        resource: PolicyResource,
        problem: SourceProblem,
    },
    Recovered {
        resource: PolicyResource,
    },
    /// A policy was created, updated or deleted after its resource was
    /// first listed (PCI DSS 1.2.2 / 10.2.1.7 evidence).
    Changed(PolicyChange),
}

/// What happened to one policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Updated => "updated",
            ChangeKind::Deleted => "deleted",
        }
    }
}

/// One policy change, with what identifies the version and a summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyChange {
    pub change: ChangeKind,
    pub resource: PolicyResource,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub generation: Option<i64>,
    /// The version it replaced (updated, deleted).
    pub previous_resource_version: Option<String>,
    /// Which parts differ: `spec.<key>` for each changed spec member,
    /// `metadata.labels`, `metadata.annotations`; empty for create/delete.
    pub changed: Vec<String>,
}

impl PolicyChange {
    fn new(
        change: ChangeKind,
        resource: PolicyResource,
        now: &Value,
        before: Option<&Value>,
    ) -> Self {
        let generation = now
            .get("metadata")
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64);
        PolicyChange {
            change,
            resource,
            namespace: meta(now, "namespace"),
            name: meta(now, "name"),
            uid: meta(now, "uid"),
            resource_version: meta(now, "resourceVersion"),
            generation,
            previous_resource_version: before.map(|b| meta(b, "resourceVersion")),
            changed: match (change, before) {
                (ChangeKind::Updated, Some(b)) => changed_parts(b, now),
                _ => Vec::new(),
            },
        }
    }
}

/// The policy changes between two sets of policy objects from one source
/// (e.g. the manifests directory before and after it changed): created,
/// updated (the object differs) and deleted, for the kinds in
/// [`POLICY_RESOURCES`], ordered by resource, namespace and name. Objects of
/// other kinds are ignored.
pub fn policy_changes_between(before: &[Value], after: &[Value]) -> Vec<PolicyChange> {
    fn keyed(objects: &[Value]) -> BTreeMap<(PolicyResource, String, String), &Value> {
        objects
            .iter()
            .filter_map(|o| {
                let api_version = o.get("apiVersion").and_then(Value::as_str)?;
                let kind = o.get("kind").and_then(Value::as_str)?;
                let resource = POLICY_RESOURCES
                    .iter()
                    .find(|r| r.kind == kind && r.api_version() == api_version)?;
                Some(((*resource, meta(o, "namespace"), meta(o, "name")), o))
            })
            .collect()
    }
    let (b, a) = (keyed(before), keyed(after));
    let mut out = Vec::new();
    for (key, now) in &a {
        match b.get(key) {
            None => out.push(PolicyChange::new(ChangeKind::Created, key.0, now, None)),
            Some(old) if old != now => out.push(PolicyChange::new(
                ChangeKind::Updated,
                key.0,
                now,
                Some(old),
            )),
            Some(_) => {}
        }
    }
    for (key, old) in &b {
        if !a.contains_key(key) {
            out.push(PolicyChange::new(
                ChangeKind::Deleted,
                key.0,
                old,
                Some(old),
            ));
        }
    }
    out.sort_by(|x, y| {
        (x.resource.kind, &x.namespace, &x.name).cmp(&(y.resource.kind, &y.namespace, &y.name))
    });
    out
}

/// The parts of a policy that differ between two versions.
fn changed_parts(before: &Value, after: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let spec = |v: &Value| {
        v.get("spec")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (b, a) = (spec(before), spec(after));
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        if b.get(k) != a.get(k) {
            out.push(format!("spec.{k}"));
        }
    }
    for part in ["labels", "annotations"] {
        let get = |v: &Value| v.get("metadata").and_then(|m| m.get(part)).cloned();
        if get(before) != get(after) {
            out.push(format!("metadata.{part}"));
        }
    }
    out
}

/// The current policy objects from the API, and the source's health.
#[derive(Debug, Default)]
pub struct PolicyObjects {
    objects: BTreeMap<(PolicyResource, String, String), Value>,
    listed: HashSet<PolicyResource>,
    absent: HashSet<PolicyResource>,
    failing: BTreeMap<PolicyResource, SourceProblem>,
    /// Objects changed since [`PolicyObjects::take_changed`] was last called.
    changed: bool,
}

fn meta(v: &Value, field: &str) -> String {
    v.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl PolicyObjects {
    fn recovered(&mut self, resource: PolicyResource, reports: &mut Vec<PolicyReport>) {
        self.absent.remove(&resource);
        if self.failing.remove(&resource).is_some() {
            reports.push(PolicyReport::Recovered { resource });
        }
    }

    pub fn apply(&mut self, event: PolicyEvent) -> Vec<PolicyReport> {
        let mut reports = Vec::new();
        match event {
            PolicyEvent::Listed { resource, objects } => {
                // A relist after the first one (a 410, a reconnect) may
                // carry changes the watch missed: report the difference.
                let relist = self.listed.contains(&resource);
                let mut before: BTreeMap<(String, String), Value> = BTreeMap::new();
                self.objects.retain(|(r, ns, name), v| {
                    if *r == resource {
                        before.insert((ns.clone(), name.clone()), v.clone());
                        false
                    } else {
                        true
                    }
                });
                let n = objects.len();
                for o in objects {
                    let (ns, name) = (meta(&o, "namespace"), meta(&o, "name"));
                    let old = before.remove(&(ns.clone(), name.clone()));
                    if relist {
                        match &old {
                            None => reports.push(PolicyReport::Changed(PolicyChange::new(
                                ChangeKind::Created,
                                resource,
                                &o,
                                None,
                            ))),
                            Some(b)
                                if meta(b, "resourceVersion") != meta(&o, "resourceVersion") =>
                            {
                                reports.push(PolicyReport::Changed(PolicyChange::new(
                                    ChangeKind::Updated,
                                    resource,
                                    &o,
                                    Some(b),
                                )))
                            }
                            Some(_) => {}
                        }
                    }
                    self.objects.insert((resource, ns, name), o);
                }
                if relist {
                    for gone in before.values() {
                        reports.push(PolicyReport::Changed(PolicyChange::new(
                            ChangeKind::Deleted,
                            resource,
                            gone,
                            Some(gone),
                        )));
                    }
                }
                self.listed.insert(resource);
                self.changed = true;
                self.recovered(resource, &mut reports);
                reports.push(PolicyReport::Listed {
                    resource,
                    objects: n,
                });
            }
            PolicyEvent::Applied { resource, object } => {
                let key = (resource, meta(&object, "namespace"), meta(&object, "name"));
                let change = match self.objects.get(&key) {
                    None => PolicyChange::new(ChangeKind::Created, resource, &object, None),
                    Some(old) => {
                        PolicyChange::new(ChangeKind::Updated, resource, &object, Some(old))
                    }
                };
                reports.push(PolicyReport::Changed(change));
                self.objects.insert(key, object);
                self.changed = true;
                if self.listed.contains(&resource) {
                    self.recovered(resource, &mut reports);
                }
            }
            PolicyEvent::Deleted {
                resource,
                namespace,
                name,
            } => {
                if let Some(old) = self.objects.remove(&(resource, namespace, name)) {
                    reports.push(PolicyReport::Changed(PolicyChange::new(
                        ChangeKind::Deleted,
                        resource,
                        &old,
                        Some(&old),
                    )));
                    self.changed = true;
                }
            }
            PolicyEvent::Absent { resource } => {
                // A CRD that went away takes its objects with it.
                let before = self.objects.len();
                self.objects.retain(|(r, _, _), _| *r != resource);
                self.changed |= self.objects.len() != before;
                self.listed.remove(&resource);
                self.failing.remove(&resource);
                if self.absent.insert(resource) {
                    reports.push(PolicyReport::Absent { resource });
                }
            }
            PolicyEvent::Failing { resource, problem } => {
                if self.failing.get(&resource) != Some(&problem) {
                    reports.push(PolicyReport::Failing {
                        resource,
                        problem: problem.clone(),
                    });
                }
                self.failing.insert(resource, problem);
            }
        }
        reports
    }

    /// The policy set may be incomplete: a resource is failing, or one not
    /// known to be absent has not been listed yet.
    pub fn degraded(&self) -> bool {
        !self.failing.is_empty()
            || POLICY_RESOURCES
                .iter()
                .any(|r| !self.listed.contains(r) && !self.absent.contains(r))
    }

    /// Every current object.
    pub fn objects(&self) -> impl Iterator<Item = &Value> {
        self.objects.values()
    }

    /// Whether objects changed since the last call (then clears the flag).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn np(ns: &str, name: &str) -> Value {
        serde_json::json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": ns, "name": name}, "spec": {"podSelector": {}}})
    }

    #[test]
    fn changes_between_two_sets_are_created_updated_and_deleted() {
        let mut changed = np("a", "x");
        changed["spec"]["policyTypes"] = serde_json::json!(["Ingress"]);
        changed["metadata"]["resourceVersion"] = "7".into();
        let configmap = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"namespace": "a", "name": "x"}});
        let before = [
            np("a", "x"),
            np("a", "same"),
            np("b", "gone"),
            configmap.clone(),
        ];
        let after = [
            changed,
            np("a", "same"),
            np("c", "new"),
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"namespace": "a", "name": "other"}}),
        ];
        let got: Vec<(ChangeKind, String, String, Vec<String>)> =
            policy_changes_between(&before, &after)
                .into_iter()
                .map(|c| (c.change, c.namespace, c.name, c.changed))
                .collect();
        assert_eq!(
            got,
            [
                (
                    ChangeKind::Updated,
                    "a".into(),
                    "x".into(),
                    vec!["spec.policyTypes".into()]
                ),
                (ChangeKind::Deleted, "b".into(), "gone".into(), vec![]),
                (ChangeKind::Created, "c".into(), "new".into(), vec![]),
            ]
        );
        assert!(policy_changes_between(&before, &before).is_empty());
    }

    #[test]
    fn objects_follow_list_apply_delete_and_absence() {
        let k8s = POLICY_RESOURCES[3];
        let calico = POLICY_RESOURCES[5];
        assert_eq!(
            (k8s.group, k8s.plural),
            ("networking.k8s.io", "networkpolicies")
        );
        assert_eq!(calico.group, "projectcalico.org");
        let mut p = PolicyObjects::default();
        assert!(p.degraded(), "nothing listed yet");
        p.apply(PolicyEvent::Listed {
            resource: k8s,
            objects: vec![np("a", "x"), np("b", "y")],
        });
        assert!(p.take_changed());
        assert!(!p.take_changed());
        p.apply(PolicyEvent::Applied {
            resource: k8s,
            object: np("a", "z"),
        });
        p.apply(PolicyEvent::Deleted {
            resource: k8s,
            namespace: "b".into(),
            name: "y".into(),
        });
        // Same namespace/name under another resource is another object.
        p.apply(PolicyEvent::Applied {
            resource: calico,
            object: np("a", "x"),
        });
        assert_eq!(p.objects().count(), 3);
        for r in POLICY_RESOURCES.iter().filter(|r| r.optional) {
            let reports = p.apply(PolicyEvent::Absent { resource: *r });
            assert_eq!(reports, vec![PolicyReport::Absent { resource: *r }]);
        }
        // Calico's CRD is absent: its object went with it; not degraded.
        assert_eq!(p.objects().count(), 2);
        assert!(!p.degraded());
        assert!(
            p.apply(PolicyEvent::Absent { resource: calico }).is_empty(),
            "reported once"
        );
        let problem = SourceProblem {
            message: "403 Forbidden".into(),
            missing_permission: Some(k8s.permission()),
        };
        let r = p.apply(PolicyEvent::Failing {
            resource: k8s,
            problem: problem.clone(),
        });
        assert_eq!(r.len(), 1);
        assert!(p.degraded(), "a failing resource may hide policies");
        assert!(
            p.apply(PolicyEvent::Failing {
                resource: k8s,
                problem
            })
            .is_empty()
        );
        let r = p.apply(PolicyEvent::Listed {
            resource: k8s,
            objects: vec![],
        });
        assert!(r.contains(&PolicyReport::Recovered { resource: k8s }));
        assert!(!p.degraded());
        assert_eq!(p.objects().count(), 0);
    }
}
