//! The committed CRDs match the code, and their schemas carry what the API server enforces.

use dataroom_operator::crd::{Ec2Budget, Ec2Instance, Ec2InstanceSpec, crds_yaml};
use kube::CustomResourceExt;
use serde_json::{Value, json};

#[test]
fn committed_crds_are_current() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/dataroom.dev.yaml")).unwrap();
    assert!(
        committed == crds_yaml(),
        "crds/dataroom.dev.yaml is stale: run `cargo run -- crdgen > crds/dataroom.dev.yaml`"
    );
}

fn spec_schema<K: CustomResourceExt>() -> Value {
    let crd = serde_json::to_value(K::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

#[test]
fn ec2instance_schema_has_defaults_enums_patterns_and_bounds() {
    let spec = spec_schema::<Ec2Instance>();
    let p = &spec["properties"];
    assert_eq!(p["instanceType"]["default"], "t3.micro");
    assert_eq!(p["powerState"]["default"], "Running");
    assert_eq!(p["powerState"]["enum"], json!(["Running", "Stopped"]));
    assert_eq!(p["deletionPolicy"]["enum"], json!(["Delete", "Retain"]));
    assert_eq!(p["imageId"]["pattern"], "^ami-[0-9a-f]{8,17}$");
    assert_eq!(p["rootVolumeGiB"]["minimum"], 1.0);
    assert!(p["instanceType"]["description"].as_str().unwrap().contains("maxInstanceType"));
    let crd = serde_json::to_value(Ec2Instance::crd()).unwrap();
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["ec2"]));
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["subresources"]["status"], json!({}));
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["State", "Type", "UpToDate", "Instance", "IP", "Age"]);
    assert_eq!(p["updatePolicy"]["enum"], json!(["Restart", "OnNextStop"]));
    assert_eq!(p["updatePolicy"]["default"], "Restart");
    // The fields a live instance cannot change, as transition rules a real API server enforces.
    let rules = spec["x-kubernetes-validations"].as_array().unwrap();
    let paths: Vec<&str> = rules.iter().map(|r| r["fieldPath"].as_str().unwrap()).collect();
    assert_eq!(paths, [".imageId", ".subnetId", ".dataRoom", ".rootVolumeGiB"]);
    assert!(rules.iter().all(|r| r["rule"].as_str().unwrap().contains("oldSelf")), "transition rules");
    // CEL's cost estimate needs bounded strings to compare.
    for field in ["imageId", "subnetId", "dataRoom"] {
        assert!(p[field]["maxLength"].as_u64().is_some(), "{field} has a maxLength");
    }
}

#[test]
fn an_empty_spec_takes_the_documented_defaults() {
    let spec: Ec2InstanceSpec = serde_json::from_value(json!({})).unwrap();
    assert_eq!(spec.instance_type, "t3.micro");
    assert_eq!(spec.power_state, dataroom_operator::crd::PowerState::Running);
    assert_eq!(spec.deletion_policy, dataroom_operator::crd::DeletionPolicy::Delete);
    let budget: dataroom_operator::crd::Ec2BudgetSpec = serde_json::from_value(json!({})).unwrap();
    assert_eq!(
        (budget.max_instances, budget.daily_spend_usd, budget.max_instance_type.as_str()),
        (5, 10.0, "t3.medium")
    );
    assert_eq!((budget.default_idle_timeout_minutes, budget.max_launches_per_day), (30, None));
    let crd = serde_json::to_value(Ec2Budget::crd()).unwrap();
    assert_eq!(crd["spec"]["scope"], "Cluster");
    assert_eq!(spec_schema::<Ec2Budget>()["properties"]["maxInstances"]["default"], 5);
}
