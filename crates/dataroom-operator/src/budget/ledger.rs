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

    /// Grows `uid`'s root volume to `root.gib` if the volume limits and the day's cap allow the
    /// larger one until midnight UTC; the smaller one's cost so far is settled.
    pub fn grow_volume(
        &mut self,
        uid: &str,
        root: RootVolume,
        limits: &Ec2BudgetSpec,
        now: Timestamp,
    ) -> Result<(), Refusal> {
        self.roll(now);
        if root.gib > limits.max_root_volume_gib {
            return Err(Refusal::VolumeAboveMax { gib: root.gib, max: limits.max_root_volume_gib });
        }
        let hourly_usd = root.hourly.ok_or(Refusal::UnpricedVolume)?;
        let old = self.volumes.remove(uid);
        let old_hourly = old.as_ref().map_or(0.0, |v| v.hourly_usd);
        let end = self.window_end();
        let cost = (hourly_usd - old_hourly).max(0.0) * hours_between(now, end);
        let projected = self.projected() + old.as_ref().map_or(0.0, |v| self.volume_cost(v, end));
        if projected + cost > limits.daily_spend_usd + 1e-9 {
            if let Some(old) = old {
                self.volumes.insert(uid.to_string(), old);
            }
            return Err(Refusal::DailySpend { projected, cost, cap: limits.daily_spend_usd });
        }
        let room = old.as_ref().and_then(|v| v.room.clone());
        if let Some(old) = old {
            self.settle(self.volume_cost(&old, now), old.room);
        }
        self.volumes.insert(uid.to_string(), Volume { gib: root.gib, hourly_usd, since: now, room });
        Ok(())
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
mod tests;
