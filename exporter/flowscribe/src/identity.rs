//! Stage ② sources, owned by the daemon: the manifests directory (re-read
//! when a file changes) and the API server watchers (events over a channel
//! from their runtime), feeding the single writer of the identity index.
//!
//! A problem in a manifest or an API object is logged once per distinct
//! problem and counted; a failing or forbidden watch is logged once with the
//! missing permission and makes records say `identity_degraded`. Capture
//! never stops for any of them.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::SystemTime;

use flowscribe_enrich::kube_policies::{
    PolicyChange, PolicyEvent, PolicyObjects, PolicyReport, policy_changes_between,
};
use flowscribe_enrich::kube_source::{SourceEvent, SourceReport, SourceState};
use flowscribe_enrich::manifests::{self, DirectoryStamp};
use flowscribe_enrich::objects::{Kind, Object};
use flowscribe_enrich::{IdentityIndex, IndexConfig};
use flowscribe_policy::PolicyIndex;
use tracing::{info, warn};

#[derive(Debug)]
pub struct Identities {
    index: IdentityIndex,
    manifests: Option<PathBuf>,
    stamp: Option<DirectoryStamp>,
    /// The manifests directory has been read once (later reads are reloads).
    loaded_once: bool,
    reported: HashSet<String>,
    /// Objects skipped because they could not be parsed (each re-read counts).
    pub malformed_objects: u64,
    kube: Option<(Receiver<(SystemTime, SourceEvent)>, SourceState)>,
    /// Policy objects of the manifests directory (as last read).
    manifest_policies: Vec<serde_json::Value>,
    /// Policy objects from the API server's policy watchers.
    kube_policies: Option<(Receiver<(SystemTime, PolicyEvent)>, PolicyObjects)>,
    /// Policy changes seen since the last [`Identities::take_policy_changes`].
    policy_changes: Vec<(SystemTime, PolicyChange)>,
    /// Sources re-read after start, since the last [`Identities::take_reloads`]:
    /// when, and what was loaded (the audit trail's reload records).
    reloads: Vec<(SystemTime, BTreeMap<String, serde_json::Value>)>,
    /// Compiled from both sources; `None` without a policy source (then
    /// flows carry no trace rather than a made-up verdict).
    policies: Option<PolicyIndex>,
}

impl Identities {
    pub fn new(config: IndexConfig, manifests: Option<PathBuf>) -> Self {
        Identities {
            index: IdentityIndex::new(config),
            manifests,
            stamp: None,
            loaded_once: false,
            reported: HashSet::new(),
            malformed_objects: 0,
            kube: None,
            manifest_policies: Vec::new(),
            kube_policies: None,
            policy_changes: Vec::new(),
            reloads: Vec::new(),
            policies: None,
        }
    }

    /// Take policy events from the API server's policy watchers.
    pub fn with_kube_policies(mut self, events: Receiver<(SystemTime, PolicyEvent)>) -> Self {
        self.kube_policies = Some((events, PolicyObjects::default()));
        self
    }

    /// Take events from the API server watchers.
    pub fn with_kube(mut self, events: Receiver<(SystemTime, SourceEvent)>) -> Self {
        self.kube = Some((events, SourceState::default()));
        self
    }

    pub fn index(&self) -> &IdentityIndex {
        &self.index
    }

    /// The policies to explain flows with, when a policy source exists.
    pub fn policies(&self) -> Option<&PolicyIndex> {
        self.policies.as_ref()
    }

    /// Is an identity source incomplete (the manifests directory unreadable,
    /// the API server not yet listed, a watch failing or forbidden)?
    pub fn degraded(&self) -> bool {
        let manifests = self.manifests.is_some() && self.stamp.is_none();
        let kube = self.kube.as_ref().is_some_and(|(_, s)| s.degraded());
        // Missing policies would turn denies into "not isolated" allows.
        let policies = self
            .kube_policies
            .as_ref()
            .is_some_and(|(_, p)| p.degraded());
        manifests || kube || policies
    }

    /// Pick up changed manifests and API events; forget expired deletions.
    pub fn refresh(&mut self, now: SystemTime) {
        if let Some(dir) = self.manifests.clone() {
            self.reload_if_changed(&dir, now);
        }
        self.apply_kube_events();
        if self.apply_policy_events() {
            self.compile_policies();
        }
        self.index.expire(now);
    }

    /// Policy changes (created, updated, deleted) since the last call, with
    /// when they arrived: the audit trail records them.
    pub fn take_policy_changes(&mut self) -> Vec<(SystemTime, PolicyChange)> {
        std::mem::take(&mut self.policy_changes)
    }

    /// Sources re-read after start (the manifests directory changed), with
    /// when and what was loaded.
    pub fn take_reloads(&mut self) -> Vec<(SystemTime, BTreeMap<String, serde_json::Value>)> {
        std::mem::take(&mut self.reloads)
    }

