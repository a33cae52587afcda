//! Object storage with one global, monotonic resourceVersion and a bounded event history that
//! watches resume from (older versions get 410 Gone, as after etcd compaction).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use serde_json::Value;
use tokio::sync::broadcast;

#[derive(Clone, Debug)]
pub struct WatchEvent {
    pub rv: u64,
    /// Storage key of the resource type (`group/plural`).
    pub key: String,
    pub kind: &'static str,
    pub object: Value,
}

/// (type key, namespace or "", name)
pub type ObjectKey = (String, String, String);

struct Inner {
    rv: u64,
    objects: BTreeMap<ObjectKey, Value>,
    history: VecDeque<WatchEvent>,
    /// Leaf paths each field manager set by its last apply: (uid, manager, subresource) → paths.
    applied: HashMap<(String, String, String), Vec<String>>,
}

pub struct Store {
    inner: Mutex<Inner>,
    events: broadcast::Sender<WatchEvent>,
    history_limit: usize,
}

/// What must hold for a write to go ahead, checked under the store's lock.
#[derive(Clone, Copy, Debug)]
pub enum Precondition<'a> {
    /// Create: no object may exist under the key.
    Absent,
    /// Update: the stored object must still be at this resourceVersion.
    Version(&'a str),
}

/// A write lost a race (or the object already exists, for `Absent`).
#[derive(Debug)]
pub struct Conflict;

/// The requested resourceVersion is older than the retained history.
#[derive(Debug)]
pub struct Gone;

impl Store {
    pub fn new(history_limit: usize) -> Self {
        let inner =
            Inner { rv: 1, objects: BTreeMap::new(), history: VecDeque::new(), applied: HashMap::new() };
        Self { inner: Mutex::new(inner), events: broadcast::channel(65_536).0, history_limit }
    }

    pub fn get(&self, key: &ObjectKey) -> Option<Value> {
        self.inner.lock().unwrap().objects.get(key).cloned()
    }

    /// Objects of type `type_key`, in `namespace` (all when `None`), sorted by namespace and name.
    pub fn list(&self, type_key: &str, namespace: Option<&str>) -> (Vec<Value>, u64) {
        let inner = self.inner.lock().unwrap();
        let items = inner
            .objects
            .iter()
            .filter(|((t, ns, _), _)| t == type_key && namespace.is_none_or(|n| n == ns))
            .map(|(_, v)| v.clone())
            .collect();
        (items, inner.rv)
    }

    /// The objects of any type that satisfy `pred` (for cascading deletion and namespace cleanup).
    pub fn select(&self, pred: impl Fn(&ObjectKey, &Value) -> bool) -> Vec<(ObjectKey, Value)> {
        let inner = self.inner.lock().unwrap();
        inner.objects.iter().filter(|(k, v)| pred(k, v)).map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Stores `object` under a new resourceVersion and records the event; returns what was stored.
    pub fn put(&self, key: ObjectKey, mut object: Value, pre: Precondition) -> Result<Value, Conflict> {
        let mut inner = self.inner.lock().unwrap();
        let current = inner.objects.get(&key).map(|o| o["metadata"]["resourceVersion"].clone());
        let kind = match (pre, current) {
            (Precondition::Absent, None) => "ADDED",
            (Precondition::Version(rv), Some(Value::String(now))) if now == rv => "MODIFIED",
            _ => return Err(Conflict),
        };
        inner.rv += 1;
        let rv = inner.rv;
        object["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        inner.objects.insert(key.clone(), object.clone());
        self.record(&mut inner, WatchEvent { rv, key: key.0, kind, object: object.clone() });
        Ok(object)
    }

    /// Removes the object, recording a DELETED event under a new resourceVersion.
    pub fn remove(&self, key: &ObjectKey) -> Option<Value> {
        let mut inner = self.inner.lock().unwrap();
        let mut object = inner.objects.remove(key)?;
        inner.rv += 1;
        let rv = inner.rv;
        object["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let uid = object["metadata"]["uid"].as_str().unwrap_or_default().to_string();
        inner.applied.retain(|(u, _, _), _| *u != uid);
        self.record(
            &mut inner,
            WatchEvent { rv, key: key.0.clone(), kind: "DELETED", object: object.clone() },
        );
        Some(object)
    }

    fn record(&self, inner: &mut Inner, event: WatchEvent) {
        inner.history.push_back(event.clone());
        while inner.history.len() > self.history_limit {
            inner.history.pop_front();
        }
        let _ = self.events.send(event);
    }

    /// Events after `rv` still in history, and a receiver for every later one, taken atomically.
    pub fn watch_from(&self, rv: u64) -> Result<(Vec<WatchEvent>, broadcast::Receiver<WatchEvent>), Gone> {
        let inner = self.inner.lock().unwrap();
        let oldest = inner.history.front().map_or(inner.rv + 1, |e| e.rv);
        if rv + 1 < oldest && rv < inner.rv {
            return Err(Gone);
        }
        let past = inner.history.iter().filter(|e| e.rv > rv).cloned().collect();
        Ok((past, self.events.subscribe()))
    }

    /// Every object and the current resourceVersion, for saving to disk.
    pub fn snapshot(&self) -> Value {
        let inner = self.inner.lock().unwrap();
        let objects: Vec<Value> =
            inner.objects.iter().map(|((t, ns, name), o)| serde_json::json!([t, ns, name, o])).collect();
        // Which fields each manager applied: a real API server keeps them in managedFields, so
        // an apply after a restart still removes what the manager applied before and omits now.
        let applied: Vec<Value> = inner
            .applied
            .iter()
            .map(|((uid, m, sub), paths)| serde_json::json!([uid, m, sub, paths]))
            .collect();
        serde_json::json!({ "resourceVersion": inner.rv, "objects": objects, "applied": applied })
    }

    /// Replaces the contents with a snapshot. History starts empty, so older watches get 410.
    pub fn restore(&self, snapshot: &Value) {
        let mut inner = self.inner.lock().unwrap();
        inner.rv = snapshot["resourceVersion"].as_u64().unwrap_or(1);
        inner.objects.clear();
        inner.history.clear();
        for entry in snapshot["objects"].as_array().into_iter().flatten() {
            let part = |i: usize| entry[i].as_str().unwrap_or_default().to_string();
            inner.objects.insert((part(0), part(1), part(2)), entry[3].clone());
        }
        inner.applied.clear();
        for entry in snapshot["applied"].as_array().into_iter().flatten() {
            let part = |i: usize| entry[i].as_str().unwrap_or_default().to_string();
            let paths = serde_json::from_value(entry[3].clone()).unwrap_or_default();
            inner.applied.insert((part(0), part(1), part(2)), paths);
        }
    }

    pub fn applied_paths(&self, uid: &str, manager: &str, sub: &str) -> Vec<String> {
        let inner = self.inner.lock().unwrap();
        inner.applied.get(&(uid.into(), manager.into(), sub.into())).cloned().unwrap_or_default()
    }

    /// Other managers' applied paths on the object, for conflict checks.
    pub fn others_applied(&self, uid: &str, manager: &str, sub: &str) -> Vec<(String, Vec<String>)> {
        let inner = self.inner.lock().unwrap();
        let others = inner.applied.iter().filter(|((u, m, s), _)| u == uid && m != manager && s == sub);
        others.map(|((_, m, _), paths)| (m.clone(), paths.clone())).collect()
    }

    pub fn set_applied_paths(&self, uid: &str, manager: &str, sub: &str, paths: Vec<String>) {
        self.inner.lock().unwrap().applied.insert((uid.into(), manager.into(), sub.into()), paths);
    }
}
