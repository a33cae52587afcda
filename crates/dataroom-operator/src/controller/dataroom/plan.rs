//! The pure decision: from what a DataRoom wants and what its instances are doing to the one next
//! step, and the phase the room is in while that step runs. Which instance does what during an
//! upgrade is in `roles`.

use std::fmt;

use jiff::Timestamp;

use crate::crd::{DataRoomSpec, DataRoomState, PowerState};
pub use roles::serving;
use roles::{one, replace, retire, two};

mod roles;

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

/// One of the room's Ec2Instances as the plan needs it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Child {
    /// The object's name: one of the room's two places (`Facts::slots`).
    pub name: String,
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
    /// What is pushed to it matches the room's content now (same hash).
    pub configured: bool,
    /// It has answered the room's health check in this boot: it serves the room.
    pub answered: bool,
    /// An upgrade has moved the room off it: it keeps answering until then, and is stopped and
    /// deleted after.
    pub retire_after: Option<Timestamp>,
}

impl Child {
    /// On its way out: moved off by an upgrade, deleted, or a stale instance asked to stop (it
    /// is replaced, never started again).
    pub fn retiring(&self) -> bool {
        self.deleting || self.retire_after.is_some() || (self.stale && self.power == PowerState::Stopped)
    }
}

/// Everything the decision reads.
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    pub spec: &'a DataRoomSpec,
    pub deleting: bool,
    /// The names of the room's two places for an instance; an upgrade boots in the free one.
    pub slots: [&'a str; 2],
    /// The Ec2Instances in those places, oldest first.
    pub children: Vec<Child>,
    /// Minutes without activity, and the timeout (`None`: disabled).
    pub idle_minutes: f64,
    pub idle_timeout_minutes: Option<u32>,
    pub now: Timestamp,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Create the Ec2Instance of this name.
    Create(String),
    /// Set the Ec2Instance's power state back to Running.
    PowerOn(String),
    /// Nothing to do but wait, in `Phase`, for the reason given.
    Wait(Phase, String),
    /// Push the configuration and files over SFTP.
    Configure(String),
    /// GET the serving instance's health endpoint; the answer decides Configuring, Ready or Failed.
    CheckHealth(String),
    /// GET the new instance's health endpoint during an upgrade: once it answers, it serves.
    CheckCandidate(String),
    /// The switch of an upgrade: the room now serves from the new instance; this one keeps
    /// answering for `drainSeconds`, then is stopped and deleted.
    Retire(String),
    /// Idle too long: set `spec.state` to Stopped.
    IdleStop,
    /// Stop the instance before it is terminated.
    PowerOff(String),
    /// Delete the Ec2Instance, which terminates its instance.
    Delete(String),
    /// No instance, none wanted.
    Stopped,
    /// An Ec2Instance of one of the room's names belongs to something else.
    Conflict(String),
}

impl Step {
    /// The instance the step acts on, if it acts on one.
    pub fn target(&self) -> Option<&str> {
        match self {
            Self::Create(n)
            | Self::PowerOn(n)
            | Self::Configure(n)
            | Self::CheckHealth(n)
            | Self::CheckCandidate(n)
            | Self::Retire(n)
            | Self::PowerOff(n)
            | Self::Delete(n)
            | Self::Conflict(n) => Some(n),
            Self::Wait(..) | Self::IdleStop | Self::Stopped => None,
        }
    }
}

pub fn plan(facts: &Facts) -> Step {
    if let Some(foreign) = facts.children.iter().find(|c| !c.ours) {
        return Step::Conflict(foreign.name.clone());
    }
    let want_running = facts.spec.state == DataRoomState::Running && !facts.deleting;
    if !want_running {
        return shut_down(&facts.children);
    }
    if let Some(step) = facts.children.iter().filter(|c| c.retiring()).find_map(|c| retire(c, facts.now)) {
        return step;
    }
    let active: Vec<&Child> = facts.children.iter().filter(|c| !c.retiring()).collect();
    match active[..] {
        [] => replace(facts),
        [only] => one(facts, only),
        [a, b] => two(facts, a, b),
        _ => unreachable!("a room has two places for instances"),
    }
}

