//! The live source: kube-rs watchers on the API server, one per kind,
//! turned into [`SourceEvent`]s for the single writer of the index.
//!
//! The watchers (kube-runtime) list, then watch from the list's
//! resourceVersion, ask for bookmarks so a reconnect resumes from a recent
//! version, relist on 410 Gone, and back off on errors. Our index plays the
//! part of kube-runtime's reflector `Store`: it keeps history, so a flow can
//! be resolved against what held an address at the time of the flow.
//!
//! Objects are read untyped (`DynamicObject`, metadata-only for ReplicaSets
//! and Jobs) and parsed by [`crate::objects`], so one malformed object is
//! skipped and counted instead of failing a whole list. This module is the
//! only async code of the crate; the daemon owns the runtime it runs on.

use std::collections::{BTreeMap, HashSet};
use std::sync::mpsc::Sender;
use std::time::SystemTime;

use futures::StreamExt;
use kube::api::{Api, DynamicObject, PartialObjectMeta};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use serde_json::Value;

use crate::index::{Change, IdentityIndex};
use crate::objects::{self, Kind, Object, ObjectError, ObjectKey};

/// What the watchers report, stamped with the time it was received.
#[derive(Debug, Clone)]
pub enum SourceEvent {
    /// A kind was (re)listed: these are all its objects now.
    Listed {
        kind: Kind,
        objects: Vec<Object>,
        skipped: Vec<ObjectError>,
    },
    /// One object was added, modified or deleted.
    Changed(Change),
    /// An object that could not be parsed (skipped, counted).
    Skipped(ObjectError),
    /// Listing or watching a kind failed; the watcher backs off and retries.
    Failing { kind: Kind, problem: SourceProblem },
}

/// Why a kind cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceProblem {
    pub message: String,
    /// For a 403: the RBAC rule the exporter's account lacks.
    pub missing_permission: Option<String>,
}

impl std::fmt::Display for SourceProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.missing_permission {
            Some(p) => write!(
                f,
                "forbidden: the service account needs {p} ({})",
                self.message
            ),
            None => f.write_str(&self.message),
        }
    }
}

/// The RBAC rule needed to watch `kind`, as a ClusterRole would say it.
pub fn permission_for(kind: Kind) -> String {
    let (group, _, plural) = kind.api();
    rbac_rule(group, plural)
}

/// The RBAC rule needed to watch a resource, as a ClusterRole would say it.
pub(crate) fn rbac_rule(group: &str, plural: &str) -> String {
    format!("get/list/watch on {plural} (apiGroups: [\"{group}\"])")
}

/// The API server's answer inside a watcher error, when there is one.
pub(crate) fn status_of(e: &watcher::Error) -> Option<&kube::core::Status> {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s.as_ref()),
        watcher::Error::WatchError(s) => Some(s.as_ref()),
        _ => None,
    }
}

/// A failing list/watch as reported: a 403 names `permission`.
pub(crate) fn source_problem(
    e: &watcher::Error,
    permission: impl FnOnce() -> String,
) -> SourceProblem {
    let status = status_of(e);
    SourceProblem {
        message: match status {
            Some(s) => format!("{} {}: {}", s.code, s.reason, s.message),
            None => e.to_string(),
        },
        missing_permission: status.is_some_and(|s| s.code == 403).then(permission),
    }
}

fn problem(kind: Kind, e: &watcher::Error) -> SourceProblem {
    source_problem(e, || permission_for(kind))
}

fn to_object(kind: Kind, v: &Value) -> Result<Object, ObjectError> {
    objects::parse_as(kind, v)
}

fn key_of(kind: Kind, v: &Value) -> Option<ObjectKey> {
    let meta = v.get("metadata")?;
    Some(ObjectKey {
        kind,
        namespace: match kind {
            Kind::Namespace | Kind::Node => String::new(),
            _ => meta.get("namespace")?.as_str()?.to_string(),
        },
        name: meta.get("name")?.as_str()?.to_string(),
    })
}

/// Follow one kind until the receiver goes away.
async fn watch_kind<S, K>(kind: Kind, stream: S, tx: Sender<(SystemTime, SourceEvent)>)
where
    S: futures::Stream<Item = Result<Event<K>, watcher::Error>>,
    K: serde::Serialize,
{
    let mut stream = std::pin::pin!(stream);
    let mut buffer: Vec<Object> = Vec::new();
    let mut skipped: Vec<ObjectError> = Vec::new();
    while let Some(ev) = stream.next().await {
        let out = match ev {
            Ok(Event::Init) => {
                buffer.clear();
                skipped.clear();
                continue;
            }
            Ok(Event::InitApply(o)) => {
                match to_object(kind, &json(&o)) {
                    Ok(o) => buffer.push(o),
                    Err(e) => skipped.push(e),
                }
                continue;
            }
            Ok(Event::InitDone) => SourceEvent::Listed {
                kind,
                objects: std::mem::take(&mut buffer),
                skipped: std::mem::take(&mut skipped),
            },
            Ok(Event::Apply(o)) => match to_object(kind, &json(&o)) {
                Ok(o) => SourceEvent::Changed(Change::Upsert(o)),
                Err(e) => SourceEvent::Skipped(e),
            },
            Ok(Event::Delete(o)) => match key_of(kind, &json(&o)) {
                Some(k) => SourceEvent::Changed(Change::Delete(k)),
                None => continue,
            },
            Err(e) => SourceEvent::Failing {
                kind,
                problem: problem(kind, &e),
            },
        };
        if tx.send((SystemTime::now(), out)).is_err() {
            return;
        }
    }
}

