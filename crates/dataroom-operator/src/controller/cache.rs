//! The controller's view of EC2: every managed instance by owner UID, refreshed wholesale by the
//! poller and updated in place by the controller's own actions.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cloud::Instance;

#[derive(Default)]
pub struct InstanceCache {
    by_owner: RwLock<HashMap<String, Instance>>,
    /// Counts the controller's own writes (`put`). A sweep notes the count when it starts
    /// (`epoch`); `replace` keeps what was put after that, which the sweep may not have seen: a
    /// stale "running" must not undo a stop just made, or the stop is made (and recorded) twice.
    writes: AtomicU64,
    /// Counts every change of the view (writes and sweeps), for those who keep what they made of it.
    changes: AtomicU64,
    /// The write count at each owner's latest `put`.
    written: RwLock<HashMap<String, u64>>,
    /// Woken when the controller puts an instance that is between states (it launched, started,
    /// stopped or terminated one), so that a poller in its steady interval looks again soon.
    pub transition: tokio::sync::Notify,
}

impl InstanceCache {
    pub fn get(&self, owner_uid: &str) -> Option<Instance> {
        self.by_owner.read().unwrap().get(owner_uid).cloned()
    }

    /// Calls `f` with the cached instance of `owner_uid`, if any, under the read lock (no copy).
    pub fn with<T>(&self, owner_uid: &str, f: impl FnOnce(Option<&Instance>) -> T) -> T {
        f(self.by_owner.read().unwrap().get(owner_uid))
    }

    /// A number that differs after any change of the view.
    pub fn version(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    /// The write count to pass to `replace` for a sweep that starts now.
    pub fn epoch(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    pub fn put(&self, instance: Instance) {
        if let Some(uid) = instance.owner_uid().map(str::to_string) {
            let settled = instance.state.is_settled();
            let mut by_owner = self.by_owner.write().unwrap();
            let write = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
            self.written.write().unwrap().insert(uid.clone(), write);
            by_owner.insert(uid, instance);
            self.changes.fetch_add(1, Ordering::SeqCst);
            drop(by_owner);
            if !settled {
                self.transition.notify_one();
            }
        }
    }

    /// Forgets `owner_uid`'s instance; like `put`, a sweep already on its way does not undo it.
    pub fn remove(&self, owner_uid: &str) {
        let mut by_owner = self.by_owner.write().unwrap();
        let write = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        self.written.write().unwrap().insert(owner_uid.to_string(), write);
        by_owner.remove(owner_uid);
        self.changes.fetch_add(1, Ordering::SeqCst);
    }

    pub fn len(&self) -> usize {
        self.by_owner.read().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether any cached instance satisfies `pred`.
    pub fn any(&self, pred: impl Fn(&Instance) -> bool) -> bool {
        self.by_owner.read().unwrap().values().any(pred)
    }

    /// All cached instances (a copy).
    pub fn all(&self) -> Vec<Instance> {
        self.by_owner.read().unwrap().values().cloned().collect()
    }

    /// Replaces the view with a full sweep that started at `epoch`, except for what the controller
    /// put since, and returns the instances whose state or addresses changed, appeared or
    /// disappeared (the last as the old entry).
    pub fn replace(&self, sweep: Vec<Instance>, epoch: u64) -> Vec<Instance> {
        let mut fresh: HashMap<String, Instance> = HashMap::with_capacity(sweep.len());
        for instance in sweep {
            let Some(uid) = instance.owner_uid().map(str::to_string) else {
                continue;
            };
            // An owner may have a terminated instance beside its replacement: the live one wins.
            let keep_old = fresh.get(&uid).is_some_and(|old| !old.state.is_gone());
            if !keep_old {
                fresh.insert(uid, instance);
            }
        }
        let mut current = self.by_owner.write().unwrap();
        let mut written = self.written.write().unwrap();
        written.retain(|_, write| *write > epoch);
        for uid in written.keys() {
            match current.get(uid) {
                Some(newer) => fresh.insert(uid.clone(), newer.clone()),
                None => fresh.remove(uid),
            };
        }
        drop(written);
        let mut changed: Vec<Instance> = fresh
            .iter()
            .filter(|(uid, new)| current.get(*uid).is_none_or(|old| differs(old, new)))
            .map(|(_, new)| new.clone())
            .collect();
        let gone = current.iter().filter(|(uid, _)| !fresh.contains_key(*uid));
        changed.extend(gone.map(|(_, old)| old.clone()));
        *current = fresh;
        self.changes.fetch_add(1, Ordering::SeqCst);
        changed
    }
}

fn differs(old: &Instance, new: &Instance) -> bool {
    old.id != new.id
        || old.state != new.state
        || old.public_ip != new.public_ip
        || old.private_ip != new.private_ip
        || old.launch_time != new.launch_time
        // Changed by the operator's own updates, or outside it (drift to correct).
        || old.instance_type != new.instance_type
        || old.security_group_ids != new.security_group_ids
        || old.tags != new.tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{InstanceState, TAG_OWNER_UID};

    fn instance(state: InstanceState) -> Instance {
        Instance {
            id: "i-1".into(),
            state,
            instance_type: "t3.micro".into(),
            image_id: "ami-1".into(),
            key_name: None,
            public_ip: None,
            private_ip: None,
            launch_time: None,
            tags: [(TAG_OWNER_UID.to_string(), "uid".to_string())].into(),
            security_group_ids: vec![],
        }
    }

    /// A sweep that started before the controller stopped the instance still says "running";
    /// it must not undo the stop, or the next reconcile stops (and records) it again.
    #[test]
    fn a_sweep_older_than_a_write_does_not_undo_it() {
        let cache = InstanceCache::default();
        cache.replace(vec![instance(InstanceState::Running)], cache.epoch());
        let started = cache.epoch();
        cache.put(instance(InstanceState::Stopping));
        let changed = cache.replace(vec![instance(InstanceState::Running)], started);
        assert_eq!(cache.get("uid").unwrap().state, InstanceState::Stopping);
        assert!(changed.is_empty(), "{changed:?}");
        // The next sweep started after the write: it is the truth again.
        cache.replace(vec![instance(InstanceState::Stopped)], cache.epoch());
        assert_eq!(cache.get("uid").unwrap().state, InstanceState::Stopped);
        // A removal is a write too.
        let started = cache.epoch();
        cache.remove("uid");
        cache.replace(vec![instance(InstanceState::Stopped)], started);
        assert!(cache.get("uid").is_none());
    }
}
