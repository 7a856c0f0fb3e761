//! The audit trail end to end: `flowscribe run` with `audit.key_file`,
//! real traffic, a restart on the same state directory, then the archive
//! (the output file and an ECS file sink) is checked with the verifier;
//! editing or deleting one line is then reported precisely. Needs root.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::path::{Path, PathBuf};
use std::time::Duration;

#[allow(
    dead_code,
    reason = "shared with the enrich tests; not every helper is used here"
)]
#[path = "../../exporter/enrich/tests/fake_apiserver/mod.rs"]
mod fake_apiserver;

use fake_apiserver::FakeApiServer;
use flowscribe_audit::verify::{FindingKind, Report, Verifier, VerifyOptions};
use flowscribe_audit::{NoteSigner, NoteVerifier};
use flowscribe_e2e::*;
use serde_json::Value;

const SEED: [u8; 32] = [42; 32];

fn verify(files: &[(&str, &str)]) -> Report {
    let public = NoteSigner::from_seed("flowscribe-test-node", SEED)
        .unwrap()
        .verifier_key();
    let mut v = Verifier::new(VerifyOptions {
        trusted: vec![NoteVerifier::parse(&public).unwrap()],
        ordered: true,
        ..VerifyOptions::default()
    });
    for (name, text) in files {
        let f = v.add_file(name);
        for (i, line) in text.lines().enumerate() {
            v.add_line(f, i as u64 + 1, line.as_bytes());
        }
    }
    v.finish()
}

struct Dir(PathBuf);

impl Dir {
    /// A fresh scratch directory holding the checkpoint signing key.
    fn with_key(tag: &str) -> Dir {
        let dir = Dir(std::env::temp_dir().join(format!("fst-{tag}-{}", std::process::id())));
        let _ = std::fs::remove_dir_all(&dir.0);
        std::fs::create_dir_all(&dir.0).unwrap();
        std::fs::write(dir.0.join("audit.key"), SEED).unwrap();
        dir
    }

