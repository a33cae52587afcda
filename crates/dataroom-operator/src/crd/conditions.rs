//! `metav1.Condition` helpers: a condition's `lastTransitionTime` moves only when its status does,
//! so writing the same conditions twice never changes the object.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Sets condition `type_` in `conditions`, keeping the old transition time when the status is unchanged.
pub fn upsert_condition(conditions: &mut Vec<Condition>, new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            let since = if old.status == new.status {
                old.last_transition_time.clone()
            } else {
                new.last_transition_time.clone()
            };
            *old = Condition { last_transition_time: since, ..new };
        }
        None => conditions.push(new),
    }
}

/// Builds and upserts a condition in one call.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) {
    upsert_condition(
        conditions,
        Condition {
            type_: type_.to_string(),
            status: if ok { "True" } else { "False" }.to_string(),
            reason: reason.to_string(),
            message: message.into(),
            observed_generation: generation,
            last_transition_time: Time(jiff::Timestamp::now()),
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let mut conds = vec![];
        set_condition(&mut conds, "Ready", false, "Pending", "wait", Some(1));
        let first = conds[0].last_transition_time.clone();
        std::thread::sleep(std::time::Duration::from_millis(2));
        set_condition(&mut conds, "Ready", false, "Pending", "still waiting", Some(2));
        assert_eq!(conds[0].last_transition_time, first);
        assert_eq!(conds[0].message, "still waiting");
        set_condition(&mut conds, "Ready", true, "Running", "up", Some(2));
        assert_ne!(conds[0].last_transition_time, first);
        assert_eq!(conds.len(), 1);
    }
}
