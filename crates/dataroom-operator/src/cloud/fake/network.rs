//! Security groups in the fake EC2: named groups tests create, and the operator's managed group in
//! the one simulated VPC, whose own range is the loopback network the simulated instances live on.

use super::{FakeCloud, not_found};
use crate::cloud::Result;
use crate::cloud::network::{ManagedGroup, Permission, SecurityGroup, managed_group_name, wanted};

/// The simulated VPC, and its address range (the instances' private addresses are loopback ones).
pub const VPC: &str = "vpc-sandbox";
pub const VPC_CIDR: &str = "127.0.0.0/8";

impl FakeCloud {
    /// A security group with these ingress rules in the simulated VPC, as someone made it in the
    /// console; returns its ID.
    pub fn add_security_group(&self, name: &str, ingress: Vec<Permission>) -> String {
        let mut state = self.state.lock().unwrap();
        let id = super::next_id(&mut state, "sg");
        let group = SecurityGroup { id: id.clone(), name: name.into(), vpc_id: Some(VPC.into()), ingress };
        state.security_groups.insert(id.clone(), group);
        id
    }

    pub(super) async fn describe_groups(&self, ids: &[String]) -> Result<Vec<SecurityGroup>> {
        self.enter("DescribeSecurityGroups").await?;
        let state = self.state.lock().unwrap();
        let found = ids.iter().map(|id| {
            state.security_groups.get(id).cloned().ok_or_else(|| not_found("InvalidGroup.NotFound", id))
        });
        found.collect()
    }

    pub(super) async fn ensure_group(&self, group: &ManagedGroup) -> Result<String> {
        self.enter("EnsureSecurityGroup").await?;
        let sources =
            if group.sources.is_empty() { vec![VPC_CIDR.to_string()] } else { group.sources.clone() };
        let ingress: Vec<Permission> = wanted(group, &sources).into_iter().collect();
        let name = managed_group_name(VPC);
        let mut state = self.state.lock().unwrap();
        if let Some(existing) = state.security_groups.values_mut().find(|g| g.name == name) {
            existing.ingress = ingress;
            return Ok(existing.id.clone());
        }
        let id = super::next_id(&mut state, "sg");
        state
            .security_groups
            .insert(id.clone(), SecurityGroup { id: id.clone(), name, vpc_id: Some(VPC.into()), ingress });
        Ok(id)
    }
}