fn json<T: serde::Serialize>(o: &T) -> Value {
    serde_json::to_value(o).unwrap_or(Value::Null)
}

/// Start one watcher per kind on the current tokio runtime. Events go to
/// `tx`; the tasks end when its receiver is dropped (at their next event).
pub fn spawn_watchers(client: kube::Client, tx: Sender<(SystemTime, SourceEvent)>) {
    for kind in Kind::ALL {
        let (group, version, plural) = kind.api();
        let config = watcher::Config::default();
        let tx = tx.clone();
        match kind {
            Kind::ReplicaSet => {
                let api: Api<PartialObjectMeta<k8s_openapi::api::apps::v1::ReplicaSet>> =
                    Api::all(client.clone());
                let s = watcher(api, config).default_backoff();
                tokio::spawn(watch_kind(kind, s, tx));
            }
            Kind::Job => {
                let api: Api<PartialObjectMeta<k8s_openapi::api::batch::v1::Job>> =
                    Api::all(client.clone());
                let s = watcher(api, config).default_backoff();
                tokio::spawn(watch_kind(kind, s, tx));
            }
            _ => {
                let gvk = GroupVersionKind::gvk(group, version, kind.as_str());
                let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
                let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
                let s = watcher(api, config).default_backoff();
                tokio::spawn(watch_kind(kind, s, tx));
            }
        }
    }
}

/// The consumer side: applies source events to the index and keeps the
/// source's health. Pure (no IO); the daemon calls it from its loop.
#[derive(Debug, Default)]
pub struct SourceState {
    listed: HashSet<Kind>,
    failing: BTreeMap<Kind, SourceProblem>,
    /// Objects skipped because they could not be parsed.
    pub malformed_objects: u64,
}

/// What applying an event changed, for the daemon to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceReport {
    Listed {
        kind: Kind,
        objects: usize,
    },
    Skipped(String),
    /// First failure of a kind (repeats of the same problem are not reported).
    Failing {
        kind: Kind,
        problem: SourceProblem,
    },
    Recovered {
        kind: Kind,
    },
}

impl SourceState {
    /// Identity is degraded until every kind has been listed, and while any
    /// kind is failing.
    pub fn degraded(&self) -> bool {
        !self.failing.is_empty() || self.listed.len() < Kind::ALL.len()
    }

    pub fn failing(&self) -> &BTreeMap<Kind, SourceProblem> {
        &self.failing
    }

    pub fn apply(
        &mut self,
        index: &mut IdentityIndex,
        at: SystemTime,
        event: SourceEvent,
    ) -> Vec<SourceReport> {
        let mut reports = Vec::new();
        match event {
            SourceEvent::Listed {
                kind,
                objects,
                skipped,
            } => {
                reports.push(SourceReport::Listed {
                    kind,
                    objects: objects.len(),
                });
                self.malformed_objects += skipped.len() as u64;
                reports.extend(skipped.iter().map(|e| SourceReport::Skipped(e.to_string())));
                index.replace_kind(kind, objects, at);
                self.listed.insert(kind);
                if self.failing.remove(&kind).is_some() {
                    reports.push(SourceReport::Recovered { kind });
                }
            }
            SourceEvent::Changed(change) => {
                let kind = match &change {
                    Change::Upsert(o) => o.kind(),
                    Change::Delete(k) => k.kind,
                };
                index.apply(change, at);
                // A watch event after a failure means the watch is back.
                if self.listed.contains(&kind) && self.failing.remove(&kind).is_some() {
                    reports.push(SourceReport::Recovered { kind });
                }
            }
            SourceEvent::Skipped(e) => {
                self.malformed_objects += 1;
                reports.push(SourceReport::Skipped(e.to_string()));
            }
            SourceEvent::Failing { kind, problem } => {
                if self.failing.get(&kind) != Some(&problem) {
                    reports.push(SourceReport::Failing {
                        kind,
                        problem: problem.clone(),
                    });
                }
                self.failing.insert(kind, problem);
            }
        }
        reports
    }
}
