//! The pure decision: from what a DataRoom wants and what its instance is doing to the one next
//! step, and the phase the room is in while that step runs.

use std::fmt;

use jiff::Timestamp;

use crate::crd::{DataRoomSpec, DataRoomState, PowerState, UpdateStrategy};

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

/// Which instance serves the room: one that answered and is not on its way out, a fresh one
/// before a stale one (the moment an upgrade's new instance answers, it serves).
pub fn serving(children: &[Child]) -> Option<&Child> {
    let serving = children.iter().filter(|c| c.ours && c.answered && !c.retiring());
    serving.max_by_key(|c| !c.stale)
}

/// The room is to stop (or is deleted): each instance is stopped, then deleted.
fn shut_down(children: &[Child]) -> Step {
    let steps: Vec<Step> = children.iter().map(shut_down_one).collect();
    let acting = steps.iter().find(|s| !matches!(s, Step::Wait(..)));
    acting.or(steps.first()).cloned().unwrap_or(Step::Stopped)
}

fn shut_down_one(child: &Child) -> Step {
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

/// The step an instance on its way out needs now, if any (waiting for it holds nothing else up).
fn retire(child: &Child, now: Timestamp) -> Option<Step> {
    let draining = child.retire_after.is_some_and(|after| now < after);
    match shut_down_one(child) {
        Step::Wait(..) => None,
        Step::PowerOff(_) if draining => None,
        step => Some(step),
    }
}

/// No instance to work with: boot one where there is room, once the old one is stopped.
fn replace(facts: &Facts) -> Step {
    let stopping =
        facts.children.iter().find(|c| !c.deleting && c.state.as_deref().is_some_and(|s| s != "stopped"));
    if let Some(old) = stopping {
        let why = format!("replacing the instance: waiting for {} to stop", old.name);
        return Step::Wait(Phase::Provisioning, why);
    }
    match free_slot(facts) {
        Some(name) => Step::Create(name),
        None => Step::Wait(Phase::Provisioning, "waiting for the old instance to be terminated".into()),
    }
}

fn free_slot(facts: &Facts) -> Option<String> {
    let taken = |slot: &&str| facts.children.iter().any(|c| c.name == *slot);
    facts.slots.iter().find(|s| !taken(s)).map(|s| s.to_string())
}

/// One instance: it is the room's, unless the spec moved on from its type or image.
fn one(facts: &Facts, child: &Child) -> Step {
    if !child.stale {
        return own(facts, child);
    }
    if !child.answered {
        // It serves no one yet: replaced at once.
        return Step::Delete(child.name.clone());
    }
    match (facts.spec.update_strategy, free_slot(facts)) {
        (UpdateStrategy::Recreate, _) => Step::PowerOff(child.name.clone()),
        (UpdateStrategy::Rolling, Some(name)) => Step::Create(name),
        (UpdateStrategy::Rolling, None) => Step::Wait(
            Phase::Ready,
            "waiting for the instance an earlier upgrade replaced to be terminated".into(),
        ),
    }
}

/// Two instances: an upgrade under way, or one too many.
fn two(facts: &Facts, a: &Child, b: &Child) -> Step {
    let Some(serving) = serving(&[a.clone(), b.clone()]).cloned() else {
        // Neither serves: the older fresh one stays.
        let keep = if a.stale && !b.stale { b } else { a };
        let other = if keep == a { b } else { a };
        return Step::Delete(other.name.clone());
    };
    let other = if serving.name == a.name { b } else { a };
    match (other.stale, serving.stale) {
        // The upgrade's new instance serves: the old one drains, then goes.
        (_, false) if other.answered => Step::Retire(other.name.clone()),
        (_, false) => Step::Delete(other.name.clone()),
        // A newer spec than the one the new instance was booted for: boot again.
        (true, true) => Step::Delete(other.name.clone()),
        (false, true) => candidate(facts, other, &serving),
    }
}

/// The upgrade's new instance, while the old one serves.
fn candidate(facts: &Facts, new: &Child, old: &Child) -> Step {
    let upgrade = |why: String| {
        Step::Wait(Phase::Ready, format!("upgrading: {why}; {} serves the room meanwhile", old.name))
    };
    match own(facts, new) {
        Step::Wait(_, why) => upgrade(why),
        Step::CheckHealth(name) => Step::CheckCandidate(name),
        // The room's idleness is the old instance's business until the switch.
        Step::IdleStop => Step::CheckCandidate(new.name.clone()),
        step => step,
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
mod tests {
    use super::*;

    const A: &str = "dr-x";
    const B: &str = "dr-x.b";

    fn spec(state: DataRoomState) -> DataRoomSpec {
        serde_json::from_value(serde_json::json!({ "state": state })).unwrap()
    }

    fn child(state: Option<&str>) -> Child {
        Child { name: A.into(), ours: true, state: state.map(str::to_string), ..Default::default() }
    }

    /// A child in the second place.
    fn second(state: Option<&str>) -> Child {
        Child { name: B.into(), ..child(state) }
    }

    /// Configured and answering: it serves the room.
    fn serving_child(name: &str, stale: bool) -> Child {
        Child { name: name.into(), configured: true, answered: true, stale, ..child(Some("running")) }
    }

    fn facts(spec: &DataRoomSpec, child: Option<Child>) -> Facts<'_> {
        facts_of(spec, child.into_iter().collect())
    }

    fn facts_of(spec: &DataRoomSpec, children: Vec<Child>) -> Facts<'_> {
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

    /// A rolling upgrade from start to end, one row per moment: what the room's instances are
    /// and the one step the plan takes.
    #[test]
    fn a_rolling_upgrade_boots_configures_checks_switches_drains_then_removes_the_old_instance() {
        let s = spec(DataRoomState::Running);
        let old = serving_child(A, true);
        let new = |state: Option<&str>| Child { name: B.into(), ..child(state) };
        let later: Timestamp = "2026-12-03T00:00:30Z".parse().unwrap();
        let draining = Child { retire_after: Some(later), ..old.clone() };
        let drained = Child { retire_after: Some("2026-12-02T23:59:59Z".parse().unwrap()), ..old.clone() };
        let off = Child { power: PowerState::Stopped, ..drained.clone() };
        let serving_new = serving_child(B, false);
        let table: Vec<(&str, Vec<Child>, Step)> = vec![
            ("the spec changes: a second instance", vec![old.clone()], Step::Create(B.into())),
            ("it boots", vec![old.clone(), new(Some("pending"))], Step::Wait(Phase::Ready, String::new())),
            ("it runs", vec![old.clone(), new(Some("running"))], Step::Configure(B.into())),
            (
                "configured",
                vec![old.clone(), Child { configured: true, ..new(Some("running")) }],
                Step::CheckCandidate(B.into()),
            ),
            ("it answers: the switch", vec![old.clone(), serving_new.clone()], Step::Retire(A.into())),
            ("the old one drains", vec![draining, serving_new.clone()], Step::CheckHealth(B.into())),
            ("drained", vec![drained, serving_new.clone()], Step::PowerOff(A.into())),
            ("stopping", vec![off.clone(), serving_new.clone()], Step::CheckHealth(B.into())),
            (
                "stopped",
                vec![Child { state: Some("stopped".into()), ..off }, serving_new.clone()],
                Step::Delete(A.into()),
            ),
            ("done", vec![serving_new], Step::CheckHealth(B.into())),
        ];
        for (moment, children, want) in table {
            let got = plan(&facts_of(&s, children));
            match want {
                Step::Wait(phase, _) => {
                    assert!(
                        matches!(&got, Step::Wait(p, why) if *p == phase && why.contains(A)),
                        "{moment}: {got:?}"
                    )
                }
                want => assert_eq!(got, want, "{moment}"),
            }
        }
    }

    #[test]
    fn while_the_old_instance_serves_the_room_stays_ready_and_says_what_the_upgrade_waits_for() {
        let s = spec(DataRoomState::Running);
        let old = serving_child(A, true);
        let blocked = Child { blocked: Some("maxInstances: 1 of 1".into()), ..second(None) };
        let broken = Child { broken: Some("no such image".into()), ..second(None) };
        for (new, says) in
            [(blocked, "1 of 1"), (broken, "no such image"), (second(Some("pending")), "pending")]
        {
            let got = plan(&facts_of(&s, vec![old.clone(), new]));
            assert!(
                matches!(&got, Step::Wait(Phase::Ready, why) if why.contains(says) && why.contains(A)),
                "{got:?}"
            );
        }
        let idle = Facts {
            idle_minutes: 1e6,
            ..facts_of(&s, vec![old, Child { configured: true, ..second(Some("running")) }])
        };
        assert_eq!(plan(&idle), Step::CheckCandidate(B.into()), "no idle stop mid-upgrade");
    }

    #[test]
    fn recreate_stops_the_old_instance_before_booting_the_new_one() {
        let s = DataRoomSpec { update_strategy: UpdateStrategy::Recreate, ..spec(DataRoomState::Running) };
        let old = serving_child(A, true);
        assert_eq!(plan(&facts(&s, Some(old.clone()))), Step::PowerOff(A.into()));
        let stopping = Child { power: PowerState::Stopped, ..old };
        let waiting = plan(&facts(&s, Some(stopping.clone())));
        assert!(
            matches!(&waiting, Step::Wait(Phase::Provisioning, why) if why.contains("to stop")),
            "{waiting:?}"
        );
        let stopped = Child { state: Some("stopped".into()), ..stopping };
        assert_eq!(plan(&facts(&s, Some(stopped.clone()))), Step::Delete(A.into()), "never started again");
        let terminating = Child { deleting: true, ..stopped };
        assert_eq!(plan(&facts(&s, Some(terminating))), Step::Create(B.into()), "in the free place");
    }

    #[test]
    fn a_spec_changed_again_mid_upgrade_replaces_the_new_instance_and_a_reverted_one_drops_it() {
        let s = spec(DataRoomState::Running);
        let stale_new = Child { stale: true, ..second(Some("running")) };
        assert_eq!(plan(&facts_of(&s, vec![serving_child(A, true), stale_new])), Step::Delete(B.into()));
        let reverted =
            plan(&facts_of(&s, vec![serving_child(A, false), Child { stale: true, ..second(None) }]));
        assert_eq!(reverted, Step::Delete(B.into()));
        let unneeded = plan(&facts_of(&s, vec![serving_child(A, false), second(Some("running"))]));
        assert_eq!(unneeded, Step::Delete(B.into()), "two fresh: the one serving stays");
        let nothing_serves = plan(&facts_of(&s, vec![Child { stale: true, ..child(None) }, second(None)]));
        assert_eq!(nothing_serves, Step::Delete(A.into()), "the fresh one stays");
    }

    #[test]
    fn an_upgrade_waits_for_the_place_a_previous_one_is_leaving() {
        let s = spec(DataRoomState::Running);
        let leaving = Child { deleting: true, ..child(Some("shutting-down")) };
        let got = plan(&facts_of(&s, vec![leaving, serving_child(B, true)]));
        assert!(matches!(got, Step::Wait(Phase::Ready, _)), "{got:?}");
    }

    #[test]
    fn the_serving_instance_is_one_that_answered_and_stays_a_fresh_one_first() {
        let old = serving_child(A, true);
        let new = serving_child(B, false);
        assert_eq!(serving(&[old.clone(), new.clone()]).map(|c| c.name.as_str()), Some(B));
        assert_eq!(serving(&[old.clone(), second(Some("running"))]).map(|c| c.name.as_str()), Some(A));
        let retired = Child { retire_after: Some("2099-01-01T00:00:00Z".parse().unwrap()), ..new };
        assert_eq!(serving(&[old, retired]).map(|c| c.name.as_str()), Some(A));
        assert_eq!(serving(&[child(Some("running"))]), None, "not until it answers");
    }
}
