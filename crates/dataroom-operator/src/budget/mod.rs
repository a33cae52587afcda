//! The one gate every launch and start passes through, from every path. A reservation is taken
//! atomically (one mutex around the ledger) before EC2 is called, so concurrent callers can never
//! exceed the limits; it is released when the instance is seen stopped or gone.

mod ledger;
pub mod pricing;

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

pub use ledger::{Ask, Ledger, Purpose, Refusal, RootVolume, Slot, Volume, day_start};

use crate::clock::Clock;
use crate::crd::{Ec2BudgetSpec, Ec2BudgetStatus};
use crate::instance::{DEFAULT_ROOT_VOLUME_GIB, Instance};
use pricing::PriceTable;

/// Proof that the gate granted `uid` a slot. Only [`Gate::reserve`] makes one (the field is
/// private to this module), and the cloud's lifecycle port takes one for every launch and start:
/// a call that incurs cost without passing the gate does not compile.
#[derive(Debug)]
#[must_use = "a reservation is held until released; hand it to the launch or start it was taken for"]
pub struct Reservation {
    uid: String,
}

impl Reservation {
    /// The object the slot is held for.
    pub fn uid(&self) -> &str {
        &self.uid
    }
}

/// Proof that the gate counted `uid`'s root volume at a larger size. Only [`Gate::grow_volume`]
/// makes one, and the lifecycle port's volume growth takes one.
#[derive(Debug)]
pub struct VolumeGrowth {
    gib: u32,
}

impl VolumeGrowth {
    pub fn gib(&self) -> u32 {
        self.gib
    }
}

pub struct Gate {
    ledger: Mutex<Ledger>,
    limits: Mutex<Ec2BudgetSpec>,
    prices: PriceTable,
    region: String,
    clock: Clock,
    /// Bumped whenever usage changes: the persister writes status, the controller retries refusals.
    changed: watch::Sender<u64>,
}

impl Gate {
    pub fn new(prices: PriceTable, region: &str, clock: Clock) -> Self {
        let now = clock();
        Self {
            ledger: Mutex::new(Ledger::new(now)),
            limits: Mutex::new(Ec2BudgetSpec::default()),
            prices,
            region: region.to_string(),
            clock,
            changed: watch::channel(0).0,
        }
    }

    pub fn hourly_price(&self, instance_type: &str) -> Option<f64> {
        self.prices.hourly(&self.region, instance_type)
    }

    /// A launch, with the root volume it creates priced: `gib` as the spec asks, or (the image's
    /// own size, unknown until launch) the usual one; the sweep counts the real size after.
    pub fn launch(&self, root_volume_gib: Option<i32>) -> Purpose {
        let gib = root_volume_gib.map_or(DEFAULT_ROOT_VOLUME_GIB, |gib| u32::try_from(gib).unwrap_or(0));
        Purpose::Launch(RootVolume { gib, hourly: self.prices.root_volume_hourly(&self.region, gib) })
    }

    pub fn limits(&self) -> Ec2BudgetSpec {
        self.limits.lock().unwrap().clone()
    }

    /// Applies new limits (from the `Ec2Budget` object, or the defaults when it is absent).
    pub fn set_limits(&self, limits: Ec2BudgetSpec) {
        let mut current = self.limits.lock().unwrap();
        if *current != limits {
            *current = limits;
            drop(current);
            self.notify();
        }
    }

    /// Resumes today's settled spend and launch count from the persisted status.
    pub fn restore(&self, status: &Ec2BudgetStatus) {
        self.ledger.lock().unwrap().resume(status, (self.clock)());
    }

    /// Reserves a slot for `uid` (serving the DataRoom `room`, if any); holding one already is
    /// success. The reservation is what the lifecycle port's launch and start take.
    pub fn reserve(
        &self,
        uid: &str,
        instance_type: &str,
        purpose: Purpose,
        room: Option<&str>,
    ) -> Result<Reservation, Refusal> {
        self.decide(uid, instance_type, purpose, room, true)?;
        self.notify();
        Ok(Reservation { uid: uid.to_string() })
    }

    /// Whether a reservation for a new instance of `instance_type` would be granted now, without
    /// taking one (the admin API's pre-check; the controller's `reserve` still decides).
    pub fn check(&self, instance_type: &str, purpose: Purpose) -> Result<(), Refusal> {
        self.decide("\0pre-check", instance_type, purpose, None, false)
    }

    /// Whether `uid`'s instance, were it of `instance_type`, would be granted its slot now: its
    /// current slot given back first, so that the change is judged on the new price alone. Asked
    /// before an instance is stopped to change its type, so that a refused type stops nothing.
    pub fn check_retype(&self, uid: &str, instance_type: &str, room: Option<&str>) -> Result<(), Refusal> {
        let limits = self.limits();
        let ask = self.ask(uid, instance_type, Purpose::Start, room, &limits);
        let now = (self.clock)();
        let mut ledger = self.ledger.lock().unwrap().clone();
        ledger.release(uid, now);
        ledger.reserve(&ask, &limits, now)
    }

