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
