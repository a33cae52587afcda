//! End to end: the real binary in sandbox mode, driven by the real kubectl.

mod support;

use std::time::Duration;

use support::sandbox::Sandbox;

fn wait_state(sandbox: &Sandbox, state: &str) {
    let condition = format!("--for=jsonpath={{.status.state}}={state}");
    sandbox.ok(&["wait", "ec2/web", &condition, "--timeout=60s"]);
}

#[test]
fn an_ec2instance_lives_its_whole_life_through_kubectl() {
    let sandbox = Sandbox::start();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ec2instance.yaml");
    assert!(sandbox.ok(&["apply", "-f", examples]).contains("ec2instance.dataroom.dev/web created"));
    wait_state(&sandbox, "running");
    let table = sandbox.ok(&["get", "ec2"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATE", "TYPE", "UPTODATE", "INSTANCE", "IP", "AGE"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["web", "running", "t3.micro", "True"]);
    assert!(row[4].starts_with("i-") && row[5].starts_with("127."), "{table}");
    let ip = sandbox.ok(&["get", "ec2", "web", "-o", "jsonpath={.status.publicIp}"]);
    assert!(!ip.is_empty());

    sandbox.ok(&["patch", "ec2", "web", "--type", "merge", "-p", r#"{"spec":{"powerState":"Stopped"}}"#]);
    wait_state(&sandbox, "stopped");
    sandbox.ok(&["patch", "ec2", "web", "--type", "merge", "-p", r#"{"spec":{"powerState":"Running"}}"#]);
    wait_state(&sandbox, "running");

    // The bug of issue 16, as a user met it: a type change is made (stop, change, start), and the
    // status names the new type only once EC2 runs it.
    sandbox.ok(&["patch", "ec2", "web", "--type", "merge", "-p", r#"{"spec":{"instanceType":"t3.small"}}"#]);
    sandbox.ok(&["wait", "ec2/web", "--for=jsonpath={.status.instanceType}=t3.small", "--timeout=60s"]);
    sandbox.ok(&["wait", "ec2/web", "--for=condition=UpToDate", "--timeout=60s"]);
    wait_state(&sandbox, "running");
    let row = sandbox.ok(&["get", "ec2", "web", "--no-headers"]);
    assert_eq!(
        row.split_whitespace().take(4).collect::<Vec<_>>(),
        ["web", "running", "t3.small", "True"],
        "{row}"
    );
    // What cannot change is refused at the door, as a real API server refuses it.
    let refused = sandbox.kubectl(&[
        "patch",
        "ec2",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"imageId":"ami-99999999"}}"#,
    ]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("spec.imageId is immutable"), "{stderr}");

    let described = sandbox.ok(&["describe", "ec2", "web"]);
    for reason in ["Launched", "Stopped", "Started", "Updated"] {
        assert!(described.contains(reason), "describe shows the {reason} event:\n{described}");
    }
    assert!(!described.contains("PRIVATE KEY"));
    let events = sandbox.ok(&["get", "events"]);
    let header: Vec<&str> = events.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], "{events}");
    let launched = events.lines().find(|l| l.contains("Launched")).unwrap_or_else(|| panic!("{events}"));
    let row: Vec<&str> = launched.split_whitespace().collect();
    assert_eq!(&row[1..4], ["Normal", "Launched", "ec2instance/web"], "{events}");

    let (status, metrics) = support::sandbox::http_get(&format!("{}/metrics", sandbox.admin)).unwrap();
    assert_eq!(status, 200);
    for family in [
        "dataroom_reconciles_total{kind=\"Ec2Instance\"}",
        "dataroom_cloud_calls_total{operation=\"RunInstances\",outcome=\"ok\"} 1",
        "dataroom_budget_max_instances 5",
        "dataroom_audit_records_total{action=\"launch\",outcome=\"success\"} 1",
        "dataroom_cloud_calls_total{operation=\"DescribeInstances\",outcome=\"ok\"}",
        "dataroom_reconcile_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(family), "/metrics lacks {family}:\n{metrics}");
    }
    assert_eq!(support::sandbox::http_get(&format!("{}/healthz", sandbox.admin)).unwrap().0, 200);

    // The admin API, with the key the sandbox wrote (and only with it).
    let key = std::fs::read_to_string(sandbox.dir.path().join("admin-key")).unwrap();
    let url = format!("{}/api/ec2/instances/web", sandbox.admin);
    let auth = format!("Authorization: Bearer {}\r\n", key.trim());
    let (status, body) = support::sandbox::http_get_with(&url, &auth).unwrap();
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (view["instance_type"].as_str(), view["requested_instance_type"].as_str()),
        (Some("t3.small"), Some("t3.small"))
    );
    assert_eq!(
        (status, view["status"].as_str(), view["public_ip"].as_str()),
        (
            200,
            Some("running"),
            Some(sandbox.ok(&["get", "ec2", "web", "-o", "jsonpath={.status.publicIp}"]).as_str())
        )
    );
    assert_eq!(support::sandbox::http_get(&url).unwrap().0, 401, "no key, no API");

    let deleted = sandbox.ok(&["delete", "ec2", "web", "--timeout=30s"]);
    assert!(deleted.contains("deleted"));
    let gone = sandbox.kubectl(&["get", "ec2", "web"]);
    assert!(String::from_utf8_lossy(&gone.stderr).contains("NotFound"));
    let audit = std::fs::read_to_string(sandbox.dir.path().join("audit.jsonl")).unwrap();
    let actions: Vec<String> = audit
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["action"].as_str().unwrap().to_string()
        })
        .collect();
    // Launch; stop and start; the type change's stop, update and start; termination.
    let each_twice = [
        "launch",
        "launch",
        "stop",
        "stop",
        "start",
        "start",
        "stop",
        "stop",
        "update",
        "update",
        "start",
        "start",
        "terminate",
        "terminate",
    ];
    assert_eq!(actions[0], "security-group.ensure", "the operator's group, before the first launch");
    assert_eq!(actions[1..], each_twice, "each EC2 mutation: its intent (started), then its outcome");
}

#[test]
fn an_invalid_manifest_is_rejected_with_the_field_named() {
    let sandbox = Sandbox::start();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: dataroom.dev/v1alpha1\nkind: Ec2Instance\nmetadata:\n  name: bad\nspec:\n  powerState: Paused\n  instanceType: t3.micro\n").unwrap();
    let out = sandbox.kubectl(&["apply", "-f", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("spec.powerState: Unsupported value: \"Paused\""), "{stderr}");
    std::fs::write(
        &bad,
        "apiVersion: dataroom.dev/v1alpha1\nkind: Ec2Instance\nmetadata:\n  name: bad\nspec:\n  typo: 1\n",
    )
    .unwrap();
    let stderr = String::from_utf8(sandbox.kubectl(&["apply", "-f", bad.to_str().unwrap()]).stderr).unwrap();
    assert!(stderr.contains("unknown field \"spec.typo\""), "{stderr}");
    assert!(String::from_utf8_lossy(&sandbox.kubectl(&["get", "ec2", "bad"]).stderr).contains("NotFound"));
}

#[test]
fn a_state_directory_is_resumed() {
    let sandbox = Sandbox::start();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ec2instance.yaml");
    sandbox.ok(&["apply", "-f", examples]);
    wait_state(&sandbox, "running");
    let id = sandbox.ok(&["get", "ec2", "web", "-o", "jsonpath={.status.instanceId}"]);
    let sandbox = sandbox.restart();
    wait_state(&sandbox, "running");
    assert_eq!(
        sandbox.ok(&["get", "ec2", "web", "-o", "jsonpath={.status.instanceId}"]),
        id,
        "same instance, not a new one"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(sandbox.dir.path().join("ec2.json")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the simulated key store is private");
    sandbox.ok(&["delete", "ec2", "web", "--timeout=30s"]);
    let audit = std::fs::read_to_string(sandbox.dir.path().join("audit.jsonl")).unwrap();
    // The operator's security group, then the launch and the termination, each as its intent and
    // its outcome.
    assert!(audit.lines().count() == 5 && audit.contains("\"action\":\"terminate\""), "{audit}");
}

/// The README's walk-through, run as written (the `export KUBECONFIG=` line is the test's own).
#[test]
fn the_readme_walkthrough_works_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = readme.split("<!-- walkthrough -->").nth(1).expect("README marks its walk-through");
    let lines: Vec<&str> = block
        .lines()
        .map(|l| l.split(" #").next().unwrap().trim())
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("```")
                && !l.starts_with('#')
                && !l.starts_with("export KUBECONFIG")
        })
        .collect();
    assert!(lines.len() >= 5, "{lines:?}");
    let mut sandbox = Sandbox::start();
    for line in &lines {
        // The README's ports are the sandbox's defaults; this one runs on free ones.
        let line = line.replace("-p 5354", &format!("-p {}", sandbox.dns));
        let out = sandbox.shell(&line);
        assert!(out.status.success(), "README line failed: {line}\n{}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(sandbox.interrupt(), "Ctrl-C stops the sandbox cleanly");
    std::thread::sleep(Duration::from_millis(10));
}

/// Sixteen rooms applied and stopped at once, twenty times over: each boot step and each change
/// of phase is done and audited exactly once per room and burst, however the watch events,
/// requeues and status writes of a burst interleave (a reconcile working from an object older
/// than its own last write once stopped a room twice).
#[test]
fn a_burst_of_rooms_records_each_step_once() {
    const ROOMS: usize = 16;
    const BURSTS: usize = 20;
    let sandbox = Sandbox::start();
    let rooms = |state: &str| {
        let mut manifest = String::from(
            "apiVersion: dataroom.dev/v1alpha1\nkind: Ec2Budget\nmetadata:\n  name: default\nspec:\n  maxInstances: 100\n  dailySpendUsd: 1000\n",
        );
        for n in 0..ROOMS {
            manifest.push_str(&format!(
                "---\napiVersion: dataroom.dev/v1alpha1\nkind: DataRoom\nmetadata:\n  name: room-{n:02}\nspec:\n  state: {state}\n  config:\n    inline: {{room: {n}}}\n  healthCheck: {{periodSeconds: 1}}\n"
            ));
        }
        let file = sandbox.dir.path().join(format!("rooms-{state}.yaml"));
        std::fs::write(&file, manifest).unwrap();
        sandbox.ok(&["apply", "-f", file.to_str().unwrap()]);
    };
    let wait_all = |phase: &str| {
        let started = std::time::Instant::now();
        loop {
            let phases = sandbox.ok(&["get", "dr", "-o", "jsonpath={.items[*].status.phase}"]);
            if phases.split_whitespace().filter(|p| *p == phase).count() == ROOMS {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "not all {phase}: {phases}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    for _ in 0..BURSTS {
        rooms("Running");
        wait_all("Ready");
        rooms("Stopped");
        wait_all("Stopped");
    }
    // Late duplicates would come within a requeue or two.
    std::thread::sleep(Duration::from_secs(3));
    let audit = std::fs::read_to_string(sandbox.dir.path().join("audit.jsonl")).unwrap();
    let mut counts = std::collections::BTreeMap::<(String, String), usize>::new();
    for line in audit.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        if r["outcome"] == "started" {
            continue;
        }
        let (action, target) = (r["action"].as_str().unwrap(), r["target"].as_str().unwrap());
        *counts.entry((target.to_string(), action.to_string())).or_default() += 1;
    }
    for n in 0..ROOMS {
        let room = format!("dataroom/default/room-{n:02}");
        let instance = format!("ec2instance/default/dr-room-{n:02}");
        for (target, action) in [
            (&room, "boot"),
            (&room, "configure"),
            (&room, "ready"),
            (&room, "stop"),
            (&room, "terminate"),
            (&room, "stopped"),
            (&instance, "launch"),
            (&instance, "ssh.host_key.pinned"),
            (&instance, "stop"),
            (&instance, "terminate"),
        ] {
            let seen = counts.get(&(target.clone(), action.to_string())).copied().unwrap_or(0);
            assert_eq!(seen, BURSTS, "{action} on {target} in {BURSTS} bursts: {counts:?}");
        }
    }
}

/// kubectl's typed create commands send protobuf: each works as on a cluster, and what it wrote
/// reads back.
#[test]
fn kubectl_create_commands_work_as_on_a_cluster() {
    let sandbox = Sandbox::start();
    sandbox.ok(&["create", "namespace", "team-b"]);
    sandbox.ok(&["-n", "team-b", "create", "secret", "generic", "s", "--from-literal=a=b"]);
    sandbox.ok(&["-n", "team-b", "create", "configmap", "c", "--from-literal=k=v"]);
    sandbox.ok(&["-n", "team-b", "label", "secret", "s", "dataroom.dev/pushable=true"]);
    assert_eq!(sandbox.ok(&["-n", "team-b", "get", "secret", "s", "-o", "jsonpath={.data.a}"]), "Yg==");
    assert_eq!(sandbox.ok(&["-n", "team-b", "get", "configmap", "c", "-o", "jsonpath={.data.k}"]), "v");
    let labels = sandbox.ok(&["-n", "team-b", "get", "secret", "s", "-o", "jsonpath={.metadata.labels}"]);
    assert!(labels.contains("pushable"), "{labels}");

    // A server-side dry run validates and creates nothing, so nothing is launched.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ec2instance.yaml");
    let dry = sandbox.ok(&["-n", "team-b", "apply", "--dry-run=server", "-f", example]);
    assert!(dry.contains("(server dry run)"), "{dry}");
    let listed = sandbox.kubectl(&["-n", "team-b", "get", "ec2", "-o", "name"]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout), "", "no object was created");
}

/// kubectl pages through a long list (`--chunk-size`; 500 by default) by following `continue`.
#[test]
fn kubectl_pages_through_a_long_list() {
    let sandbox = Sandbox::start();
    // A namespace of their own: `default` holds the sandbox's audit checkpoint ConfigMap.
    sandbox.ok(&["create", "namespace", "pages"]);
    for n in 0..5 {
        sandbox.ok(&["-n", "pages", "create", "configmap", &format!("page-{n}"), "--from-literal=n=1"]);
    }
    let out = sandbox.kubectl(&["-n", "pages", "get", "configmaps", "--chunk-size=2", "-o", "name", "-v=6"]);
    let (names, log) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let listed: Vec<&str> = names.lines().collect();
    assert_eq!(listed, (0..5).map(|n| format!("configmap/page-{n}")).collect::<Vec<_>>(), "{log}");
    let pages = log.lines().filter(|l| l.contains("/configmaps?") && l.contains("limit=2")).count();
    assert_eq!(pages, 3, "three pages of two, each after the last one's continue token:\n{log}");
    assert_eq!(log.matches("continue=").count(), 2, "{log}");
}
