//! The roles of a room's instances, while it should run: the one serving, an upgrade's new one,
//! and those on their way out; and the one step each situation needs (`Rolling` boots the new
//! instance beside the old; `Recreate` stops the old first).

use jiff::Timestamp;

use super::{Child, Facts, Phase, Step, own, shut_down_one};
use crate::crd::UpdateStrategy;

/// Which instance serves the room: one that answered and is not on its way out, a fresh one
/// before a stale one (the moment an upgrade's new instance answers, it serves).
pub fn serving(children: &[Child]) -> Option<&Child> {
    let serving = children.iter().filter(|c| c.ours && c.answered && !c.retiring());
    serving.max_by_key(|c| !c.stale)
}

/// The step an instance on its way out needs now, if any (waiting for it holds nothing else up).
pub(super) fn retire(child: &Child, now: Timestamp) -> Option<Step> {
    let draining = child.retire_after.is_some_and(|after| now < after);
    match shut_down_one(child) {
        Step::Wait(..) => None,
        Step::PowerOff(_) if draining => None,
        step => Some(step),
    }
}

/// No instance to work with: boot one where there is room, once the old one is stopped.
pub(super) fn replace(facts: &Facts) -> Step {
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
pub(super) fn one(facts: &Facts, child: &Child) -> Step {
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
pub(super) fn two(facts: &Facts, a: &Child, b: &Child) -> Step {
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

#[cfg(test)]
mod tests {
    use super::super::plan;
    use super::super::tests::*;
    use super::*;
    use crate::crd::{DataRoomSpec, DataRoomState, PowerState};

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
