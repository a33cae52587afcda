//! The controller's view of EC2: every managed instance by owner UID, refreshed wholesale by the
//! poller and updated in place by the controller's own actions.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::cloud::Instance;

#[derive(Default)]
pub struct InstanceCache {
    by_owner: RwLock<HashMap<String, Instance>>,
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

    pub fn put(&self, instance: Instance) {
        if let Some(uid) = instance.owner_uid().map(str::to_string) {
            let settled = instance.state.is_settled();
            self.by_owner.write().unwrap().insert(uid, instance);
            if !settled {
                self.transition.notify_one();
            }
        }
    }

    pub fn remove(&self, owner_uid: &str) {
        self.by_owner.write().unwrap().remove(owner_uid);
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

    /// Replaces the view with a full sweep and returns the instances whose state or addresses
    /// changed, appeared or disappeared (the last as the old entry).
    pub fn replace(&self, sweep: Vec<Instance>) -> Vec<Instance> {
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
        let mut changed: Vec<Instance> = fresh
            .iter()
            .filter(|(uid, new)| current.get(*uid).is_none_or(|old| differs(old, new)))
            .map(|(_, new)| new.clone())
            .collect();
        let gone = current.iter().filter(|(uid, _)| !fresh.contains_key(*uid));
        changed.extend(gone.map(|(_, old)| old.clone()));
        *current = fresh;
        changed
    }
}

fn differs(old: &Instance, new: &Instance) -> bool {
    old.id != new.id
        || old.state != new.state
        || old.public_ip != new.public_ip
        || old.private_ip != new.private_ip
        || old.launch_time != new.launch_time
}
