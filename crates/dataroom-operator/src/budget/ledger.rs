//! Pure budget arithmetic: slots (pending or running instances), root volumes (every instance
//! until it is terminated, stopped or not: EBS bills while a volume exists), per-second spend with
//! a 60 s minimum per instance start, and a window that is one UTC day. No I/O and no clock:
//! callers pass `now`.

use std::collections::BTreeMap;
use std::fmt;

use jiff::{SignedDuration, Timestamp, tz::TimeZone};

use crate::crd::{Ec2BudgetSpec, Ec2BudgetStatus};

const MINIMUM_BILLED_SECONDS: f64 = 60.0;

/// A budget slot: an instance that is (or is about to be) pending or running.
#[derive(Clone, Debug, PartialEq)]
pub struct Slot {
    pub instance_type: String,
    pub hourly_usd: f64,
    /// When billing of the current run began (the reservation, or the observed launch time).
    pub since: Timestamp,
    /// The DataRoom (`namespace/name`) the instance serves, if any.
    pub room: Option<String>,
}

/// A root volume: billed from its creation (or the first sight of it) until its instance is gone.
#[derive(Clone, Debug, PartialEq)]
pub struct Volume {
    pub gib: u32,
    pub hourly_usd: f64,
    pub since: Timestamp,
    /// The DataRoom (`namespace/name`) its instance serves, if any.
    pub room: Option<String>,
}

/// A reservation request: who, which type at which prices (as the price table has them), and why.
#[derive(Clone, Copy, Debug)]
pub struct Ask<'a> {
    pub uid: &'a str,
    pub instance_type: &'a str,
    pub hourly: Option<f64>,
    pub max_hourly: Option<f64>,
    pub purpose: Purpose,
    /// The DataRoom (`namespace/name`) the instance serves, if any.
    pub room: Option<&'a str>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Purpose {
    /// RunInstances, which creates a root volume: counts against `maxLaunchesPerDay` and
    /// `maxRootVolumeGiB` too, and the volume's cost against the day's cap.
    Launch(RootVolume),
    /// StartInstances of a stopped instance (its volume exists already).
    Start,
}

/// The root volume a launch creates: its size and what it costs per hour (`None`: unpriced).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RootVolume {
    pub gib: u32,
    pub hourly: Option<f64>,
}

/// Why a reservation was refused; the message names the limit and the numbers.
#[derive(Clone, Debug, PartialEq)]
pub enum Refusal {
    UnpricedType { instance_type: String },
    TypeAboveMax { instance_type: String, hourly: f64, max_type: String, max_hourly: f64 },
    VolumeAboveMax { gib: u32, max: u32 },
    UnpricedVolume,
    MaxInstances { current: u32, max: u32 },
    MaxLaunches { launches: u32, max: u32 },
    DailySpend { projected: f64, cost: f64, cap: f64 },
}

