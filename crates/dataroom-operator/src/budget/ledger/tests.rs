//! The ledger's arithmetic, case by case.

use super::*;

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn limits(max: u32, cap: f64) -> Ec2BudgetSpec {
    Ec2BudgetSpec { max_instances: max, daily_spend_usd: cap, ..Default::default() }
}

/// A launch whose root volume costs nothing: the instance arithmetic alone.
const LAUNCH: Purpose = Purpose::Launch(RootVolume { gib: 8, hourly: Some(0.0) });

fn ask(uid: &str, hourly: f64, purpose: Purpose) -> Ask<'_> {
    let (instance_type, max_hourly) = ("t3.micro", Some(10.0));
    Ask { uid, instance_type, hourly: Some(hourly), max_hourly, purpose, room: None }
}

#[test]
fn the_instance_cap_counts_slots_and_a_holder_may_ask_again() {
    let now = at("2026-11-22T10:00:00Z");
    let mut ledger = Ledger::new(now);
    let l = limits(2, 100.0);
    assert!(ledger.reserve(&ask("a", 0.01, LAUNCH), &l, now).is_ok());
    assert!(ledger.reserve(&ask("b", 0.01, LAUNCH), &l, now).is_ok());
    assert!(ledger.reserve(&ask("a", 0.01, Purpose::Start), &l, now).is_ok(), "idempotent");
    let refused = ledger.reserve(&ask("c", 0.01, LAUNCH), &l, now).unwrap_err();
    assert_eq!(refused, Refusal::MaxInstances { current: 2, max: 2 });
    assert!(ledger.release("a", now));
    assert!(!ledger.release("a", now), "a second release is a no-op");
    assert!(ledger.reserve(&ask("c", 0.01, LAUNCH), &l, now).is_ok());
}

#[test]
fn a_short_run_is_billed_sixty_seconds() {
    let start = at("2026-11-22T10:00:00Z");
    let mut ledger = Ledger::new(start);
    ledger.reserve(&ask("a", 3.6, LAUNCH), &limits(5, 1000.0), start).unwrap();
    ledger.release("a", at("2026-11-22T10:00:10Z"));
    // 3.6 $/h = 0.001 $/s; 10 s is billed as 60 s.
    assert!((ledger.spend_today(at("2026-11-22T11:00:00Z")) - 0.06).abs() < 1e-9);
    ledger.reserve(&ask("b", 3.6, Purpose::Start), &limits(5, 1000.0), at("2026-11-22T11:00:00Z")).unwrap();
    ledger.release("b", at("2026-11-22T11:02:00Z"));
    assert!(
        (ledger.spend_today(at("2026-11-22T12:00:00Z")) - 0.18).abs() < 1e-9,
        "per-second above the minimum"
    );
}

#[test]
fn the_spend_cap_projects_every_slot_to_midnight() {
    let now = at("2026-11-22T12:00:00Z");
    let mut ledger = Ledger::new(now);
    // 12 h left in the day at 0.1 $/h is 1.2 $ per instance; the cap fits two.
    let l = limits(10, 2.5);
    ledger.reserve(&ask("a", 0.1, LAUNCH), &l, now).unwrap();
    ledger.reserve(&ask("b", 0.1, LAUNCH), &l, now).unwrap();
    match ledger.reserve(&ask("c", 0.1, LAUNCH), &l, now) {
        Err(Refusal::DailySpend { projected, cost, cap }) => {
            assert!((projected - 2.4).abs() < 1e-9 && (cost - 1.2).abs() < 1e-9 && cap == 2.5);
        }
        other => panic!("expected a spend refusal, got {other:?}"),
    }
    // Later in the day the same instance costs less until midnight.
    let later = at("2026-11-22T23:00:00Z");
    ledger.release("a", later);
    assert!(ledger.reserve(&ask("c", 0.1, LAUNCH), &l, later).is_ok());
}

