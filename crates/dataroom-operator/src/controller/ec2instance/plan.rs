//! The pure decision: from the desired spec and the observed instance to the one next step.

use crate::cloud::{Instance, InstanceState};
use crate::crd::{Ec2InstanceSpec, PowerState};

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// No live instance and one should run: launch (through the budget gate). `replaces` names
    /// an instance that was terminated out of band, which makes the launch a new idempotency token.
    Launch {
        replaces: Option<String>,
    },
    Start,
    Stop,
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

pub fn plan(spec: &Ec2InstanceSpec, image: Option<&str>, instance: Option<&Instance>) -> Step {
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
        (InstanceState::Running, true) => Step::Steady,
        (InstanceState::Running, false) => Step::Stop,
        (InstanceState::Stopping, _) => Step::Wait("the instance is stopping"),
        (InstanceState::Stopped, true) => Step::Start,
        (InstanceState::Stopped, false) => Step::Steady,
    }
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
        }
    }

    const IMG: Option<&str> = Some("ami-12345678");

    #[test]
    fn missing_instance_is_launched_only_when_it_should_run() {
        let run = spec(PowerState::Running);
        assert_eq!(plan(&run, IMG, None), Step::Launch { replaces: None });
        assert_eq!(plan(&spec(PowerState::Stopped), IMG, None), Step::Steady);
        assert!(matches!(plan(&run, None, None), Step::Invalid(m) if m.contains("imageId")));
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
            assert_eq!(plan(&spec(power), IMG, Some(&instance(state))), step, "{state:?} {power:?}");
        }
        for state in [Pending, Stopping, ShuttingDown] {
            for power in [PowerState::Running, PowerState::Stopped] {
                let step = plan(&spec(power), IMG, Some(&instance(state)));
                assert!(matches!(step, Step::Wait(_)), "{state:?} {power:?} gave {step:?}");
            }
        }
    }

    #[test]
    fn out_of_band_termination_relaunches_with_a_new_token() {
        let step = plan(&spec(PowerState::Running), IMG, Some(&instance(InstanceState::Terminated)));
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
        assert!(matches!(plan(&s, IMG, None), Step::Invalid(m) if m.contains("reserved")));
        s.tags = [("Name".to_string(), "x".to_string())].into();
        assert!(matches!(plan(&s, IMG, None), Step::Invalid(_)));
        s.tags = [("team".to_string(), "x".to_string())].into();
        assert_eq!(plan(&s, IMG, None), Step::Launch { replaces: None });
    }
}
