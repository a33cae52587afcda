//! The pure decision: from the desired spec and the observed instance to the one next step.

use super::update::{Difference, Fix, differences};
use crate::cloud::{Instance, InstanceState};
use crate::crd::{Ec2InstanceSpec, PowerState, UpdatePolicy};

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// No live instance and one should run: launch (through the budget gate). `replaces` names
    /// an instance that was terminated out of band, which makes the launch a new idempotency token.
    Launch {
        replaces: Option<String>,
    },
    Start,
    Stop,
    /// Make these changes now (in place on a running instance, or any on a stopped one).
    Update(Vec<Difference>),
    /// Stop the running instance so that changes EC2 takes only from a stopped one can be made;
    /// `instance_type` is the new type, which the budget must allow before anything is stopped.
    StopToUpdate {
        instance_type: Option<String>,
    },
    /// A transition is under way; look again soon.
    Wait(&'static str),
    /// Observed matches desired.
    Steady,
    /// The spec can never be satisfied as written; the message says what to change.
    Invalid(String),
}

/// Tag keys users may not set: the operator's own, and `Name`, which it derives.
pub fn reserved_tag(key: &str) -> bool {
    key.starts_with("dataroom.dev/") || key.starts_with("aws:") || key == "Name"
}

/// The next step from the spec (with the image a launch would use and the security groups the
/// instance should have, when known) and the instance EC2 has.
pub fn plan(
    spec: &Ec2InstanceSpec,
    image: Option<&str>,
    groups: Option<&[String]>,
    instance: Option<&Instance>,
) -> Step {
    if let Some(key) = spec.tags.keys().find(|k| reserved_tag(k)) {
        return Step::Invalid(format!("spec.tags: the key {key:?} is reserved; remove it"));
    }
    let want_running = spec.power_state == PowerState::Running;
    let Some(instance) = instance else {
        return match (want_running, image) {
            (false, _) => Step::Steady,
            (true, None) => Step::Invalid(
                "spec.imageId is not set and the operator has no default image (--default-image-id)".into(),
            ),
            (true, Some(_)) => Step::Launch { replaces: None },
        };
    };
    match (instance.state, want_running) {
        (InstanceState::Terminated, true) => Step::Launch { replaces: Some(instance.id.clone()) },
        (InstanceState::Terminated, false) => Step::Steady,
        (InstanceState::ShuttingDown, _) => Step::Wait("the instance is shutting down"),
        (InstanceState::Pending, true) => Step::Wait("the instance is booting"),
        (InstanceState::Pending, false) => {
            Step::Wait("the instance is booting; it will be stopped once running")
        }
        (InstanceState::Running, true) => update_running(spec, groups, instance),
        // Changes that need a stop are made once it has stopped.
        (InstanceState::Running, false) => Step::Stop,
        (InstanceState::Stopping, _) => Step::Wait("the instance is stopping"),
        (InstanceState::Stopped, want_running) => {
            let fixes = fixes(spec, groups, instance, |_| true);
            match (fixes.is_empty(), want_running) {
                (false, _) => Step::Update(fixes),
                (true, true) => Step::Start,
                (true, false) => Step::Steady,
            }
        }
    }
}

/// A running instance that should run: in-place changes first, then (under `Restart`) a stop
/// for the rest; `OnNextStop` leaves those for the next stop.
fn update_running(spec: &Ec2InstanceSpec, groups: Option<&[String]>, instance: &Instance) -> Step {
    let in_place = fixes(spec, groups, instance, |fix| !fix.needs_stop());
    if !in_place.is_empty() {
        return Step::Update(in_place);
    }
    let at_stop = fixes(spec, groups, instance, Fix::needs_stop);
    match (at_stop.is_empty(), spec.update_policy) {
        (false, UpdatePolicy::Restart) => {
            let instance_type = at_stop.iter().find_map(|d| match &d.fix {
                Fix::Modify(crate::cloud::Modification::InstanceType { instance_type }) => {
                    Some(instance_type.clone())
                }
                _ => None,
            });
            Step::StopToUpdate { instance_type }
        }
        _ => Step::Steady,
    }
}

/// The differences `take` selects among those that can be closed at all.
fn fixes(
    spec: &Ec2InstanceSpec,
    groups: Option<&[String]>,
    instance: &Instance,
    take: impl Fn(&Fix) -> bool,
) -> Vec<Difference> {
    let found = differences(spec, groups, instance).into_iter();
    found.filter(|d| d.fix != Fix::Immutable && take(&d.fix)).collect()
}

/// The ClientToken for a launch: the owner UID, or owner UID and the replaced instance's id for a
/// relaunch (EC2 would otherwise answer with the terminated instance). Deterministic, so a retry
/// after a crash reuses it.
pub fn client_token(owner_uid: &str, replaces: Option<&str>) -> String {
    match replaces {
        None => owner_uid.to_string(),
        Some(old) => format!("{owner_uid}-{old}"),
    }
}

