//! The binary's command line: generated CRDs, and clear refusals of bad settings.

use std::process::Command;

fn operator(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dataroom-operator")).args(args).output().unwrap()
}

#[test]
fn crdgen_prints_the_committed_crds() {
    let out = operator(&["crdgen"]);
    assert!(out.status.success());
    let committed = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/dataroom.dev.yaml")).unwrap();
    assert!(out.stdout == committed, "crds/dataroom.dev.yaml is stale: run `make crds`");
}

#[test]
fn bad_settings_are_refused_before_anything_starts() {
    let out = operator(&["run", "--default-image-id", "ubuntu"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected an AMI id"));
    let out = operator(&["run", "--poll-interval", "0"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("between 1 and 3600"));
    let out = operator(&["run", "--max-concurrent-reconciles", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1..=1000"), "{:?}", out.stderr);
    let out = operator(&["run", "--dns-provider", "external-dns", "--dns-zone", "Rooms_Example"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a DNS zone"), "{:?}", out.stderr);
    let out = operator(&["run", "--dns-provider", "external-dns"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--dns-provider needs --dns-zone"),
        "{:?}",
        out.stderr
    );
    let out = operator(&["run", "--dns-provider", "route53", "--dns-zone", "rooms.example.com"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs --route53-hosted-zone-id"),
        "{:?}",
        out.stderr
    );
    let out = operator(&["run", "--dns-zone", "rooms.example.com"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--dns-zone needs --dns-provider"),
        "{:?}",
        out.stderr
    );
}

#[test]
fn a_bad_price_table_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let prices = dir.path().join("prices.yaml");
    std::fs::write(&prices, "us-east-1: [t3.micro]\n").unwrap();
    let out = operator(&["run", "--price-table", prices.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("prices.yaml") && stderr.contains("usd-per-hour"), "{stderr}");
}

/// Keys and tokens never cross a network in the clear unless the operator is told they may.
#[test]
fn plain_http_beyond_loopback_needs_insecure_http() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "ops sha256:".to_string() + &"ab".repeat(32) + "\n").unwrap();
    let keys = keys.to_str().unwrap();
    let out = operator(&["run", "--admin-keys", keys, "--http-addr", "0.0.0.0:18099"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("plain HTTP on 0.0.0.0:18099") && stderr.contains("--insecure-http"), "{stderr}");
    // With the flag, the refusal is gone: the run gets as far as looking for a cluster.
    let empty = dir.path().join("no-kubeconfig");
    let out = Command::new(env!("CARGO_BIN_EXE_dataroom-operator"))
        .args(["run", "--admin-keys", keys, "--http-addr", "0.0.0.0:18099", "--insecure-http"])
        .env("KUBECONFIG", &empty)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("plain HTTP"), "{:?}", out.stderr);
}