#[test]
fn the_day_rolls_over_at_midnight_utc() {
    let evening = at("2026-11-22T23:00:00Z");
    let mut ledger = Ledger::new(evening);
    let l = Ec2BudgetSpec { max_launches_per_day: Some(1), ..limits(5, 100.0) };
    ledger.reserve(&ask("a", 3.6, LAUNCH), &l, evening).unwrap();
    assert_eq!(
        ledger.reserve(&ask("b", 3.6, LAUNCH), &l, evening),
        Err(Refusal::MaxLaunches { launches: 1, max: 1 })
    );
    assert!(ledger.reserve(&ask("b", 3.6, Purpose::Start), &l, evening).is_ok(), "starts are not launches");
    ledger.release("b", evening + SignedDuration::from_secs(120));
    let morning = at("2026-11-23T01:00:00Z");
    // Yesterday's settled run is gone; "a" has run 1 h of today (no second minimum charge).
    assert!((ledger.spend_today(morning) - 3.6).abs() < 1e-9);
    assert!(ledger.reserve(&ask("c", 0.001, LAUNCH), &l, morning).is_ok(), "launch count reset");
    let status = ledger.snapshot(morning);
    assert_eq!(status.window_start.as_deref(), Some("2026-11-23T00:00:00Z"));
    assert_eq!(status.launches_today, 1);
}

#[test]
fn settled_spend_and_launches_survive_a_restart_on_the_same_day_only() {
    let now = at("2026-11-22T10:00:00Z");
    let mut ledger = Ledger::new(now);
    ledger.reserve(&ask("a", 3.6, LAUNCH), &limits(5, 100.0), now).unwrap();
    ledger.release("a", now + SignedDuration::from_secs(3600));
    let persisted = ledger.snapshot(now + SignedDuration::from_secs(3600));
    assert!((persisted.settled_spend_usd - 3.6).abs() < 1e-9);

    let mut restarted = Ledger::new(at("2026-11-22T15:00:00Z"));
    restarted.resume(&persisted, at("2026-11-22T15:00:00Z"));
    assert!((restarted.spend_today(at("2026-11-22T15:00:00Z")) - 3.6).abs() < 1e-9);
    assert_eq!(restarted.snapshot(at("2026-11-22T15:00:00Z")).launches_today, 1);

    let mut next_day = Ledger::new(at("2026-11-23T08:00:00Z"));
    next_day.resume(&persisted, at("2026-11-23T08:00:00Z"));
    assert_eq!(next_day.spend_today(at("2026-11-23T08:00:00Z")), 0.0);
}

#[test]
fn types_above_the_maximum_or_unpriced_are_refused() {
    let now = at("2026-11-22T10:00:00Z");
    let mut ledger = Ledger::new(now);
    let l = limits(5, 100.0);
    let pricey = Ask { hourly: Some(20.0), ..ask("a", 0.0, LAUNCH) };
    assert!(matches!(ledger.reserve(&pricey, &l, now), Err(Refusal::TypeAboveMax { .. })));
    let unpriced = Ask { hourly: None, ..ask("a", 0.0, LAUNCH) };
    assert!(matches!(ledger.reserve(&unpriced, &l, now), Err(Refusal::UnpricedType { .. })));
    assert_eq!(ledger.slots(), 0);
}

fn launch(gib: u32, hourly: f64) -> Purpose {
    Purpose::Launch(RootVolume { gib, hourly: Some(hourly) })
}

#[test]
fn a_root_volume_is_billed_while_it_exists_stopped_or_not() {
    let now = at("2026-11-22T10:00:00Z");
    let mut ledger = Ledger::new(now);
    ledger.reserve(&ask("a", 1.0, launch(100, 0.5)), &limits(5, 100.0), now).unwrap();
    // Stopped after an hour: the instance's run settles, its volume goes on costing.
    ledger.release("a", at("2026-11-22T11:00:00Z"));
    assert!((ledger.spend_today(at("2026-11-22T13:00:00Z")) - (1.0 + 3.0 * 0.5)).abs() < 1e-9);
    assert_eq!(ledger.snapshot(at("2026-11-22T13:00:00Z")).root_volume_gib, 100);
    // Terminated: the volume settles too, and costs nothing more.
    assert!(ledger.release_volume("a", at("2026-11-22T14:00:00Z")));
    assert!((ledger.spend_today(at("2026-11-22T20:00:00Z")) - 3.0).abs() < 1e-9);
    assert_eq!(ledger.snapshot(at("2026-11-22T20:00:00Z")).root_volume_gib, 0);
}