    /// The `audit:` section for this directory's key and state.
    fn audit_yaml(&self) -> String {
        format!(
            "audit:\n  key_file: {}\n  key_name: flowscribe-test-node\n  state_dir: {}\n",
            self.0.join("audit.key").display(),
            self.0.join("state").display()
        )
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run_once(node: &Node, config: &str, sink: &str, traffic: usize) -> (Vec<String>, Vec<u16>) {
    let (a, b) = (&node.pods[0], &node.pods[1]);
    let exporter = Exporter::start(
        &node.ns.name,
        &["--config", config, "--idle-timeout", "1s", "--sink", sink],
    );
    let ports: Vec<u16> = (0..traffic)
        .map(|_| udp_exchange(&a.ns, &b.ns, b.v4, 2, 40, 1, 40))
        .collect();
    // Wait until a checkpoint (every second) has gone out after the flows.
    let seen = wait_until(Duration::from_secs(15), || {
        let recs = exporter.records_so_far();
        let last_flow = recs
            .iter()
            .rposition(|r| ports.iter().any(|p| r["src_port"] == *p));
        let last_cp = recs
            .iter()
            .rposition(|r| r["flowscribe"]["audit"]["type"] == "checkpoint");
        matches!((last_flow, last_cp), (Some(f), Some(c)) if c > f)
    });
    assert!(
        seen,
        "no checkpoint after the flows: {:#?}",
        exporter.records_so_far()
    );
    let stopped = exporter.stop();
    assert_eq!(stopped.code, Some(0), "log: {:#?}", stopped.log);
    (stopped.lines, ports)
}

fn count(lines: &[String], pred: impl Fn(&Value) -> bool) -> usize {
    lines
        .iter()
        .filter(|l| pred(&serde_json::from_str::<Value>(l).unwrap()))
        .count()
}

#[test]
fn a_restarted_exporter_s_archive_verifies_and_tampering_is_pinpointed() {
    let _serial = serial();
    let node = Node::new_v4_only(2);
    let dir = Dir::with_key("audit");
    let sink_file = dir.0.join("ecs.jsonl");
    let sink = format!("file:{}", sink_file.display());
    let config = TempConfig::new(&format!(
        "node_name: test-node\ncapture:\n  drain_interval: 200ms\n{}  checkpoint_interval: 1s\n  \
         heartbeat_interval: 1s\n",
        dir.audit_yaml()
    ));
    let config_arg = config.arg();

    let (first, p1) = run_once(&node, &config_arg, &sink, 3);
    let (second, p2) = run_once(&node, &config_arg, &sink, 2);
    let minimal: Vec<String> = first.iter().chain(second.iter()).cloned().collect();
    let minimal_text = minimal.join("\n");
    let ecs_text = std::fs::read_to_string(&sink_file).unwrap();

    // What the trail holds: both runs' flows with sequence numbers, a start
    // and a stop each, the clean gap between them, seals and checkpoints.
    for p in p1.iter().chain(p2.iter()) {
        let flows = count(&minimal, |r| r["src_port"] == *p);
        assert_eq!(flows, 1, "port {p}");
    }
    assert!(
        count(&minimal, |r| r["src_port"].is_u64()
            && r["flowscribe.audit"]["seq"].is_u64())
            >= 5
    );
    let lifecycle = |e: &str| count(&minimal, |r| r["flowscribe"]["lifecycle"]["event"] == e);
    assert_eq!((lifecycle("start"), lifecycle("stop")), (2, 2));
    assert_eq!(
        count(&minimal, |r| r["flowscribe"]["gap"]["clean"] == true),
        1
    );
    assert!(count(&minimal, |r| r["flowscribe"]["record"] == "heartbeat") >= 2);
    assert!(count(&minimal, |r| r["flowscribe"]["audit"]["type"] == "seal") >= 2);

    // Hashed with the default suite, v3 (named in every record and seal).
    assert!(ecs_text.contains(r#""suite":"v3""#));
    assert!(!ecs_text.contains(r#""suite":"v2""#));

    // Both views verify: the output's minimal lines and the sink's ECS.
    let report = verify(&[("minimal", &minimal_text), ("ecs", &ecs_text)]);
    assert!(report.ok(), "{}", report.render());
    assert_eq!(report.chains.len(), 2, "{}", report.render());
    assert!(
        report
            .chains
            .iter()
            .all(|c| c.runs.len() == 2 && c.checkpoints_verified >= 2)
    );

    // The same through the command an auditor runs.
    let public = NoteSigner::from_seed("flowscribe-test-node", SEED)
        .unwrap()
        .verifier_key();
    let cli = |file: &Path| {
        let out = std::process::Command::new(flowscribe_bin())
            .args(["verify", "--ordered", "--key-string", &public])
            .arg(file)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = cli(&sink_file);
    assert_eq!(code, Some(0), "{text}");

    // Edit one flow's byte count in the ECS archive: exactly that record.
    let target = ecs_text
        .lines()
        .position(|l| l.contains(&format!("\"port\":{}", p1[0])) && l.contains("\"bytes\""))
        .unwrap();
    let tampered: Vec<String> = ecs_text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == target {
                l.replacen("\"bytes\":", "\"bytes\":1", 1)
            } else {
                l.to_string()
            }
        })
        .collect();
    let report = verify(&[("ecs", &tampered.join("\n"))]);
    assert!(!report.ok());
    let tampered_file = dir.0.join("tampered.jsonl");
    std::fs::write(&tampered_file, tampered.join("\n")).unwrap();
    let (code, text) = cli(&tampered_file);
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("MODIFIED"), "{text}");
    let modified = report.of_kind(FindingKind::Modified);
    assert_eq!(modified.len(), 1, "{}", report.render());
    let seq: u64 = serde_json::from_str::<Value>(ecs_text.lines().nth(target).unwrap()).unwrap()
        ["flowscribe.audit"]["seq"]
        .as_u64()
        .unwrap();
    assert_eq!(modified[0].seqs, Some((seq, seq)), "{}", report.render());

    // Delete that line instead: reported missing, with its number.
    let deleted: Vec<&str> = ecs_text
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != target)
        .map(|(_, l)| l)
        .collect();
    let report = verify(&[("ecs", &deleted.join("\n"))]);
    let missing = report.of_kind(FindingKind::Missing);
    assert_eq!(missing.len(), 1, "{}", report.render());
    assert_eq!(missing[0].seqs, Some((seq, seq)));
}

/// PCI DSS 1.2.2 / 10.2.1.7 evidence: a NetworkPolicy created, changed and
/// deleted in the cluster while the exporter runs becomes three numbered,
/// sealed policy-change records naming the versions and what changed.
#[test]
fn policy_changes_in_the_cluster_are_recorded_in_the_trail() {
    let _serial = serial();
    let node = Node::new_v4_only(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = node
        .ns
        .run(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let fake = {
        let _enter = rt.enter();
        FakeApiServer::start_on(listener)
    };
    let kubeconfig = TempConfig::new(&format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
         clusters: [{{name: fake, cluster: {{server: '{}'}}}}]\n\
         users: [{{name: nobody, user: {{}}}}]\n\
         contexts: [{{name: test, context: {{cluster: fake, user: nobody}}}}]\n",
        fake.url()
    ));
    let dir = Dir::with_key("audit-pc");
    let config = TempConfig::new(&format!(
        "node_name: test-node\ncapture:\n  drain_interval: 200ms\n{}",
        dir.audit_yaml()
    ));
    let config_arg = config.arg();
    let kube_arg = kubeconfig.arg();
    let mut exporter = Exporter::start_with_env(
        &node.ns.name,
        &["--config", &config_arg],
        &[("KUBECONFIG", kube_arg.as_str())],
    );
    exporter
        .wait_for_log(
            |l| l.contains("policies listed") && l.contains("networkpolicies.networking.k8s.io"),
            Duration::from_secs(15),
        )
        .unwrap_or_else(|| panic!("policies never listed; log:\n{}", exporter.log.join("\n")));
    let policy = |types: &[&str]| {
        serde_json::json!({"metadata": {"name": "db-lock", "namespace": "shop", "uid": "np-7",
                                        "generation": 1},
                           "spec": {"podSelector": {}, "policyTypes": types}})
    };
    fake.apply("networkpolicies", policy(&["Ingress"]));
    fake.apply("networkpolicies", policy(&["Ingress", "Egress"]));
    fake.delete("networkpolicies", "shop", "db-lock");
    let changes = |e: &Exporter| {
        e.records_so_far()
            .into_iter()
            .filter(|r| r["flowscribe"]["record"] == "policy_change")
            .collect::<Vec<Value>>()
    };
    assert!(
        wait_until(Duration::from_secs(15), || changes(&exporter).len() >= 3),
        "{:#?}",
        exporter.records_so_far()
    );
    let stopped = exporter.stop();
    assert_eq!(stopped.code, Some(0), "log: {:#?}", stopped.log);
    let got: Vec<&Value> = stopped
        .records
        .iter()
        .filter(|r| r["flowscribe"]["record"] == "policy_change")
        .collect();
    assert_eq!(got.len(), 3, "{got:#?}");
    let c = |i: usize| &got[i]["flowscribe"]["policy_change"];
    assert_eq!(
        (
            c(0)["change"].as_str(),
            c(1)["change"].as_str(),
            c(2)["change"].as_str()
        ),
        (Some("created"), Some("updated"), Some("deleted"))
    );
    assert_eq!(c(1)["changed"], serde_json::json!(["spec.policyTypes"]));
    assert_eq!(c(1)["previous_resource_version"], c(0)["resource_version"]);
    assert_eq!(c(0)["uid"], "np-7");
    assert_eq!(c(0)["api_version"], "networking.k8s.io/v1");
    // Numbered and sealed like every other record: the archive verifies.
    assert!(got.iter().all(|r| r["flowscribe.audit"]["seq"].is_u64()));
    let report = verify(&[("minimal", &stopped.lines.join("\n"))]);
    assert!(report.ok(), "{}", report.render());
}

/// The manifests directory is the policy source of air-gapped nodes: when
/// it changes, the trail gets a reload record and one policy change record
/// per created, updated and deleted policy, numbered and sealed.
#[test]
fn a_changed_manifests_directory_is_a_reload_with_its_policy_changes() {
    let _serial = serial();
    let node = Node::new_v4_only(1);
    let manifests = ManifestsDir::new("audit-reload");
    let np = |name: &str, types: &str, rv: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n  \
             namespace: shop\n  uid: uid-{name}\n  resourceVersion: \"{rv}\"\nspec:\n  \
             podSelector: {{}}\n  policyTypes: [{types}]\n"
        )
    };
    manifests.write("keep.yaml", &np("keep", "Ingress", "1"));
    manifests.write("edit.yaml", &np("edit", "Ingress", "1"));
    manifests.write("gone.yaml", &np("gone", "Ingress", "1"));
    let dir = Dir::with_key("audit-reload");
    let config = TempConfig::new(&format!(
        "node_name: test-node\ncapture:\n  drain_interval: 200ms\n{}",
        dir.audit_yaml()
    ));
    let config_arg = config.arg();
    let manifests_arg = manifests.arg().display().to_string();
    let mut exporter = Exporter::start(
        &node.ns.name,
        &["--config", &config_arg, "--manifests", &manifests_arg],
    );
    exporter
        .wait_for_log(|l| l.contains("manifests loaded"), Duration::from_secs(15))
        .unwrap_or_else(|| panic!("manifests never loaded; log:\n{}", exporter.log.join("\n")));
    // Nothing changed yet: the first read is the start, not a reload.
    manifests.write("edit.yaml", &np("edit", "Ingress, Egress", "2"));
    manifests.write("new.yaml", &np("new", "Egress", "1"));
    std::fs::remove_file(manifests.arg().join("gone.yaml")).unwrap();
    let changes = |e: &Exporter| {
        e.records_so_far()
            .iter()
            .filter(|r| r["flowscribe"]["record"] == "policy_change")
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(15), || changes(&exporter) >= 3),
        "policy changes missing; log:\n{}",
        exporter.log.join("\n")
    );
    let stopped = exporter.stop();
    assert_eq!(stopped.code, Some(0), "log: {:#?}", stopped.log);
    let reloads: Vec<&Value> = stopped
        .records
        .iter()
        .filter(|r| r["flowscribe"]["lifecycle"]["event"] == "reload")
        .collect();
    // The three file changes may land in one re-read or in several; every
    // re-read after start is one reload record, the last with 3 policies.
    assert!(!reloads.is_empty());
    let last = &reloads[reloads.len() - 1]["flowscribe"]["lifecycle"]["details"];
    assert_eq!(last["source"], "manifests");
    assert_eq!(last["policies"], 3, "{last}");
    let mut got: Vec<(String, String, Value)> = stopped
        .records
        .iter()
        .filter(|r| r["flowscribe"]["record"] == "policy_change")
        .map(|r| {
            let c = &r["flowscribe"]["policy_change"];
            (
                c["name"].as_str().unwrap().to_string(),
                c["change"].as_str().unwrap().to_string(),
                c["changed"].clone(),
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            (
                "edit".into(),
                "updated".into(),
                serde_json::json!(["spec.policyTypes"])
            ),
            ("gone".into(), "deleted".into(), serde_json::json!([])),
            ("new".into(), "created".into(), serde_json::json!([])),
        ]
    );
    let report = verify(&[("minimal", &stopped.lines.join("\n"))]);
    assert!(report.ok(), "{}", report.render());
}

/// Records a sink rejects for good (here: every ECS document is larger
/// than the UDP datagram limit the sink is given) come back in-band as loss
/// records in the trail, whose counts add up to what the sink rejected.
#[test]
fn sink_rejects_become_numbered_loss_records_that_add_up() {
    let _serial = serial();
    let node = Node::new_v4_only(2);
    let (a, b) = (&node.pods[0], &node.pods[1]);
    let dir = Dir::with_key("audit-loss");
    let config = TempConfig::new(&format!(
        "node_name: test-node\ncapture:\n  drain_interval: 200ms\n{}",
        dir.audit_yaml()
    ));
    let config_arg = config.arg();
    // A UDP socket that takes the datagrams that fit. Flow documents (well
    // over 1,200 bytes in ECS) are too large to be sent at all; the trail's
    // own records fit.
    let receiver = node
        .ns
        .run(|| std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
    let sink = format!(
        "syslog+udp://127.0.0.1:{}?format=ecs&max_datagram=1200",
        receiver.local_addr().unwrap().port()
    );
    let exporter = Exporter::start(
        &node.ns.name,
        &[
            "--config",
            &config_arg,
            "--idle-timeout",
            "1s",
            "--sink",
            &sink,
        ],
    );
    for _ in 0..3 {
        udp_exchange(&a.ns, &b.ns, b.v4, 2, 40, 1, 40);
    }
    let losses = |records: &[Value]| -> u64 {
        records
            .iter()
            .filter(|r| r["flowscribe"]["record"] == "loss")
            .map(|r| &r["flowscribe"]["loss"])
            .filter(|l| l["stage"] == "sink" && l["reason"] == "too_large")
            .map(|l| l["count"].as_u64().unwrap())
            .sum()
    };
    assert!(
        wait_until(Duration::from_secs(15), || losses(
            &exporter.records_so_far()
        ) >= 3),
        "{:#?}",
        exporter.records_so_far()
    );
    let stopped = exporter.stop();
    assert_eq!(stopped.code, Some(0), "log: {:#?}", stopped.log);
    // The sink's own count at shutdown equals the sum of the loss records.
    let line = stopped
        .log
        .iter()
        .find(|l| l.contains("sink stopped") && l.contains("syslog+udp"))
        .unwrap();
    let rejected: u64 = line
        .split("rejected=")
        .nth(1)
        .unwrap()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rejected >= 3, "{line}");
    let flows = stopped
        .records
        .iter()
        .filter(|r| r["record"] == "flow")
        .count() as u64;
    assert_eq!(rejected, flows, "only the flow documents are too large");
    assert_eq!(losses(&stopped.records), rejected, "{line}");
    assert!(verify(&[("minimal", &stopped.lines.join("\n"))]).ok());
}

/// DORA RTS 2024/1774 Art. 23 asks for prompt detection of failures of the
/// logging itself: a sink that cannot deliver opens an incident in the
/// trail (`degraded`), and its recovery closes it under the same id.
#[test]
fn a_blocked_sink_opens_and_closes_an_incident_in_the_trail() {
    let _serial = serial();
    let node = Node::new_v4_only(2);
    let (a, b) = (&node.pods[0], &node.pods[1]);
    let dir = Dir::with_key("audit-inc");
    let config = TempConfig::new(&format!(
        "node_name: test-node\ncapture:\n  drain_interval: 200ms\n{}",
        dir.audit_yaml()
    ));
    let config_arg = config.arg();
    let port = node.ns.run(|| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    });
    let sink = format!("syslog+tcp://127.0.0.1:{port}?format=ecs");
    let exporter = Exporter::start(
        &node.ns.name,
        &[
            "--config",
            &config_arg,
            "--idle-timeout",
            "1s",
            "--sink",
            &sink,
        ],
    );
    udp_exchange(&a.ns, &b.ns, b.v4, 2, 40, 1, 40);
    let event = |recs: &[Value], e: &str| -> Vec<Value> {
        recs.iter()
            .filter(|r| r["flowscribe"]["lifecycle"]["event"] == e)
            .map(|r| r["flowscribe"]["lifecycle"].clone())
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(15), || !event(
            &exporter.records_so_far(),
            "degraded"
        )
        .is_empty()),
        "{:#?}",
        exporter.records_so_far()
    );
    // The receiver appears: a plain TCP reader in the node namespace.
    let listener = node
        .ns
        .run(move || std::net::TcpListener::bind(("127.0.0.1", port)).unwrap());
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s, &mut std::io::sink());
            });
        }
    });
    assert!(
        wait_until(Duration::from_secs(20), || !event(
            &exporter.records_so_far(),
            "recovered"
        )
        .is_empty()),
        "{:#?}",
        exporter.records_so_far()
    );
    let stopped = exporter.stop();
    assert_eq!(stopped.code, Some(0), "log: {:#?}", stopped.log);
    let degraded = event(&stopped.records, "degraded");
    let recovered = event(&stopped.records, "recovered");
    assert_eq!(
        (degraded.len(), recovered.len()),
        (1, 1),
        "{degraded:#?} {recovered:#?}"
    );
    assert_eq!(
        degraded[0]["reason"],
        format!("sink_blocked:syslog+tcp://127.0.0.1:{port}")
    );
    assert_eq!(degraded[0]["details"]["detail"], "connection refused");
    assert_eq!(degraded[0]["incident_id"], recovered[0]["incident_id"]);
    assert!(verify(&[("minimal", &stopped.lines.join("\n"))]).ok());
}

