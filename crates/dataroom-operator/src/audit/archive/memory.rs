//! An archive in memory that keeps versions as a versioned, locked bucket does: for unit tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Archive, ArchiveError, Listed};

#[derive(Default)]
pub struct MemoryArchive {
    /// Each key's versions, oldest first.
    objects: Mutex<BTreeMap<String, Vec<Vec<u8>>>>,
    /// Calls made so far, and the one (counted from 1) whose effect happens but whose answer is lost.
    calls: Mutex<(usize, Option<usize>)>,
}

impl MemoryArchive {
    /// What an attacker with write access (but no way past the lock) can do: add a version.
    pub fn write_over(&self, key: &str, body: &[u8]) {
        self.objects.lock().unwrap().entry(key.to_string()).or_default().push(body.to_vec());
    }

    pub fn keys(&self) -> Vec<String> {
        self.objects.lock().unwrap().keys().cloned().collect()
    }

    /// Call `n` (from 1) does what it was asked, then answers with an error, as a lost answer would.
    pub fn lose_answer_to(&self, n: usize) {
        self.calls.lock().unwrap().1 = Some(n);
    }

    /// The answer to this call, given what it did.
    fn answer<T>(&self, done: Result<T, ArchiveError>) -> Result<T, ArchiveError> {
        let mut calls = self.calls.lock().unwrap();
        calls.0 += 1;
        if calls.1 == Some(calls.0) {
            return Err(ArchiveError::Unavailable("the answer was lost (test)".into()));
        }
        done
    }
}

#[async_trait]
impl Archive for MemoryArchive {
    async fn put_once(&self, key: &str, body: Vec<u8>) -> Result<(), ArchiveError> {
        let mut objects = self.objects.lock().unwrap();
        let done = match objects.get(key).and_then(|v| v.first()) {
            Some(first) if *first == body => Ok(()),
            Some(_) => Err(ArchiveError::Conflict { key: key.to_string() }),
            None => {
                objects.insert(key.to_string(), vec![body]);
                Ok(())
            }
        };
        self.answer(done)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, ArchiveError> {
        let objects = self.objects.lock().unwrap();
        let listed = objects.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(key, versions)| Listed {
            key: key.clone(),
            versions: (0..versions.len()).map(|v| v.to_string()).collect(),
            delete_markers: 0,
        });
        self.answer(Ok(listed.collect()))
    }

    async fn read(&self, key: &str, version: &str) -> Result<Vec<u8>, ArchiveError> {
        let objects = self.objects.lock().unwrap();
        let found = version.parse::<usize>().ok().and_then(|v| objects.get(key)?.get(v).cloned());
        self.answer(found.ok_or_else(|| ArchiveError::Unavailable(format!("{key}: no such version"))))
    }
}
