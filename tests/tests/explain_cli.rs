//! `flowscribe explain` end to end: the real binary against a manifests
//! directory, as a person (text), a script (JSON) and a pipeline (batch).
//! The cases follow the upstream network-policy e2e layout: namespaces x
//! and y, pods a and b, port 80. No traffic, no root needed.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::io::Write;
use std::process::{Command, Stdio};

use flowscribe_e2e::{ManifestsDir, flowscribe_bin};
use serde_json::Value;

const MANIFESTS: &str = r#"
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: x, labels: {ns: x}}}
- {apiVersion: v1, kind: Namespace, metadata: {name: y, labels: {ns: y}}}
- apiVersion: v1
  kind: Pod
  metadata: {name: a, namespace: x, uid: pod-xa, labels: {pod: a}}
  spec: {serviceAccountName: sa-a, containers: [{name: c, ports: [{name: serve-80, containerPort: 80}]}]}
  status: {podIP: 10.9.1.1}
- apiVersion: v1
  kind: Pod
  metadata: {name: b, namespace: y, uid: pod-yb, labels: {pod: b}}
  spec: {containers: [{name: c, ports: [{name: serve-80, containerPort: 80}]}]}
  status: {podIP: 10.9.2.1}
- apiVersion: v1
  kind: Pod
  metadata: {name: c, namespace: y, uid: pod-yc, labels: {pod: c}}
  spec: {containers: [{name: c}]}
  status: {podIP: 10.9.2.2}
- apiVersion: v1
  kind: Pod
  metadata: {name: pending, namespace: y, uid: pod-yp}
  spec: {containers: [{name: c}]}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: allow-from-x-to-b, namespace: y, uid: np-1, resourceVersion: "7", generation: 2}
  spec:
    podSelector: {matchLabels: {pod: b}}
    policyTypes: [Ingress]
    ingress:
    - from: [{namespaceSelector: {matchLabels: {ns: x}}}]
      ports: [{port: serve-80}]
- apiVersion: flowscribe.dev/v1alpha1
  kind: StagedNetworkPolicy
  metadata: {name: lockdown-c, namespace: y, uid: snp-1}
  spec: {podSelector: {matchLabels: {pod: c}}, policyTypes: [Ingress]}
"#;

