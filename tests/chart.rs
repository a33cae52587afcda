//! The Helm chart: rendered by Helm's own engine and validated (tests/chart/check.py, run with
//! the test venv's Python), its CRDs equal to crds/, and every rendered manifest accepted by the
//! sandbox's API server through `kubectl apply`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::sandbox::Sandbox;

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/dataroom-operator");

fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(venv.exists(), "{} is missing: run `make test`, which installs the test peers", venv.display());
    venv
}

#[test]
fn the_chart_ships_the_committed_crds() {
    let chart = std::fs::read_to_string(format!("{CHART}/crds/dataroom.dev.yaml")).unwrap();
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/dataroom.dev.yaml")).unwrap();
    assert!(
        chart == committed,
        "charts/dataroom-operator/crds differs from crds/: copy crds/dataroom.dev.yaml over it"
    );
}

#[test]
fn the_chart_ships_the_operators_user_roles() {
    let chart = std::fs::read_to_string(format!("{CHART}/files/user-roles.yaml")).unwrap();
    assert!(
        chart == dataroom_operator::admin::identity::USER_ROLES,
        "charts/dataroom-operator/files/user-roles.yaml differs: copy crates/dataroom-operator/src/admin/user-roles.yaml over it"
    );
}

#[test]
fn the_chart_renders_valid_least_privilege_manifests_that_the_api_server_accepts() {
    let out = tempfile::tempdir().unwrap();
    let check = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/chart/check.py"))
        .arg(CHART)
        .arg(out.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{report}\n{}", String::from_utf8_lossy(&check.stderr));
    println!("{report}");

    let sandbox = Sandbox::start();
    let namespaces = out.path().join("namespaces.yaml");
    std::fs::write(&namespaces, "apiVersion: v1\nkind: Namespace\nmetadata: {name: dataroom}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: rooms}\n").unwrap();
    sandbox.ok(&["apply", "-f", namespaces.to_str().unwrap()]);
    sandbox.ok(&["apply", "-f", &format!("{CHART}/crds")]);
    for set in ["defaults", "irsa", "ha", "metrics", "cert-manager", "own-tls", "trial"] {
        let file = out.path().join(format!("{set}.yaml"));
        let manifests = std::fs::read_to_string(&file).unwrap();
        let expected = manifests.matches("\nkind: ").count() + usize::from(manifests.starts_with("kind: "));
        let applied = sandbox.ok(&["apply", "-f", file.to_str().unwrap()]);
        let accepted = applied
            .lines()
            .filter(|l| l.ends_with(" created") || l.ends_with(" configured") || l.ends_with(" unchanged"))
            .count();
        assert_eq!(accepted, expected, "{set}: every manifest accepted:\n{applied}");
    }
    let deployment = sandbox.ok(&[
        "get",
        "deployment",
        "-n",
        "dataroom",
        "dr-dataroom-operator",
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(deployment, "1", "the last value set (trial) is what is installed");
    let budget = sandbox.ok(&["get", "ec2budget", "default", "-o", "jsonpath={.spec.maxInstances}"]);
    assert_eq!(budget, "10");
}

/// Every metric the Grafana dashboard and the alerts query is one the operator exports, and every
/// audit action they filter on is one the operator writes.
#[test]
fn the_dashboard_and_the_alerts_query_what_the_operator_exports() {
    // A family shows in the exposition once it has a sample: one each.
    let metrics = dataroom_operator::metrics::Metrics::default();
    drop(metrics.reconcile_started("Ec2Instance"));
    metrics.reconcile_failed("Ec2Instance", "Cloud");
    metrics.cloud_call("RunInstances", "ok");
    metrics.budget_refusals.get_or_create(&vec![("limit", "maxInstances")]).inc();
    metrics.audit_record("launch", "success");
    metrics.operation_finished("api.instance.exec", 0.01);
    let exported = metrics.render();
    let mut series = std::collections::BTreeSet::new();
    for line in exported.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').unwrap();
        match kind {
            "counter" => series.insert(format!("{name}_total")),
            "histogram" => ["_bucket", "_sum", "_count"].iter().all(|s| series.insert(format!("{name}{s}"))),
            _ => series.insert(name.to_string()),
        };
    }
    let dashboard = std::fs::read_to_string(format!("{CHART}/files/grafana-dashboard.json")).unwrap();
    let rules = std::fs::read_to_string(format!("{CHART}/templates/monitoring.yaml")).unwrap();
    let dashboard_json: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let queries: Vec<String> = dashboard_json["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_string())
        })
        .chain(rules.lines().filter_map(|l| l.trim().strip_prefix("expr: ")).map(str::to_string))
        .collect();
    assert!(queries.len() >= 20, "{} queries", queries.len());
    let metric = regex::Regex::new(r"\bdataroom_[a-z_]+").unwrap();
    let source = sources(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/crates/dataroom-operator/src")));
    for query in &queries {
        for name in metric.find_iter(query).map(|m| m.as_str()) {
            assert!(series.contains(name), "{query}: the operator exports no {name} (it exports {series:?})");
        }
        for action in actions(query) {
            assert!(
                source.contains(&format!("\"{action}\"")),
                "{query}: the operator writes no audit action {action}"
            );
        }
    }
}

/// The audit actions a query filters on: `action="a"`, and `action=~"p.(a|b)"` as `p.a`, `p.b`.
fn actions(query: &str) -> Vec<String> {
    let filter = regex::Regex::new(r#"action(=~?)"([^"]+)""#).unwrap();
    let mut found = Vec::new();
    for m in filter.captures_iter(query) {
        let value = &m[2];
        match value.split_once('(') {
            Some((prefix, rest)) => {
                let alternatives = rest.trim_end_matches(')');
                found.extend(alternatives.split('|').map(|a| format!("{prefix}{a}")));
            }
            None => found.push(value.to_string()),
        }
    }
    found
}

/// Every Rust source file under `dir`, concatenated.
fn sources(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        if path.is_dir() {
            text.push_str(&sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            text.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    text
}
