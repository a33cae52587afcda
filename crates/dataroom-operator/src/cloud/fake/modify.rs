//! Changes to existing instances in the fake EC2, as EC2 makes them: ModifyInstanceAttribute,
//! CreateTags/DeleteTags and ModifyVolume (a new type or user data only for a stopped instance),
//! and drift that tests make as someone in the console would.

use super::{FakeCloud, incorrect_state};
use crate::cloud::{
    CloudError, ErrorKind, Instance, InstanceState, Modification, Result, TAG_ROOT_VOLUME_GIB,
};

impl FakeCloud {
    /// ModifyInstanceAttribute, CreateTags or DeleteTags as EC2 answers them: a new type or user
    /// data only for a stopped instance.
    pub async fn modify(&self, id: &str, change: &Modification) -> Result<()> {
        let operation = match change {
            Modification::Tags { set, .. } if set.is_empty() => "DeleteTags",
            Modification::Tags { .. } => "CreateTags",
            _ => "ModifyInstanceAttribute",
        };
        self.enter(operation).await?;
        self.with_instance(id, |f| {
            let instance = &mut f.instance;
            if change.needs_stop() && instance.state != InstanceState::Stopped {
                return Err(not_stopped(id, instance.state));
            }
            change.apply_to(instance);
            Ok(())
        })
    }

    /// Changes instance `id` as someone outside the operator would (in the console), with no call
    /// counted and no state rule applied: drift for tests to make.
    pub fn tamper(&self, id: &str, change: impl FnOnce(&mut Instance)) {
        let mut state = self.state.lock().unwrap();
        if let Some(f) = state.instances.get_mut(id) {
            change(&mut f.instance);
        }
    }

    /// ModifyVolume of the instance's root volume (any state but gone), and its size tag.
    pub async fn grow_volume(&self, id: &str, gib: u32) -> Result<()> {
        self.enter("ModifyVolume").await?;
        self.with_instance(id, |f| {
            if f.instance.state.is_gone() {
                return Err(incorrect_state(id, f.instance.state));
            }
            if gib < f.instance.root_volume_gib() {
                let message = format!("New size cannot be smaller than existing size ({gib} GiB)");
                return Err(CloudError::new(ErrorKind::Terminal, "InvalidParameterValue", message));
            }
            f.instance.tags.insert(TAG_ROOT_VOLUME_GIB.into(), gib.to_string());
            Ok(())
        })
    }
}

/// EC2's answer to a type or user-data change of an instance that is not stopped (retryable, as
/// `classify` makes the same answer from AWS: the instance may be on its way to stopped).
fn not_stopped(id: &str, state: InstanceState) -> CloudError {
    CloudError::new(
        ErrorKind::Retryable,
        "IncorrectInstanceState",
        format!("The instance '{id}' is not in the 'stopped' state ({}).", state.as_str()),
    )
}