/// One key pair per instance owner, named so that it is found again after a crash.
pub fn key_pair_name(owner_uid: &str) -> String {
    format!("dataroom-{owner_uid}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn spec(power: PowerState) -> Ec2InstanceSpec {
        serde_json::from_value(serde_json::json!({ "powerState": power })).unwrap()
    }

    fn instance(state: InstanceState) -> Instance {
        Instance {
            id: "i-1".into(),
            state,
            instance_type: "t3.micro".into(),
            image_id: "ami-12345678".into(),
            key_name: None,
            public_ip: None,
            private_ip: None,
            launch_time: None,
            tags: BTreeMap::new(),
            security_group_ids: vec![],
        }
    }

    const IMG: Option<&str> = Some("ami-12345678");

    #[test]
    fn missing_instance_is_launched_only_when_it_should_run() {
        let run = spec(PowerState::Running);
        assert_eq!(plan(&run, IMG, None, None), Step::Launch { replaces: None });
        assert_eq!(plan(&spec(PowerState::Stopped), IMG, None, None), Step::Steady);
        assert!(matches!(plan(&run, None, None, None), Step::Invalid(m) if m.contains("imageId")));
    }

    #[test]
    fn power_state_converges() {
        use InstanceState::*;
        let cases = [
            (Running, PowerState::Running, Step::Steady),
            (Running, PowerState::Stopped, Step::Stop),
            (Stopped, PowerState::Running, Step::Start),
            (Stopped, PowerState::Stopped, Step::Steady),
            (Terminated, PowerState::Stopped, Step::Steady),
        ];
        for (state, power, step) in cases {
            assert_eq!(plan(&spec(power), IMG, None, Some(&instance(state))), step, "{state:?} {power:?}");
        }
        for state in [Pending, Stopping, ShuttingDown] {
            for power in [PowerState::Running, PowerState::Stopped] {
                let step = plan(&spec(power), IMG, None, Some(&instance(state)));
                assert!(matches!(step, Step::Wait(_)), "{state:?} {power:?} gave {step:?}");
            }
        }
    }

    #[test]
    fn out_of_band_termination_relaunches_with_a_new_token() {
        let step = plan(&spec(PowerState::Running), IMG, None, Some(&instance(InstanceState::Terminated)));
        assert_eq!(step, Step::Launch { replaces: Some("i-1".into()) });
        assert_eq!(client_token("u", None), "u");
        assert_eq!(client_token("u", Some("i-1")), "u-i-1");
        assert!(
            client_token("c0ffee00-1111-2222-3333-444455556666", Some("i-0123456789abcdef0")).len() <= 64
        );
    }

    #[test]
    fn reserved_tags_are_refused() {
        let mut s = spec(PowerState::Running);
        s.tags.insert("dataroom.dev/owner-uid".into(), "x".into());
        assert!(matches!(plan(&s, IMG, None, None), Step::Invalid(m) if m.contains("reserved")));
        s.tags = [("Name".to_string(), "x".to_string())].into();
        assert!(matches!(plan(&s, IMG, None, None), Step::Invalid(_)));
        s.tags = [("team".to_string(), "x".to_string())].into();
        assert_eq!(plan(&s, IMG, None, None), Step::Launch { replaces: None });
    }

    #[test]
    fn spec_changes_are_made_in_place_at_a_restart_or_at_the_next_stop() {
        use crate::cloud::Modification::{InstanceType, Tags};
        use InstanceState::*;
        let with = |power: &str, policy: &str, fields: serde_json::Value| -> Ec2InstanceSpec {
            let mut all = serde_json::json!({ "powerState": power, "updatePolicy": policy });
            all.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
            serde_json::from_value(all).unwrap()
        };
        let small = serde_json::json!({ "instanceType": "t3.small" });
        let small_tagged = serde_json::json!({ "instanceType": "t3.small", "tags": { "env": "prod" } });
        let retype = Fix::Modify(InstanceType { instance_type: "t3.small".into() });
        let tag = Fix::Modify(Tags { set: [("env".into(), "prod".into())].into(), remove: vec![] });
        let stop_to_update = Err(Step::StopToUpdate { instance_type: Some("t3.small".into()) });
        // Ok: the fixes of an Update; Err: any other step.
        let cases = [
            (Running, "Running", "Restart", small.clone(), stop_to_update),
            (Running, "Running", "OnNextStop", small.clone(), Err(Step::Steady)),
            // In-place changes come first, the stop after.
            (Running, "Running", "Restart", small_tagged.clone(), Ok(vec![tag.clone()])),
            (Running, "Running", "OnNextStop", small_tagged, Ok(vec![tag])),
            // Asked to stop: stopped first, changed after.
            (Running, "Stopped", "Restart", small.clone(), Err(Step::Stop)),
            // A stopped instance is changed without being started, then started if it should run.
            (Stopped, "Stopped", "Restart", small.clone(), Ok(vec![retype.clone()])),
            (Stopped, "Running", "OnNextStop", small.clone(), Ok(vec![retype])),
            (Stopped, "Running", "Restart", serde_json::json!({}), Err(Step::Start)),
            // What cannot change is left as it is (the condition says so).
            (
                Running,
                "Running",
                "Restart",
                serde_json::json!({ "imageId": "ami-99999999" }),
                Err(Step::Steady),
            ),
            (Pending, "Running", "Restart", small, Err(Step::Wait("the instance is booting"))),
        ];
        for (state, power, policy, fields, step) in cases {
            let spec = with(power, policy, fields.clone());
            let planned = match plan(&spec, IMG, None, Some(&instance(state))) {
                Step::Update(differences) => Ok(differences.into_iter().map(|d| d.fix).collect()),
                other => Err(other),
            };
            assert_eq!(planned, step, "{state:?} {power} {policy} {fields}");
        }
    }
}
