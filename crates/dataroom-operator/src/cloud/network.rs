//! Security groups, as decisions: which ingress rule of a named group opens SSH to the whole
//! internet (such a group is refused), and what the operator's own group in a VPC must allow
//! (SSH and the health port from the operator's address range, nothing else) compared with what
//! it allows now. The cloud implementations do only the calls.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// One ingress permission for one source range (EC2's `IpPermission`, flattened per CIDR).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Permission {
    /// `tcp`, `udp`, `icmp`, a protocol number, or `-1` for every protocol.
    pub protocol: String,
    /// The port range (`-1` for every port, as EC2 reports it for protocol `-1`).
    pub from_port: i32,
    pub to_port: i32,
    /// An IPv4 or IPv6 range.
    pub cidr: String,
}

impl Permission {
    pub fn tcp(port: u16, cidr: &str) -> Self {
        Permission { protocol: "tcp".into(), from_port: port.into(), to_port: port.into(), cidr: cidr.into() }
    }

    fn admits_tcp(&self, port: i32) -> bool {
        match self.protocol.as_str() {
            "-1" | "all" => true,
            "tcp" | "6" => self.from_port == -1 || (self.from_port..=self.to_port).contains(&port),
            _ => false,
        }
    }

    fn describe(&self) -> String {
        let ports = match (self.protocol.as_str(), self.from_port) {
            ("-1" | "all", _) => "all traffic".to_string(),
            (protocol, -1) => format!("{protocol} on every port"),
            (protocol, from) if from == self.to_port => format!("{protocol} port {from}"),
            (protocol, from) => format!("{protocol} ports {from}-{}", self.to_port),
        };
        format!("{ports} from {}", self.cidr)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecurityGroup {
    pub id: String,
    pub name: String,
    pub vpc_id: Option<String>,
    pub ingress: Vec<Permission>,
}

/// The group the operator manages in the VPC of `subnet_id` (the default VPC without one).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManagedGroup {
    pub subnet_id: Option<String>,
    /// TCP ports instances are reached on: SSH and the rooms' health port.
    pub ports: Vec<u16>,
    /// Where the operator connects from; empty means the VPC's own ranges.
    pub sources: Vec<String>,
}

/// The name of the operator's group in `vpc_id`.
pub fn managed_group_name(vpc_id: &str) -> String {
    format!("dataroom-operator-{vpc_id}")
}

const WORLD: [&str; 2] = ["0.0.0.0/0", "::/0"];

/// The first rule among `groups` that lets the whole internet reach port 22, described so that a
/// person can find and fix it (`sg-1 (web) allows tcp ports 0-65535 from 0.0.0.0/0`).
pub fn ssh_open_to_world(groups: &[SecurityGroup]) -> Option<String> {
    groups.iter().find_map(|group| {
        let open = group.ingress.iter().find(|p| WORLD.contains(&p.cidr.as_str()) && p.admits_tcp(22))?;
        Some(format!(
            "security group {} ({}) allows {}, which opens SSH to the internet",
            group.id,
            group.name,
            open.describe()
        ))
    })
}

/// What the operator's group must allow: each port over TCP from each source.
pub fn wanted(group: &ManagedGroup, sources: &[String]) -> BTreeSet<Permission> {
    let ports = group.ports.iter();
    ports.flat_map(|port| sources.iter().map(move |cidr| Permission::tcp(*port, cidr))).collect()
}

/// The permissions to add and to remove so that `current` becomes exactly `wanted`.
pub fn changes(current: &[Permission], wanted: &BTreeSet<Permission>) -> (Vec<Permission>, Vec<Permission>) {
    let current: BTreeSet<&Permission> = current.iter().collect();
    let add = wanted.iter().filter(|p| !current.contains(p)).cloned().collect();
    let remove = current.into_iter().filter(|p| !wanted.contains(*p)).cloned().collect();
    (add, remove)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(ingress: Vec<Permission>) -> SecurityGroup {
        SecurityGroup { id: "sg-1".into(), name: "web".into(), vpc_id: Some("vpc-1".into()), ingress }
    }

    fn rule(protocol: &str, from: i32, to: i32, cidr: &str) -> Permission {
        Permission { protocol: protocol.into(), from_port: from, to_port: to, cidr: cidr.into() }
    }

    #[test]
    fn a_rule_that_opens_port_22_to_the_internet_is_named() {
        let cases = [
            (rule("tcp", 22, 22, "0.0.0.0/0"), Some("tcp port 22 from 0.0.0.0/0")),
            (rule("tcp", 0, 65535, "::/0"), Some("tcp ports 0-65535 from ::/0")),
            (rule("-1", -1, -1, "0.0.0.0/0"), Some("all traffic from 0.0.0.0/0")),
            (rule("6", 20, 30, "0.0.0.0/0"), Some("6 ports 20-30 from 0.0.0.0/0")),
            (rule("tcp", -1, -1, "0.0.0.0/0"), Some("tcp on every port from 0.0.0.0/0")),
            (rule("tcp", 22, 22, "10.0.0.0/8"), None),
            (rule("tcp", 443, 443, "0.0.0.0/0"), None),
            (rule("udp", 22, 22, "0.0.0.0/0"), None),
            (rule("tcp", 23, 100, "::/0"), None),
            (rule("tcp", 22, 22, "0.0.0.0/1"), None),
        ];
        for (permission, named) in cases {
            let found =
                ssh_open_to_world(&[group(vec![rule("tcp", 8000, 8000, "10.0.0.0/8"), permission.clone()])]);
            match named {
                Some(text) => {
                    let found = found.unwrap_or_else(|| panic!("{permission:?} not found"));
                    assert!(found.contains("sg-1 (web)") && found.contains(text), "{found}");
                }
                None => assert_eq!(found, None, "{permission:?}"),
            }
        }
    }

    #[test]
    fn the_managed_group_converges_to_exactly_its_ports_from_its_sources() {
        let managed = ManagedGroup { subnet_id: None, ports: vec![22, 8000], sources: vec![] };
        let sources = ["10.0.0.0/16".to_string(), "fd00::/8".to_string()];
        let wanted = wanted(&managed, &sources);
        assert_eq!(wanted.len(), 4);
        assert!(wanted.contains(&Permission::tcp(8000, "fd00::/8")));
        let current = vec![Permission::tcp(22, "10.0.0.0/16"), rule("tcp", 22, 22, "0.0.0.0/0")];
        let (add, remove) = changes(&current, &wanted);
        assert_eq!(add.len(), 3);
        assert_eq!(remove, [rule("tcp", 22, 22, "0.0.0.0/0")], "a rule added by hand is taken away");
        let settled: Vec<Permission> = wanted.iter().cloned().collect();
        assert_eq!(changes(&settled, &wanted), (vec![], vec![]));
    }
}