fn explain(
    dir: &ManifestsDir,
    args: &[&str],
    stdin: Option<&str>,
) -> (Option<i32>, String, String) {
    let mut child = Command::new(flowscribe_bin())
        .arg("explain")
        .arg("--manifests")
        .arg(dir.arg())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn world(tag: &str) -> ManifestsDir {
    let dir = ManifestsDir::new(tag);
    dir.write("cluster.yaml", MANIFESTS);
    dir
}

#[test]
fn text_names_the_policy_the_rule_and_the_staged_change() {
    let dir = world("explain-cli-text");
    let (code, out, err) = explain(
        &dir,
        &["--from", "x/a", "--to", "y/b", "--port", "80"],
        None,
    );
    assert_eq!(code, Some(0), "stderr: {err}");
    assert!(
        out.starts_with("x/a (10.9.1.1) -> y/b (10.9.2.1) port 80/TCP: ALLOW\n"),
        "{out}"
    );
    assert!(
        out.contains("ingress of y/b: allow (allowed-by-rule)"),
        "{out}"
    );
    assert!(
        out.contains("NetworkPolicy y/allow-from-x-to-b (tier default): rule 0 matched -> allow"),
        "{out}"
    );
    assert!(
        out.contains("egress of x/a: allow (not-isolated-default-allow)"),
        "{out}"
    );
    assert!(out.contains("staged policies: none apply"), "{out}");
    // y/c is isolated by nothing enforced, but the staged lockdown-c would.
    let (code, out, err) = explain(
        &dir,
        &["--from", "x/a", "--to", "y/c", "--port", "80"],
        None,
    );
    assert_eq!(code, Some(0), "stderr: {err}");
    assert!(out.contains(": ALLOW\n"), "{out}");
    assert!(
        out.contains("staged policies applied as enforced: DENY (would change the verdict)"),
        "{out}"
    );
    assert!(
        out.contains("StagedNetworkPolicy y/lockdown-c (tier default): no rule matched -> deny"),
        "{out}"
    );
}

#[test]
fn json_answers_carry_both_sides_and_the_pending_verdict() {
    let dir = world("explain-cli-json");
    let (code, out, err) = explain(
        &dir,
        &[
            "--from", "y/c", "--to", "y/b", "--port", "80", "--output", "json",
        ],
        None,
    );
    assert_eq!(code, Some(0), "stderr: {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    // y/c is not in a namespace labelled ns=x: isolated, no rule matches.
    assert_eq!(v["verdict"], "deny");
    assert_eq!(v["ingress"]["reason"], "isolated-no-match");
    assert_eq!(v["ingress"]["hits"][0]["name"], "allow-from-x-to-b");
    assert_eq!(v["ingress"]["hits"][0]["resource_version"], "7");
    assert_eq!(v["ingress"]["hits"][0]["rule_index"], Value::Null);
    assert_eq!(v["egress"]["verdict"], "allow");
    // The staged policy isolates c for ingress only; c is the source here.
    assert_eq!(v["pending_verdict"], Value::Null);
    assert_eq!(v["would_change"], false);
    assert_eq!(v["source"]["pod"], "c");
    assert_eq!(v["destination"]["namespace"], "y");
}

#[test]
fn batch_answers_every_line_in_order_and_marks_the_ones_it_cannot() {
    let dir = world("explain-cli-batch");
    let input = [
        r#"{"from":"x/a","to":"y/b","port":80,"protocol":"TCP"}"#,
        r#"{"from":"x/a","to":"y/b","port":81,"protocol":"TCP"}"#,
        r#"{"from":"10.9.1.1","to":"10.9.2.1","port":80,"protocol":"UDP"}"#,
        r#"{"from":"x/a","to":"y/pending","port":80}"#,
        r#"{"from":"x/nobody","to":"y/b","port":80}"#,
        "",
        r#"{"from":"x/a","to":"y/c","port":80,"protocol":"SCTP"}"#,
    ]
    .join("\n");
    let (code, out, err) = explain(&dir, &["--batch", "-"], Some(&input));
    assert_eq!(
        code,
        Some(1),
        "two questions cannot be answered; stderr: {err}"
    );
    assert!(err.contains("2 question(s) could not be answered"), "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6, "one answer per non-empty line: {out}");
    assert_eq!(lines[0]["verdict"], "allow");
    assert_eq!(lines[0]["pending_verdict"], Value::Null);
    // Port 81 is not the named port serve-80.
    assert_eq!(lines[1]["verdict"], "deny");
    assert_eq!(lines[1]["ingress"]["reason"], "isolated-no-match");
    // Addresses resolve to the same pods; UDP does not match the TCP port rule.
    assert_eq!(lines[2]["source"]["pod"], "a");
    assert_eq!(lines[2]["verdict"], "deny");
    assert!(
        lines[3]["error"]
            .as_str()
            .unwrap()
            .contains("pod y/pending has no address"),
        "{}",
        lines[3]
    );
    assert!(
        lines[4]["error"]
            .as_str()
            .unwrap()
            .contains("no pod x/nobody"),
        "{}",
        lines[4]
    );
    // y/c is selected by no enforced policy: not isolated; staged, it is.
    assert_eq!(lines[5]["verdict"], "allow");
    assert_eq!(lines[5]["ingress"]["reason"], "not-isolated-default-allow");
    assert_eq!(lines[5]["pending_verdict"], "deny");
    assert_eq!(lines[5]["would_change"], true);
    assert_eq!(
        lines[5]["pending"]["ingress"]["hits"][0]["name"],
        "lockdown-c"
    );
}

#[test]
fn a_question_that_cannot_be_answered_exits_2_with_the_reason() {
    let dir = world("explain-cli-usage");
    let (code, _, err) = explain(
        &dir,
        &[
            "--from",
            "x/a",
            "--to",
            "y/b",
            "--port",
            "80",
            "--protocol",
            "QUIC",
        ],
        None,
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown protocol \"QUIC\""), "{err}");
    let (code, _, err) = explain(
        &dir,
        &["--from", "x/a", "--to", "y/zz", "--port", "80"],
        None,
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("no pod y/zz"), "{err}");
}