impl Refusal {
    /// The limit's field name in `Ec2Budget.spec`, for conditions, metrics and API errors.
    pub fn limit(&self) -> &'static str {
        match self {
            Self::UnpricedType { .. } | Self::TypeAboveMax { .. } => "maxInstanceType",
            Self::VolumeAboveMax { .. } | Self::UnpricedVolume => "maxRootVolumeGiB",
            Self::MaxInstances { .. } => "maxInstances",
            Self::MaxLaunches { .. } => "maxLaunchesPerDay",
            Self::DailySpend { .. } => "dailySpendUsd",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnpricedType { instance_type } => write!(
                f,
                "maxInstanceType: {instance_type} has no price in the price table, so its cost cannot be bounded"
            ),
            Self::TypeAboveMax { instance_type, hourly, max_type, max_hourly } => write!(
                f,
                "maxInstanceType: {instance_type} costs ${hourly}/h, more than {max_type} (${max_hourly}/h)"
            ),
            Self::VolumeAboveMax { gib, max } => {
                write!(f, "maxRootVolumeGiB: a {gib} GiB root volume is larger than the {max} GiB allowed")
            }
            Self::UnpricedVolume => write!(
                f,
                "maxRootVolumeGiB: {} volumes have no price in the price table, so their cost cannot be bounded",
                super::pricing::ROOT_VOLUME_TYPE
            ),
            Self::MaxInstances { current, max } => {
                write!(f, "maxInstances: {current} of {max} instances are pending or running")
            }
            Self::MaxLaunches { launches, max } => {
                write!(f, "maxLaunchesPerDay: {launches} of {max} launches used today (UTC)")
            }
            Self::DailySpend { projected, cost, cap } => write!(
                f,
                "dailySpendUsd: ${projected:.4} committed today plus ${cost:.4} for this instance until midnight UTC exceeds the ${cap:.2} cap"
            ),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Ledger {
    window_start: Timestamp,
    settled_usd: f64,
    launches: u32,
    slots: BTreeMap<String, Slot>,
    /// Root volumes by their instance's owner uid.
    volumes: BTreeMap<String, Volume>,
    /// The part of `settled_usd` each DataRoom's instances spent.
    settled_by_room: BTreeMap<String, f64>,
}

/// Start of the UTC day containing `t`.
pub fn day_start(t: Timestamp) -> Timestamp {
    let day = t.to_zoned(TimeZone::UTC).date();
    day.to_zoned(TimeZone::UTC).expect("midnight UTC exists").timestamp()
}

fn hours_between(from: Timestamp, to: Timestamp) -> f64 {
    (to.duration_since(from).as_secs_f64().max(0.0)) / 3600.0
}

impl Ledger {
    pub fn new(now: Timestamp) -> Self {
        let window_start = day_start(now);
        Self {
            window_start,
            settled_usd: 0.0,
            launches: 0,
            slots: BTreeMap::new(),
            volumes: BTreeMap::new(),
            settled_by_room: BTreeMap::new(),
        }
    }

    /// Resumes the day's settled spend and launch count from a persisted status of the same day.
    pub fn resume(&mut self, status: &Ec2BudgetStatus, now: Timestamp) {
        self.roll(now);
        let persisted = status.window_start.as_deref().and_then(|s| s.parse::<Timestamp>().ok());
        if persisted == Some(self.window_start) {
            self.settled_usd = self.settled_usd.max(status.settled_spend_usd);
            self.launches = self.launches.max(status.launches_today);
            for (room, usd) in &status.settled_spend_by_room_usd {
                let settled = self.settled_by_room.entry(room.clone()).or_default();
                *settled = settled.max(*usd);
            }
        }
    }

    fn window_end(&self) -> Timestamp {
        self.window_start + SignedDuration::from_hours(24)
    }

    /// Starts a new day when `now` has left the current one.
    fn roll(&mut self, now: Timestamp) {
        if now >= self.window_end() {
            self.window_start = day_start(now);
            self.settled_usd = 0.0;
            self.launches = 0;
            self.settled_by_room.clear();
        }
    }

    /// Cost of `slot` within the window from its start (or the window's) to `until`, with the
    /// 60 s minimum charged on the day the run started.
    fn cost(&self, slot: &Slot, until: Timestamp) -> f64 {
        let from = slot.since.max(self.window_start);
        let mut hours = hours_between(from, until);
        if slot.since >= self.window_start {
            hours = hours.max(MINIMUM_BILLED_SECONDS / 3600.0);
        }
        slot.hourly_usd * hours
    }

    /// Cost of `volume` within the window up to `until` (per second, no minimum).
    fn volume_cost(&self, volume: &Volume, until: Timestamp) -> f64 {
        volume.hourly_usd * hours_between(volume.since.max(self.window_start), until)
    }

    /// What the open slots and volumes of `room` (every room when `None`) cost today up to `until`.
    fn open_cost(&self, room: Option<&str>, until: Timestamp) -> f64 {
        let serves = |r: &Option<String>| room.is_none() || r.as_deref() == room;
        let slots = self.slots.values().filter(|s| serves(&s.room)).map(|s| self.cost(s, until));
        let volumes = self.volumes.values().filter(|v| serves(&v.room)).map(|v| self.volume_cost(v, until));
        slots.sum::<f64>() + volumes.sum::<f64>()
    }

    /// Spend so far today: settled runs and volumes plus the open ones up to `now`.
    pub fn spend_today(&mut self, now: Timestamp) -> f64 {
        self.roll(now);
        self.settled_usd + self.open_cost(None, now)
    }

    /// Spend so far today of the instances that served the DataRoom `room` (`namespace/name`).
    pub fn room_spend_today(&mut self, room: &str, now: Timestamp) -> f64 {
        self.roll(now);
        let settled = self.settled_by_room.get(room).copied().unwrap_or(0.0);
        round(settled + self.open_cost(Some(room), now))
    }

    /// What today will cost if every slot runs, and every volume exists, until midnight UTC.
    fn projected(&self) -> f64 {
        self.settled_usd + self.open_cost(None, self.window_end())
    }

    pub fn holds(&self, uid: &str) -> bool {
        self.slots.contains_key(uid)
    }

    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Reserves a slot for `uid` if every limit allows it. Holding a slot already is success.
    pub fn reserve(&mut self, ask: &Ask, limits: &Ec2BudgetSpec, now: Timestamp) -> Result<(), Refusal> {
        let Ask { uid, instance_type, hourly, max_hourly, purpose, room } = *ask;
        self.roll(now);
        if self.slots.contains_key(uid) {
            return Ok(());
        }
        let unpriced = |t: &str| Refusal::UnpricedType { instance_type: t.to_string() };
        let hourly = hourly.ok_or_else(|| unpriced(instance_type))?;
        let max_hourly = max_hourly.ok_or_else(|| unpriced(&limits.max_instance_type))?;
        if hourly > max_hourly {
            return Err(Refusal::TypeAboveMax {
                instance_type: instance_type.to_string(),
                hourly,
                max_type: limits.max_instance_type.clone(),
                max_hourly,
            });
        }
        let current = self.slots.len() as u32;
        if current >= limits.max_instances {
            return Err(Refusal::MaxInstances { current, max: limits.max_instances });
        }
        let room = room.map(str::to_string);
        let volume = match purpose {
            Purpose::Launch(root) => self.new_volume(uid, root, limits, now, &room)?,
            Purpose::Start => None,
        };
        let slot = Slot { instance_type: instance_type.to_string(), hourly_usd: hourly, since: now, room };
        let end = self.window_end();
        let cost = self.cost(&slot, end) + volume.as_ref().map_or(0.0, |v| self.volume_cost(v, end));
        let projected = self.projected();
        if projected + cost > limits.daily_spend_usd + 1e-9 {
            return Err(Refusal::DailySpend { projected, cost, cap: limits.daily_spend_usd });
        }
        self.slots.insert(uid.to_string(), slot);
        if let Purpose::Launch(_) = purpose {
            self.launches += 1;
        }
        if let Some(volume) = volume {
            self.volumes.insert(uid.to_string(), volume);
        }
        Ok(())
    }

    /// The root volume a launch for `uid` would add (none if one is counted for it already), if
    /// the launch and volume limits allow it.
    fn new_volume(
        &self,
        uid: &str,
        root: RootVolume,
        limits: &Ec2BudgetSpec,
        now: Timestamp,
        room: &Option<String>,
    ) -> Result<Option<Volume>, Refusal> {
        if let Some(max) = limits.max_launches_per_day
            && self.launches >= max
        {
            return Err(Refusal::MaxLaunches { launches: self.launches, max });
        }
        if root.gib > limits.max_root_volume_gib {
            return Err(Refusal::VolumeAboveMax { gib: root.gib, max: limits.max_root_volume_gib });
        }
        let hourly_usd = root.hourly.ok_or(Refusal::UnpricedVolume)?;
        let volume = Volume { gib: root.gib, hourly_usd, since: now, room: room.clone() };
        Ok((!self.volumes.contains_key(uid)).then_some(volume))
    }

    /// Counts an instance that is already billed (found in EC2), whatever the limits say.
    pub fn adopt(&mut self, uid: &str, slot: Slot, now: Timestamp) {
        self.roll(now);
        self.slots.entry(uid.to_string()).or_insert(slot);
    }

    /// Counts a root volume found in EC2 (its instance not terminated), whatever the limits say;
    /// one counted already takes the size seen (a launch may have assumed the image's). Returns
    /// whether anything changed.
    pub fn adopt_volume(&mut self, uid: &str, volume: Volume, now: Timestamp) -> bool {
        self.roll(now);
        match self.volumes.get_mut(uid) {
            Some(counted) if counted.gib == volume.gib => false,
            Some(counted) => {
                (counted.gib, counted.hourly_usd) = (volume.gib, volume.hourly_usd);
                true
            }
            None => {
                self.volumes.insert(uid.to_string(), volume);
                true
            }
        }
    }

    /// Ends `uid`'s volume at `now` (its instance is gone), settling its cost. Returns whether
    /// there was one.
    pub fn release_volume(&mut self, uid: &str, now: Timestamp) -> bool {
        self.roll(now);
        let Some(volume) = self.volumes.remove(uid) else { return false };
        self.settle(self.volume_cost(&volume, now), volume.room);
        true
    }

    fn settle(&mut self, cost: f64, room: Option<String>) {
        self.settled_usd += cost;
        if let Some(room) = room {
            *self.settled_by_room.entry(room).or_default() += cost;
        }
    }

    /// Ends `uid`'s run at `now`, settling its cost into today's spend. Returns whether it held one.
    pub fn release(&mut self, uid: &str, now: Timestamp) -> bool {
        self.roll(now);
        let Some(slot) = self.slots.remove(uid) else { return false };
        self.settle(self.cost(&slot, now), slot.room);
        true
    }

    /// Slots reserved before `before` whose uid is not in `keep` (used by the poller to let go of
    /// reservations whose instance is no longer billed).
    pub fn stale(&self, before: Timestamp, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let stale = self.slots.iter().filter(|(uid, s)| s.since < before && !keep(uid));
        stale.map(|(uid, _)| uid.clone()).collect()
    }

    /// Volumes counted before `before` whose uid is not in `keep` (their instance is gone).
    pub fn stale_volumes(&self, before: Timestamp, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let stale = self.volumes.iter().filter(|(uid, v)| v.since < before && !keep(uid));
        stale.map(|(uid, _)| uid.clone()).collect()
    }

    /// The persisted form (what cannot be recomputed from EC2) plus live figures for humans.
    pub fn snapshot(&mut self, now: Timestamp) -> Ec2BudgetStatus {
        let spend = self.spend_today(now);
        Ec2BudgetStatus {
            running_instances: self.slots.len() as u32,
            root_volume_gib: self.volumes.values().map(|v| v.gib).sum(),
            spend_today_usd: round(spend),
            settled_spend_usd: self.settled_usd,
            launches_today: self.launches,
            settled_spend_by_room_usd: self.settled_by_room.clone(),
            window_start: Some(self.window_start.to_string()),
            conditions: vec![],
        }
    }
}

fn round(usd: f64) -> f64 {
    (usd * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
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
        ledger
            .reserve(&ask("b", 3.6, Purpose::Start), &limits(5, 1000.0), at("2026-11-22T11:00:00Z"))
            .unwrap();
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
        assert!(
            ledger.reserve(&ask("b", 3.6, Purpose::Start), &l, evening).is_ok(),
            "starts are not launches"
        );
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
}
