//! The pure decision: from what a DataRoom wants and what its instance is doing to the one next
//! step, and the phase the room is in while that step runs.

use std::fmt;

use crate::crd::{DataRoomSpec, DataRoomState, PowerState};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Provisioning,
    Configuring,
    Ready,
    Stopping,
    Stopped,
    Failed,
    BudgetBlocked,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The room's Ec2Instance as the plan needs it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Child {
    /// Owned by this room (a controller ownerReference with its UID).
    pub ours: bool,
    pub deleting: bool,
    pub power: PowerState,
    /// EC2 state (`pending`, `running`, …); `None` before launch.
    pub state: Option<String>,
    /// Why the budget holds it back, if it does.
    pub blocked: Option<String>,
    /// Why its controller cannot satisfy it (a bad image, say), if it cannot.
    pub broken: Option<String>,
    /// Its instance type or image is not what the room now asks for.
    pub stale: bool,
}

/// Everything the decision reads.
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    pub spec: &'a DataRoomSpec,
    pub deleting: bool,
    pub child: Option<Child>,
    /// What is pushed to the running instance matches the content now (same hash).
    pub configured: bool,
    /// Minutes without activity, and the timeout (`None`: disabled).
    pub idle_minutes: f64,
    pub idle_timeout_minutes: Option<u32>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Create the Ec2Instance.
    Create,
    /// Set the Ec2Instance's power state back to Running.
    PowerOn,
    /// Nothing to do but wait, in `Phase`, for the reason given.
    Wait(Phase, String),
    /// Push the configuration and files over SFTP.
    Configure,
    /// GET the health endpoint; the answer decides Configuring, Ready or Failed.
    CheckHealth,
    /// Idle too long: set `spec.state` to Stopped.
    IdleStop,
    /// Stop the instance before it is terminated.
    PowerOff,
    /// Delete the (stopped or never launched) Ec2Instance, which terminates the instance.
    Delete,
    /// No instance, none wanted.
    Stopped,
    /// An Ec2Instance of the room's name belongs to something else.
    Conflict,
}

pub fn plan(facts: &Facts) -> Step {
    let want_running = facts.spec.state == DataRoomState::Running && !facts.deleting;
    let Some(child) = &facts.child else {
        return if want_running { Step::Create } else { Step::Stopped };
    };
    if !child.ours {
        return Step::Conflict;
    }
    let state = child.state.as_deref();
    if child.deleting {
        let why = "the instance is being terminated".to_string();
        return Step::Wait(if want_running { Phase::Provisioning } else { Phase::Stopping }, why);
    }
    if !want_running {
        return match state {
            Some("running" | "pending") if child.power == PowerState::Running => Step::PowerOff,
            // Asked to stop and not stopped yet: the instance is shut down before it is terminated.
            Some(s @ ("running" | "pending" | "stopping" | "shutting-down")) => {
                Step::Wait(Phase::Stopping, format!("the instance is {s}; waiting for it to stop"))
            }
            _ => Step::Delete,
        };
    }
    if child.power == PowerState::Stopped {
        return Step::PowerOn;
    }
    if let Some(why) = &child.broken {
        // A fixed spec replaces an instance that could never launch; a running one keeps its
        // type and image until the next boot.
        return if child.stale { Step::Delete } else { Step::Wait(Phase::Failed, why.clone()) };
    }
    if let Some(why) = &child.blocked {
        return Step::Wait(Phase::BudgetBlocked, why.clone());
    }
    if state != Some("running") {
        let why = match state {
            None => "waiting for the instance to launch".to_string(),
            Some(s) => format!("waiting for the instance: it is {s}"),
        };
        return Step::Wait(Phase::Provisioning, why);
    }
    if !facts.configured {
        return Step::Configure;
    }
    match facts.idle_timeout_minutes {
        Some(timeout) if timeout > 0 && facts.idle_minutes >= f64::from(timeout) => Step::IdleStop,
        _ => Step::CheckHealth,
    }
}