    /// Apply the policy watchers' events; true when the objects changed.
    fn apply_policy_events(&mut self) -> bool {
        let Some((rx, objects)) = &mut self.kube_policies else {
            return false;
        };
        loop {
            let (at, event) = match rx.try_recv() {
                Ok(e) => e,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    warn!("Kubernetes policy watchers stopped; policy verdicts may be stale");
                    break;
                }
            };
            for report in objects.apply(event) {
                match report {
                    PolicyReport::Listed { resource, objects } => {
                        info!(resource = %format!("{}.{}", resource.plural, resource.group), objects, "policies listed")
                    }
                    PolicyReport::Absent { resource } => {
                        info!(resource = %format!("{}.{}", resource.plural, resource.group), "policy resource not served (CRD not installed); skipped")
                    }
                    PolicyReport::Failing { resource, problem } => {
                        warn!(resource = %format!("{}.{}", resource.plural, resource.group), problem = %problem, "policy watch failing; verdicts are marked degraded")
                    }
                    PolicyReport::Recovered { resource } => {
                        info!(resource = %format!("{}.{}", resource.plural, resource.group), "policy watch recovered")
                    }
                    PolicyReport::Changed(change) => {
                        record_policy_change(&mut self.policy_changes, at, change, "api");
                    }
                }
            }
        }
        objects.take_changed()
    }

    /// Compile the policies of both sources into the index explain uses.
    fn compile_policies(&mut self) {
        let from_kube = self
            .kube_policies
            .iter()
            .flat_map(|(_, objects)| objects.objects());
        let (policies, problems) =
            PolicyIndex::from_objects(self.manifest_policies.iter().chain(from_kube));
        for p in &problems {
            if self.reported.insert(p.to_string()) {
                self.malformed_objects += 1;
                warn!(problem = %p, "policy is invalid; flows it may select are flagged");
            }
        }
        self.policies = Some(policies);
    }

    fn apply_kube_events(&mut self) {
        let Some((rx, state)) = &mut self.kube else {
            return;
        };
        loop {
            let (at, event) = match rx.try_recv() {
                Ok(e) => e,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    warn!("Kubernetes watchers stopped; identities are degraded");
                    self.kube = None;
                    break;
                }
            };
            for report in state.apply(&mut self.index, at, event) {
                match report {
                    SourceReport::Listed { kind, objects } => {
                        info!(kind = kind.as_str(), objects, "kubernetes objects listed")
                    }
                    SourceReport::Skipped(problem) => {
                        if self.reported.insert(problem.clone()) {
                            warn!(problem = %problem, "kubernetes object skipped");
                        }
                    }
                    SourceReport::Failing { kind, problem } => {
                        warn!(kind = kind.as_str(), problem = %problem, "kubernetes watch failing; identities are degraded")
                    }
                    SourceReport::Recovered { kind } => {
                        info!(kind = kind.as_str(), "kubernetes watch recovered")
                    }
                }
            }
        }
    }

    fn reload_if_changed(&mut self, dir: &std::path::Path, now: SystemTime) {
        let stamp = match DirectoryStamp::of(dir) {
            Ok(s) => s,
            Err(e) => {
                if self.reported.insert(format!("{}: {e}", dir.display())) {
                    warn!(dir = %dir.display(), error = %e, "cannot read manifests directory; identities are degraded");
                }
                self.stamp = None;
                return;
            }
        };
        if self.stamp.as_ref() == Some(&stamp) {
            return;
        }
        // The first read is the start; every later one is a reload.
        let reload = self.loaded_once;
        let loaded = match manifests::load_dir(dir) {
            Ok(l) => l,
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "cannot read manifests directory");
                self.stamp = None;
                return;
            }
        };
        self.stamp = Some(stamp);
        self.loaded_once = true;
        self.malformed_objects += loaded.problems.len() as u64;
        for p in &loaded.problems {
            if self.reported.insert(p.to_string()) {
                warn!(location = %p.location, problem = %p.problem, "manifest skipped");
            }
        }
        // ③ The same directory's policies, compiled for explain (with the
        // API server's, when it is watched).
        if reload {
            // Policy change records for the manifests, as the API watchers
            // give them for the cluster's policies.
            for change in policy_changes_between(&self.manifest_policies, &loaded.others) {
                record_policy_change(&mut self.policy_changes, now, change, "manifests");
            }
        }
        self.manifest_policies = loaded.others;
        self.compile_policies();
        let policy_count = self.policies.as_ref().map_or(0, |p| p.policies().len());
        let count = loaded.objects.len();
        let mut by_kind: Vec<(Kind, Vec<Object>)> =
            Kind::ALL.iter().map(|k| (*k, Vec::new())).collect();
        for o in loaded.objects {
            if let Some((_, list)) = by_kind.iter_mut().find(|(k, _)| *k == o.kind()) {
                list.push(o);
            }
        }
        // Owners and namespaces before pods, as the watchers deliver them.
        for (kind, objects) in by_kind {
            self.index.replace_kind(kind, objects, now);
        }
        let stats = self.index.stats();
        info!(
            dir = %dir.display(),
            objects = count,
            skipped = loaded.problems.len(),
            ignored = loaded.ignored,
            pods = stats.pods,
            services = stats.services,
            nodes = stats.nodes,
            policies = policy_count,
            "manifests loaded"
        );
        if reload {
            let details = BTreeMap::from([
                ("source".to_string(), serde_json::json!("manifests")),
                (
                    "dir".to_string(),
                    serde_json::json!(dir.display().to_string()),
                ),
                ("objects".to_string(), serde_json::json!(count)),
                (
                    "skipped".to_string(),
                    serde_json::json!(loaded.problems.len()),
                ),
                ("policies".to_string(), serde_json::json!(policy_count)),
            ]);
            self.reloads.push((now, details));
        }
    }
}

/// Log a policy change from `source` (`api`, `manifests`) and keep it for
/// the audit trail.
fn record_policy_change(
    changes: &mut Vec<(SystemTime, PolicyChange)>,
    at: SystemTime,
    change: PolicyChange,
    source: &str,
) {
    info!(
        source,
        change = change.change.as_str(),
        kind = change.resource.kind,
        namespace = %change.namespace,
        name = %change.name,
        resource_version = %change.resource_version,
        changed = ?change.changed,
        "policy changed"
    );
    changes.push((at, change));
}