/// Redaction before export: addresses truncated, pod names pseudonymised
/// with a keyed hash (stable per pod), labels dropped, in every record; the
/// start record declares the rules (without the key).
#[test]
fn redaction_rules_apply_to_every_record_and_are_declared() {
    let _serial = serial();
    let node = Node::new_v4_only(3);
    let (a, b, c) = (&node.pods[0], &node.pods[1], &node.pods[2]);
    let dir = Dir::with_key("redact");
    let pseudo = dir.0.join("pseudo.key");
    std::fs::write(&pseudo, b"0123456789abcdef0123456789abcdef").unwrap();
    let manifests = ManifestsDir::new("redact");
    let pod = |name: &str, ip: &str| {
        format!(
            "- {{apiVersion: v1, kind: Pod, metadata: {{name: {name}, namespace: shop, uid: u-{name}, \
             labels: {{app: {name}}}}}, spec: {{serviceAccountName: sa-{name}}}, status: {{podIP: {ip}}}}}\n"
        )
    };
    manifests.write(
        "pods.yaml",
        &format!(
            "apiVersion: v1\nkind: List\nitems:\n{}{}{}",
            pod("web", "10.201.1.2"),
            pod("db", "10.201.2.2"),
            pod("cache", "10.201.3.2")
        ),
    );
    let config = TempConfig::new(&format!(
        "node_name: test-node\n{}redact:\n  - {{field: ip, action: truncate, prefix_v4: 16}}\n  \
         - {{field: pod.name, action: keyed_hash, key_file: {}}}\n  \
         - {{field: pod.labels, action: drop}}\n",
        dir.audit_yaml(),
        pseudo.display()
    ));
    let config_arg = config.arg();
    let manifests_arg = manifests.arg().display().to_string();
    let exporter = Exporter::start(
        &node.ns.name,
        &[
            "--config",
            &config_arg,
            "--manifests",
            &manifests_arg,
            "--active-timeout",
            "300s",
            "--idle-timeout",
            "300s",
        ],
    );
    let p1 = udp_exchange(&a.ns, &b.ns, b.v4, 2, 40, 1, 40);
    let p2 = udp_exchange(&a.ns, &c.ns, c.v4, 2, 40, 1, 40);
    let stopped = exporter.stop();
    assert_eq!(stopped.code, Some(0), "log: {:#?}", stopped.log);
    let flow = |port: u16| {
        stopped
            .records
            .iter()
            .find(|r| r["record"] == "flow" && r["src_port"] == port)
            .unwrap_or_else(|| panic!("no flow from {port}: {:#?}", stopped.records))
    };
    let (f1, f2) = (flow(p1), flow(p2));
    for f in [f1, f2] {
        assert_eq!(f["src_addr"], "10.201.0.0", "{f:#}");
        assert_eq!(f["dst_addr"], "10.201.0.0", "{f:#}");
        assert_eq!(f["source"]["labels"], serde_json::json!({}), "{f:#}");
        assert_eq!(f["source"]["service_account"], "sa-web", "not redacted");
    }
    let name = |f: &Value, end: &str| f[end]["pod"].as_str().unwrap().to_string();
    assert!(name(f1, "source").starts_with("h:") && name(f1, "source").len() == 18);
    // Stable per pod, distinct between pods, never the real name.
    assert_eq!(name(f1, "source"), name(f2, "source"));
    assert_ne!(name(f1, "destination"), name(f2, "destination"));
    assert!(
        !stopped
            .lines
            .iter()
            .any(|l| l.contains("\"web\"") || l.contains("10.201.1.2"))
    );
    // Declared in the start record, without the key.
    let start = stopped
        .records
        .iter()
        .find(|r| r["flowscribe"]["lifecycle"]["event"] == "start")
        .unwrap();
    let declared = &start["flowscribe"]["lifecycle"]["details"]["redaction"];
    assert_eq!(declared[0]["field"], "ip");
    assert_eq!(declared[0]["prefix_v4"], 16);
    assert_eq!(declared[1]["action"], "keyed_hash");
    assert!(declared[1].get("key_file").is_none());
}