    /// Counts `uid`'s root volume at `gib` from now, if the limits allow it.
    pub fn grow_volume(&self, uid: &str, gib: u32) -> Result<VolumeGrowth, Refusal> {
        let root = RootVolume { gib, hourly: self.prices.root_volume_hourly(&self.region, gib) };
        let now = (self.clock)();
        self.ledger.lock().unwrap().grow_volume(uid, root, &self.limits(), now)?;
        self.notify();
        Ok(VolumeGrowth { gib })
    }

    fn ask<'a>(
        &self,
        uid: &'a str,
        instance_type: &'a str,
        purpose: Purpose,
        room: Option<&'a str>,
        limits: &Ec2BudgetSpec,
    ) -> Ask<'a> {
        Ask {
            uid,
            instance_type,
            hourly: self.hourly_price(instance_type),
            max_hourly: self.hourly_price(&limits.max_instance_type),
            purpose,
            room,
        }
    }

    fn decide(
        &self,
        uid: &str,
        instance_type: &str,
        purpose: Purpose,
        room: Option<&str>,
        keep: bool,
    ) -> Result<(), Refusal> {
        let limits = self.limits();
        let ask = self.ask(uid, instance_type, purpose, room, &limits);
        let now = (self.clock)();
        let mut ledger = self.ledger.lock().unwrap();
        match keep {
            true => ledger.reserve(&ask, &limits, now),
            false => ledger.clone().reserve(&ask, &limits, now),
        }
    }

    /// Ends `uid`'s billed run, if it has one.
    pub fn release(&self, uid: &str) {
        let now = (self.clock)();
        if self.ledger.lock().unwrap().release(uid, now) {
            self.notify();
        }
    }

    /// Counts an instance found billed in EC2 (adopted, or started out of band).
    pub fn adopt(&self, uid: &str, instance: &Instance) {
        let now = (self.clock)();
        let slot = Slot {
            instance_type: instance.instance_type.clone(),
            hourly_usd: self.hourly_price(&instance.instance_type).unwrap_or(0.0),
            since: instance.launch_time.unwrap_or(now).min(now),
            room: instance.room(),
        };
        let mut ledger = self.ledger.lock().unwrap();
        if !ledger.holds(uid) {
            ledger.adopt(uid, slot, now);
            drop(ledger);
            self.notify();
        }
    }

    pub fn holds(&self, uid: &str) -> bool {
        self.ledger.lock().unwrap().holds(uid)
    }

    /// Makes the slots and volumes match a full sweep of EC2 that started at `swept_at`: billed
    /// instances are counted, and slots reserved before the sweep whose instance is not billed
    /// are released. A retained instance (its object deleted, so nothing of it can be in flight)
    /// gives its slot back as soon as it is seen stopped or gone. Every instance not gone keeps
    /// its root volume counted; the volumes of the rest are settled.
    pub fn sync(&self, instances: &[Instance], swept_at: jiff::Timestamp) {
        self.sync_volumes(instances, swept_at);
        let billed: HashMap<&str, &Instance> = instances
            .iter()
            .filter(|i| i.state.is_billed())
            .filter_map(|i| Some((i.owner_uid()?, i)))
            .collect();
        for (uid, instance) in &billed {
            self.adopt(uid, instance);
        }
        let retained_idle: Vec<&str> = instances
            .iter()
            .filter(|i| i.is_retained() && !i.state.is_billed())
            .filter_map(Instance::owner_uid)
            .filter(|uid| !billed.contains_key(uid))
            .collect();
        let stale = self.ledger.lock().unwrap().stale(swept_at, |uid| billed.contains_key(uid));
        for uid in stale.iter().map(String::as_str).chain(retained_idle) {
            self.release(uid);
        }
    }

    fn sync_volumes(&self, instances: &[Instance], swept_at: jiff::Timestamp) {
        let now = (self.clock)();
        let existing: HashMap<&str, &Instance> = instances
            .iter()
            .filter(|i| !i.state.is_gone())
            .filter_map(|i| Some((i.owner_uid()?, i)))
            .collect();
        let mut ledger = self.ledger.lock().unwrap();
        let mut changed = false;
        for (uid, instance) in &existing {
            let gib = instance.root_volume_gib();
            let hourly_usd = self.prices.root_volume_hourly(&self.region, gib).unwrap_or(0.0);
            let since = instance.launch_time.unwrap_or(now).min(now);
            let volume = Volume { gib, hourly_usd, since, room: instance.room() };
            changed |= ledger.adopt_volume(uid, volume, now);
        }
        for uid in ledger.stale_volumes(swept_at, |uid| existing.contains_key(uid)) {
            changed |= ledger.release_volume(&uid, now);
        }
        drop(ledger);
        if changed {
            self.notify();
        }
    }

    /// Spend so far today of the DataRoom `room` (`namespace/name`).
    pub fn room_spend_today(&self, room: &str) -> f64 {
        self.ledger.lock().unwrap().room_spend_today(room, (self.clock)())
    }

    pub fn snapshot(&self) -> Ec2BudgetStatus {
        self.ledger.lock().unwrap().snapshot((self.clock)())
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n += 1);
    }
}