/// The phase a health answer puts a configured room in: Ready once healthy on this instance (and
/// through fewer than `threshold` failures in a row since), Failed at `threshold` failures in a
/// row, Configuring until then.
pub fn health_phase(failures: u32, threshold: u32, was_healthy: bool) -> Phase {
    match (failures >= threshold, failures == 0 || was_healthy) {
        (true, _) => Phase::Failed,
        (false, true) => Phase::Ready,
        (false, false) => Phase::Configuring,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(state: DataRoomState) -> DataRoomSpec {
        serde_json::from_value(serde_json::json!({ "state": state })).unwrap()
    }

    fn child(state: Option<&str>) -> Child {
        Child { ours: true, state: state.map(str::to_string), ..Default::default() }
    }

    fn facts(spec: &DataRoomSpec, child: Option<Child>) -> Facts<'_> {
        Facts {
            spec,
            deleting: false,
            child,
            configured: false,
            idle_minutes: 0.0,
            idle_timeout_minutes: Some(30),
        }
    }

    #[test]
    fn a_running_room_boots_configures_then_checks_health() {
        let s = spec(DataRoomState::Running);
        assert_eq!(plan(&facts(&s, None)), Step::Create);
        let booting = plan(&facts(&s, Some(child(Some("pending")))));
        assert!(matches!(booting, Step::Wait(Phase::Provisioning, ref m) if m.contains("pending")));
        assert!(matches!(plan(&facts(&s, Some(child(None)))), Step::Wait(Phase::Provisioning, _)));
        assert_eq!(plan(&facts(&s, Some(child(Some("running"))))), Step::Configure);
        let configured = Facts { configured: true, ..facts(&s, Some(child(Some("running")))) };
        assert_eq!(plan(&configured), Step::CheckHealth);
    }

    #[test]
    fn budget_and_broken_instances_hold_the_room() {
        let s = spec(DataRoomState::Running);
        let blocked = Child { blocked: Some("maxInstances: 5 of 5".into()), ..child(None) };
        assert!(
            matches!(plan(&facts(&s, Some(blocked))), Step::Wait(Phase::BudgetBlocked, m) if m.contains("5 of 5"))
        );
        let broken = Child { broken: Some("bad image".into()), ..child(None) };
        assert!(
            matches!(plan(&facts(&s, Some(broken.clone()))), Step::Wait(Phase::Failed, m) if m == "bad image")
        );
        let fixed = Child { stale: true, ..broken };
        assert_eq!(plan(&facts(&s, Some(fixed))), Step::Delete, "a fixed spec replaces it");
        let foreign = Child { ours: false, ..child(Some("running")) };
        assert_eq!(plan(&facts(&s, Some(foreign))), Step::Conflict);
    }

    #[test]
    fn idle_rooms_are_stopped_only_past_a_nonzero_timeout() {
        let s = spec(DataRoomState::Running);
        let ready = |idle: f64, timeout: Option<u32>| Facts {
            configured: true,
            idle_minutes: idle,
            idle_timeout_minutes: timeout,
            ..facts(&s, Some(child(Some("running"))))
        };
        assert_eq!(plan(&ready(29.9, Some(30))), Step::CheckHealth);
        assert_eq!(plan(&ready(30.0, Some(30))), Step::IdleStop);
        assert_eq!(plan(&ready(1e6, Some(0))), Step::CheckHealth, "0 disables");
        assert_eq!(plan(&ready(1e6, None)), Step::CheckHealth);
    }

    #[test]
    fn stopping_stops_then_deletes_then_rests() {
        let s = spec(DataRoomState::Stopped);
        assert_eq!(plan(&facts(&s, Some(child(Some("running"))))), Step::PowerOff);
        for state in ["running", "stopping"] {
            let asked = Child { power: PowerState::Stopped, ..child(Some(state)) };
            assert!(matches!(plan(&facts(&s, Some(asked))), Step::Wait(Phase::Stopping, _)), "{state}");
        }
        let stopped = Child { power: PowerState::Stopped, ..child(Some("stopped")) };
        assert_eq!(plan(&facts(&s, Some(stopped))), Step::Delete);
        let blocked = Child { blocked: Some("cap".into()), ..child(None) };
        assert_eq!(plan(&facts(&s, Some(blocked))), Step::Delete, "a never-launched instance goes at once");
        let going = Child { deleting: true, ..child(Some("terminated")) };
        assert!(matches!(plan(&facts(&s, Some(going))), Step::Wait(Phase::Stopping, _)));
        assert_eq!(plan(&facts(&s, None)), Step::Stopped);
    }

    #[test]
    fn deleting_a_running_room_cleans_up_like_stopping() {
        let s = spec(DataRoomState::Running);
        let deleting = |c| Facts { deleting: true, ..facts(&s, c) };
        assert_eq!(plan(&deleting(Some(child(Some("running"))))), Step::PowerOff);
        assert_eq!(plan(&deleting(None)), Step::Stopped);
    }

    #[test]
    fn starting_again_powers_a_stopping_instance_back_on() {
        let s = spec(DataRoomState::Running);
        let stopping = Child { power: PowerState::Stopped, ..child(Some("stopping")) };
        assert_eq!(plan(&facts(&s, Some(stopping))), Step::PowerOn);
    }

    #[test]
    fn health_decides_between_configuring_ready_and_failed() {
        assert_eq!(health_phase(0, 3, false), Phase::Ready);
        assert_eq!(health_phase(2, 3, false), Phase::Configuring);
        assert_eq!(health_phase(2, 3, true), Phase::Ready, "a blip does not unready a room");
        assert_eq!(health_phase(3, 3, true), Phase::Failed);
    }
}
