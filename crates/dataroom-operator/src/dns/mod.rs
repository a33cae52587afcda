//! Rooms by name: the DNS name a room is published under, which room owns a name two rooms ask
//! for, what to change in the zone, and the port to the zone itself (the sandbox's own DNS
//! server; Route53 and ExternalDNS's `DNSEndpoint` are the cluster's). Decisions are pure; the
//! controller's `dataroom::dns` does the calls.

use std::net::Ipv4Addr;

use async_trait::async_trait;

use crate::cloud::CloudError;

pub mod external;
#[cfg(feature = "aws")]
pub mod route53;

/// The zone a room is published in: creates, replaces and removes A records. Removing a name
/// that has no record succeeds.
#[async_trait]
pub trait Publisher: Send + Sync + 'static {
    /// The zone's name (`rooms.example.com`), without a trailing dot.
    fn zone(&self) -> &str;
    async fn publish(&self, name: &str, address: Ipv4Addr) -> Result<(), CloudError>;
    async fn unpublish(&self, name: &str) -> Result<(), CloudError>;
}

/// `<name>.<namespace>.<zone>`, or `<hostname>.<zone>` when the room names its own.
pub fn room_name(name: &str, namespace: &str, hostname: Option<&str>, zone: &str) -> String {
    match hostname {
        Some(hostname) => format!("{hostname}.{zone}"),
        None => format!("{name}.{namespace}.{zone}"),
    }
}

/// A room that asks for a name: who, which name, since when.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    /// `namespace/name`.
    pub room: String,
    pub name: String,
    /// RFC 3339 creation time: the older claim wins.
    pub since: String,
}

/// The room that owns `name`: the oldest of those claiming it (ties by room key).
pub fn owner<'a>(name: &str, claims: &'a [Claim]) -> Option<&'a str> {
    let claiming = claims.iter().filter(|c| c.name == name);
    claiming.min_by(|a, b| (&a.since, &a.room).cmp(&(&b.since, &b.room))).map(|c| c.room.as_str())
}

/// What the zone holds for a room, as this process last made it.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    At(String, Ipv4Addr),
    Absent(String),
}

/// One change to the zone.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Publish(String, Ipv4Addr),
    Unpublish(String),
}

/// The changes that bring the zone from `last` (unknown after a restart: everything is made
/// again, which is idempotent) to `wanted`: a name and address while the room is Ready, else
/// nothing under `name`. A room that does not own `name` (an older room asked for it first)
/// never touches it: the record is the owner's.
pub fn changes(name: &str, owned: bool, wanted: Option<Ipv4Addr>, last: Option<&Record>) -> Vec<Change> {
    let mut out = Vec::new();
    // A name the room no longer has (its hostname changed) goes first.
    if let Some(Record::At(old, _)) = last.filter(|r| !matches!(r, Record::At(n, _) if n == name)) {
        out.push(Change::Unpublish(old.clone()));
    }
    if !owned {
        return out;
    }
    let now = match wanted {
        Some(address) => Record::At(name.to_string(), address),
        None => Record::Absent(name.to_string()),
    };
    if last != Some(&now) {
        out.push(match now {
            Record::At(name, address) => Change::Publish(name, address),
            Record::Absent(name) => Change::Unpublish(name),
        });
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);
    const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);

    #[test]
    fn a_room_is_named_in_its_namespace_unless_it_names_itself() {
        assert_eq!(room_name("investor-x", "default", None, "rooms.test"), "investor-x.default.rooms.test");
        assert_eq!(room_name("investor-x", "default", Some("deals"), "rooms.test"), "deals.rooms.test");
    }

    #[test]
    fn the_oldest_claim_owns_a_name() {
        let claim = |room: &str, name: &str, since: &str| Claim {
            room: room.into(),
            name: name.into(),
            since: since.into(),
        };
        let claims = [
            claim("b/late", "deals.z", "2026-12-02T10:00:00Z"),
            claim("a/early", "deals.z", "2026-12-01T10:00:00Z"),
            claim("c/other", "other.z", "2026-11-01T10:00:00Z"),
        ];
        assert_eq!(owner("deals.z", &claims), Some("a/early"));
        assert_eq!(owner("other.z", &claims), Some("c/other"));
        assert_eq!(owner("free.z", &claims), None);
    }

    #[test]
    fn the_zone_follows_the_room_and_repeats_nothing() {
        let at = |n: &str, ip| Record::At(n.into(), ip);
        let cases: [(Option<Ipv4Addr>, Option<Record>, Vec<Change>); 7] = [
            // Ready: published once, then left alone.
            (Some(IP), None, vec![Change::Publish("r.z".into(), IP)]),
            (Some(IP), Some(at("r.z", IP)), vec![]),
            // A new instance: the record follows it.
            (Some(OTHER), Some(at("r.z", IP)), vec![Change::Publish("r.z".into(), OTHER)]),
            // Stopped, failed or deleted: removed, also when this process does not know (a restart).
            (None, Some(at("r.z", IP)), vec![Change::Unpublish("r.z".into())]),
            (None, None, vec![Change::Unpublish("r.z".into())]),
            (None, Some(Record::Absent("r.z".into())), vec![]),
            // A new hostname: the old name goes, the new one comes.
            (
                Some(IP),
                Some(at("old.z", IP)),
                vec![Change::Unpublish("old.z".into()), Change::Publish("r.z".into(), IP)],
            ),
        ];
        for (wanted, last, expected) in cases {
            assert_eq!(changes("r.z", true, wanted, last.as_ref()), expected, "{wanted:?} {last:?}");
        }
        // A name another room owns is left to it, whatever this room's state; its own old name goes.
        assert_eq!(changes("r.z", false, None, None), vec![]);
        assert_eq!(changes("r.z", false, Some(IP), Some(&at("r.z", IP))), vec![]);
        assert_eq!(
            changes("r.z", false, None, Some(&at("old.z", IP))),
            vec![Change::Unpublish("old.z".into())]
        );
    }
}