/// The room is to stop (or is deleted): each instance is stopped, then deleted.
fn shut_down(children: &[Child]) -> Step {
    let steps: Vec<Step> = children.iter().map(shut_down_one).collect();
    let acting = steps.iter().find(|s| !matches!(s, Step::Wait(..)));
    acting.or(steps.first()).cloned().unwrap_or(Step::Stopped)
}

pub(super) fn shut_down_one(child: &Child) -> Step {
    if child.deleting {
        return Step::Wait(Phase::Stopping, "the instance is being terminated".into());
    }
    match child.state.as_deref() {
        Some("running" | "pending") if child.power == PowerState::Running => {
            Step::PowerOff(child.name.clone())
        }
        // Asked to stop and not stopped yet: the instance is shut down before it is terminated.
        Some(s @ ("running" | "pending" | "stopping" | "shutting-down")) => {
            Step::Wait(Phase::Stopping, format!("the instance is {s}; waiting for it to stop"))
        }
        _ => Step::Delete(child.name.clone()),
    }
}

/// The room's own (fresh) instance, from launch to Ready.
fn own(facts: &Facts, child: &Child) -> Step {
    let name = child.name.clone();
    if child.power == PowerState::Stopped {
        return Step::PowerOn(name);
    }
    if let Some(why) = &child.broken {
        return Step::Wait(Phase::Failed, why.clone());
    }
    if let Some(why) = &child.blocked {
        return Step::Wait(Phase::BudgetBlocked, why.clone());
    }
    let state = child.state.as_deref();
    if state != Some("running") {
        let why = match state {
            None => "waiting for the instance to launch".to_string(),
            Some(s) => format!("waiting for the instance: it is {s}"),
        };
        return Step::Wait(Phase::Provisioning, why);
    }
    if !child.configured {
        return Step::Configure(name);
    }
    match facts.idle_timeout_minutes {
        Some(timeout) if timeout > 0 && facts.idle_minutes >= f64::from(timeout) => Step::IdleStop,
        _ => Step::CheckHealth(name),
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
pub(super) mod tests {
    use super::*;

    pub(super) const A: &str = "dr-x";
    pub(super) const B: &str = "dr-x.b";

    pub(super) fn spec(state: DataRoomState) -> DataRoomSpec {
        serde_json::from_value(serde_json::json!({ "state": state })).unwrap()
    }

    pub(super) fn child(state: Option<&str>) -> Child {
        Child { name: A.into(), ours: true, state: state.map(str::to_string), ..Default::default() }
    }

    /// A child in the second place.
    pub(super) fn second(state: Option<&str>) -> Child {
        Child { name: B.into(), ..child(state) }
    }

    /// Configured and answering: it serves the room.
    pub(super) fn serving_child(name: &str, stale: bool) -> Child {
        Child { name: name.into(), configured: true, answered: true, stale, ..child(Some("running")) }
    }

    pub(super) fn facts(spec: &DataRoomSpec, child: Option<Child>) -> Facts<'_> {
        facts_of(spec, child.into_iter().collect())
    }

    pub(super) fn facts_of(spec: &DataRoomSpec, children: Vec<Child>) -> Facts<'_> {
        Facts {
            spec,
            deleting: false,
            slots: [A, B],
            children,
            idle_minutes: 0.0,
            idle_timeout_minutes: Some(30),
            now: "2026-12-03T00:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn a_running_room_boots_configures_then_checks_health() {
        let s = spec(DataRoomState::Running);
        assert_eq!(plan(&facts(&s, None)), Step::Create(A.into()));
        let booting = plan(&facts(&s, Some(child(Some("pending")))));
        assert!(matches!(booting, Step::Wait(Phase::Provisioning, ref m) if m.contains("pending")));
        assert!(matches!(plan(&facts(&s, Some(child(None)))), Step::Wait(Phase::Provisioning, _)));
        assert_eq!(plan(&facts(&s, Some(child(Some("running"))))), Step::Configure(A.into()));
        let configured = Child { configured: true, ..child(Some("running")) };
        assert_eq!(plan(&facts(&s, Some(configured))), Step::CheckHealth(A.into()));
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
        assert_eq!(plan(&facts(&s, Some(fixed))), Step::Delete(A.into()), "a fixed spec replaces it");
        let foreign = Child { ours: false, ..child(Some("running")) };
        assert_eq!(plan(&facts(&s, Some(foreign))), Step::Conflict(A.into()));
    }

    #[test]
    fn idle_rooms_are_stopped_only_past_a_nonzero_timeout() {
        let s = spec(DataRoomState::Running);
        let ready = |idle: f64, timeout: Option<u32>| Facts {
            idle_minutes: idle,
            idle_timeout_minutes: timeout,
            ..facts(&s, Some(serving_child(A, false)))
        };
        assert_eq!(plan(&ready(29.9, Some(30))), Step::CheckHealth(A.into()));
        assert_eq!(plan(&ready(30.0, Some(30))), Step::IdleStop);
        assert_eq!(plan(&ready(1e6, Some(0))), Step::CheckHealth(A.into()), "0 disables");
        assert_eq!(plan(&ready(1e6, None)), Step::CheckHealth(A.into()));
    }

    #[test]
    fn stopping_stops_then_deletes_then_rests() {
        let s = spec(DataRoomState::Stopped);
        assert_eq!(plan(&facts(&s, Some(child(Some("running"))))), Step::PowerOff(A.into()));
        for state in ["running", "stopping"] {
            let asked = Child { power: PowerState::Stopped, ..child(Some(state)) };
            assert!(matches!(plan(&facts(&s, Some(asked))), Step::Wait(Phase::Stopping, _)), "{state}");
        }
        let stopped = Child { power: PowerState::Stopped, ..child(Some("stopped")) };
        assert_eq!(plan(&facts(&s, Some(stopped))), Step::Delete(A.into()));
        let blocked = Child { blocked: Some("cap".into()), ..child(None) };
        assert_eq!(
            plan(&facts(&s, Some(blocked))),
            Step::Delete(A.into()),
            "a never-launched instance goes at once"
        );
        let going = Child { deleting: true, ..child(Some("terminated")) };
        assert!(matches!(plan(&facts(&s, Some(going))), Step::Wait(Phase::Stopping, _)));
        assert_eq!(plan(&facts(&s, None)), Step::Stopped);
    }

    #[test]
    fn stopping_mid_upgrade_stops_both_without_waiting_for_the_drain() {
        let s = spec(DataRoomState::Stopped);
        let draining =
            Child { retire_after: Some("2099-01-01T00:00:00Z".parse().unwrap()), ..serving_child(A, true) };
        let stopping = Child { power: PowerState::Stopped, ..draining.clone() };
        let new = serving_child(B, false);
        assert_eq!(plan(&facts_of(&s, vec![draining, new.clone()])), Step::PowerOff(A.into()));
        assert_eq!(
            plan(&facts_of(&s, vec![stopping, new])),
            Step::PowerOff(B.into()),
            "one waits, the other acts"
        );
    }

    #[test]
    fn deleting_a_running_room_cleans_up_like_stopping() {
        let s = spec(DataRoomState::Running);
        let deleting = |c| Facts { deleting: true, ..facts(&s, c) };
        assert_eq!(plan(&deleting(Some(child(Some("running"))))), Step::PowerOff(A.into()));
        assert_eq!(plan(&deleting(None)), Step::Stopped);
    }

    #[test]
    fn starting_again_powers_a_stopping_instance_back_on() {
        let s = spec(DataRoomState::Running);
        let stopping = Child { power: PowerState::Stopped, ..child(Some("stopping")) };
        assert_eq!(plan(&facts(&s, Some(stopping))), Step::PowerOn(A.into()));
    }

    #[test]
    fn health_decides_between_configuring_ready_and_failed() {
        assert_eq!(health_phase(0, 3, false), Phase::Ready);
        assert_eq!(health_phase(2, 3, false), Phase::Configuring);
        assert_eq!(health_phase(2, 3, true), Phase::Ready, "a blip does not unready a room");
        assert_eq!(health_phase(3, 3, true), Phase::Failed);
    }
}