#[test]
fn the_spend_cap_counts_root_volumes_to_midnight_stopped_ones_included() {
    let now = at("2026-11-22T12:00:00Z");
    let mut ledger = Ledger::new(now);
    // 12 h to midnight: 1.2 $ of instance and 1.2 $ of volume each; the cap fits one.
    let l = limits(10, 3.0);
    ledger.reserve(&ask("a", 0.1, launch(100, 0.1)), &l, now).unwrap();
    ledger.release("a", now);
    // What is committed is the stopped instance's volume until midnight (and its 60 s minimum):
    // without it the second launch, 2.4 $, would have fitted.
    match ledger.reserve(&ask("b", 0.1, launch(100, 0.1)), &l, now) {
        Err(Refusal::DailySpend { projected, cost, .. }) => {
            assert!((projected - 1.2).abs() < 0.01 && (cost - 2.4).abs() < 1e-9, "{projected} {cost}");
        }
        other => panic!("expected a spend refusal, got {other:?}"),
    }
}

#[test]
fn root_volumes_above_the_maximum_or_unpriced_are_refused() {
    let now = at("2026-11-22T10:00:00Z");
    let mut ledger = Ledger::new(now);
    let l = Ec2BudgetSpec { max_root_volume_gib: 100, ..limits(5, 1000.0) };
    let huge = ledger.reserve(&ask("a", 0.01, launch(16384, 0.0)), &l, now).unwrap_err();
    assert_eq!(huge, Refusal::VolumeAboveMax { gib: 16384, max: 100 });
    assert_eq!(huge.limit(), "maxRootVolumeGiB");
    let unpriced = Purpose::Launch(RootVolume { gib: 8, hourly: None });
    assert_eq!(ledger.reserve(&ask("a", 0.01, unpriced), &l, now), Err(Refusal::UnpricedVolume));
    assert_eq!((ledger.slots(), ledger.snapshot(now).launches_today), (0, 0), "nothing taken");
    assert!(ledger.reserve(&ask("a", 0.01, launch(100, 0.0)), &l, now).is_ok(), "the maximum itself");
    assert!(ledger.reserve(&ask("b", 0.01, Purpose::Start), &l, now).is_ok(), "a start makes no volume");
}

#[test]
fn a_grown_root_volume_is_judged_on_its_extra_cost_to_midnight() {
    let now = at("2026-11-22T12:00:00Z");
    let mut ledger = Ledger::new(now);
    let l = Ec2BudgetSpec { max_root_volume_gib: 200, ..limits(5, 2.0) };
    ledger.reserve(&ask("a", 0.0, launch(8, 0.05)), &l, now).unwrap();
    // 12 h to midnight: 0.6 $ committed; growing to 0.15 $/h adds 1.2 $, within the 2 $ cap.
    let grown = RootVolume { gib: 100, hourly: Some(0.15) };
    ledger.grow_volume("a", grown, &l, now).unwrap();
    assert_eq!(ledger.snapshot(now).root_volume_gib, 100);
    // Growing again to 0.3 $/h would add 1.8 $ to the 1.8 $ committed: refused, size kept.
    let bigger = RootVolume { gib: 200, hourly: Some(0.3) };
    match ledger.grow_volume("a", bigger, &l, now) {
        Err(Refusal::DailySpend { projected, cost, .. }) => {
            assert!((projected - 1.8).abs() < 1e-6 && (cost - 1.8).abs() < 1e-6, "{projected} {cost}");
        }
        other => panic!("expected a spend refusal, got {other:?}"),
    }
    assert_eq!(ledger.snapshot(now).root_volume_gib, 100, "a refusal changes nothing");
    let huge = RootVolume { gib: 300, hourly: Some(0.0) };
    assert_eq!(ledger.grow_volume("a", huge, &l, now), Err(Refusal::VolumeAboveMax { gib: 300, max: 200 }));
    // The 8 GiB hour before the growth is settled at its own price.
    let later = at("2026-11-22T13:00:00Z");
    assert!((ledger.spend_today(later) - 0.15).abs() < 1e-6, "{}", ledger.spend_today(later));
}
