//! What differs between the spec and the instance EC2 runs, and how each difference is closed: in
//! place, while the instance is stopped, or never (fields the CRD's rules make immutable, which
//! only an object from before those rules can still carry). Pure; `plan` decides when.

use std::collections::BTreeMap;

use super::plan::reserved_tag;
use crate::cloud::{Instance, Modification, TAG_ROOT_VOLUME_GIB, user_data_sha256};
use crate::crd::Ec2InstanceSpec;

/// How one difference is closed.
#[derive(Clone, Debug, PartialEq)]
pub enum Fix {
    /// A change EC2 makes (`needs_stop` says when it may be made).
    Modify(Modification),
    /// The root volume grown to this many GiB (budget-checked).
    GrowVolume(u32),
    /// The instance cannot be changed so; only a new instance would match.
    Immutable,
}

impl Fix {
    pub fn needs_stop(&self) -> bool {
        matches!(self, Fix::Modify(m) if m.needs_stop())
    }
}

/// One field where EC2 and the spec differ, with both values as a person should see them (user
/// data by its hash only: it may hold secrets).
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    pub field: &'static str,
    pub have: String,
    pub want: String,
    pub fix: Fix,
}

/// Every difference between `spec` and `instance`. `groups` is the security groups the instance
/// should have when that is known without asking EC2 (`None`: not compared).
pub fn differences(
    spec: &Ec2InstanceSpec,
    groups: Option<&[String]>,
    instance: &Instance,
) -> Vec<Difference> {
    let mut found = Vec::new();
    let mut differ = |field, have: String, want: String, fix| {
        found.push(Difference { field, have, want, fix });
    };
    if let Some(image) = spec.image_id.as_deref().filter(|image| *image != instance.image_id) {
        differ("imageId", instance.image_id.clone(), image.to_string(), Fix::Immutable);
    }
    if instance.instance_type != spec.instance_type {
        let fix = Fix::Modify(Modification::InstanceType { instance_type: spec.instance_type.clone() });
        differ("instanceType", instance.instance_type.clone(), spec.instance_type.clone(), fix);
    }
    // An instance launched before its user data was tagged is taken to match.
    let want_hash = user_data_sha256(spec.user_data.as_deref());
    if let Some(have_hash) = instance.user_data_sha256().filter(|h| *h != want_hash) {
        let fix = Fix::Modify(Modification::UserData { user_data: spec.user_data.clone() });
        differ("userData", short_hash(have_hash), short_hash(&want_hash), fix);
    }
    if let Some(want) = groups.filter(|want| !same_set(want, &instance.security_group_ids)) {
        let fix = Fix::Modify(Modification::SecurityGroups { ids: want.to_vec() });
        differ("securityGroupIds", instance.security_group_ids.join(","), want.join(","), fix);
    }
    let have_tags = user_tags(instance);
    if have_tags != spec.tags {
        let set: BTreeMap<String, String> =
            spec.tags.iter().filter(|(k, v)| have_tags.get(*k) != Some(*v)).map(clone_pair).collect();
        let remove = have_tags.keys().filter(|k| !spec.tags.contains_key(*k)).cloned().collect();
        let fix = Fix::Modify(Modification::Tags { set, remove });
        differ("tags", show_tags(&have_tags), show_tags(&spec.tags), fix);
    }
    // A size is compared only when the launch tagged it (the image's own size is not known).
    let have_gib = instance.tag(TAG_ROOT_VOLUME_GIB).and_then(|g| g.parse::<u32>().ok());
    let want_gib = spec.root_volume_gib.and_then(|g| u32::try_from(g).ok());
    if let (Some(have), Some(want)) = (have_gib, want_gib)
        && have != want
    {
        let fix = if want > have { Fix::GrowVolume(want) } else { Fix::Immutable };
        differ("rootVolumeGiB", have.to_string(), want.to_string(), fix);
    }
    found
}

/// `instance` as EC2 describes it once `fix` is made.
pub fn fixed(instance: &Instance, fix: &Fix) -> Instance {
    let mut after = instance.clone();
    match fix {
        Fix::Modify(change) => change.apply_to(&mut after),
        Fix::GrowVolume(gib) => drop(after.tags.insert(TAG_ROOT_VOLUME_GIB.into(), gib.to_string())),
        Fix::Immutable => {}
    }
    after
}

/// The tags a spec may set: all but the operator's and AWS's own and `Name`.
fn user_tags(instance: &Instance) -> BTreeMap<String, String> {
    instance.tags.iter().filter(|(k, _)| !reserved_tag(k)).map(clone_pair).collect()
}

fn clone_pair((k, v): (&String, &String)) -> (String, String) {
    (k.clone(), v.clone())
}

fn same_set(a: &[String], b: &[String]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort();
    b.sort();
    a == b
}

fn short_hash(hash: &str) -> String {
    format!("sha256:{}", &hash[..hash.len().min(12)])
}

fn show_tags(tags: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", pairs.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{InstanceState, TAG_USER_DATA_SHA256};

    fn spec(fields: serde_json::Value) -> Ec2InstanceSpec {
        serde_json::from_value(fields).unwrap()
    }

    fn running() -> Instance {
        let tags = [
            ("Name", "default/web"),
            ("dataroom.dev/owner-uid", "u"),
            ("team", "a"),
            (TAG_ROOT_VOLUME_GIB, "20"),
            (TAG_USER_DATA_SHA256, &user_data_sha256(Some("#!/bin/sh\n"))),
        ];
        Instance {
            id: "i-1".into(),
            state: InstanceState::Running,
            instance_type: "t3.micro".into(),
            image_id: "ami-11111111".into(),
            key_name: None,
            public_ip: None,
            private_ip: None,
            launch_time: None,
            tags: tags.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            security_group_ids: vec!["sg-1".into()],
        }
    }

    const MATCHING: &str = r##"{"instanceType": "t3.micro", "imageId": "ami-11111111", "userData": "#!/bin/sh\n",
        "tags": {"team": "a"}, "rootVolumeGiB": 20, "securityGroupIds": ["sg-1"]}"##;

    fn with(change: serde_json::Value) -> Ec2InstanceSpec {
        let mut fields: serde_json::Value = serde_json::from_str(MATCHING).unwrap();
        fields.as_object_mut().unwrap().extend(change.as_object().unwrap().clone());
        spec(fields)
    }

    fn only(spec: &Ec2InstanceSpec) -> Difference {
        let groups = spec.security_group_ids.clone().unwrap_or_default();
        let mut found = differences(spec, Some(&groups), &running());
        assert_eq!(found.len(), 1, "{found:?}");
        found.remove(0)
    }

    #[test]
    fn a_matching_spec_has_no_differences() {
        let s = with(serde_json::json!({}));
        assert_eq!(differences(&s, Some(&["sg-1".to_string()]), &running()), vec![]);
        // Unset image, size and groups are not compared; reserved tags are not the spec's.
        let bare = spec(serde_json::json!({"userData": "#!/bin/sh\n", "tags": {"team": "a"}}));
        assert_eq!(differences(&bare, None, &running()), vec![]);
    }

    #[test]
    fn each_field_is_closed_its_own_way() {
        use Modification::*;
        let cases = [
            (
                serde_json::json!({"instanceType": "t3.small"}),
                "instanceType",
                "t3.micro",
                "t3.small",
                Fix::Modify(InstanceType { instance_type: "t3.small".into() }),
            ),
            (
                serde_json::json!({"securityGroupIds": ["sg-2", "sg-1"]}),
                "securityGroupIds",
                "sg-1",
                "sg-2,sg-1",
                Fix::Modify(SecurityGroups { ids: vec!["sg-2".into(), "sg-1".into()] }),
            ),
            (
                serde_json::json!({"tags": {"team": "b", "env": "prod"}}),
                "tags",
                "{team=a}",
                "{env=prod,team=b}",
                Fix::Modify(Tags {
                    set: [("env".into(), "prod".into()), ("team".into(), "b".into())].into(),
                    remove: vec![],
                }),
            ),
            (
                serde_json::json!({"tags": {}}),
                "tags",
                "{team=a}",
                "{}",
                Fix::Modify(Tags { set: BTreeMap::new(), remove: vec!["team".into()] }),
            ),
            (serde_json::json!({"rootVolumeGiB": 30}), "rootVolumeGiB", "20", "30", Fix::GrowVolume(30)),
            (serde_json::json!({"rootVolumeGiB": 10}), "rootVolumeGiB", "20", "10", Fix::Immutable),
            (
                serde_json::json!({"imageId": "ami-22222222"}),
                "imageId",
                "ami-11111111",
                "ami-22222222",
                Fix::Immutable,
            ),
        ];
        for (change, field, have, want, fix) in cases {
            let d = only(&with(change.clone()));
            assert_eq!(
                (d.field, d.have.as_str(), d.want.as_str(), &d.fix),
                (field, have, want, &fix),
                "{change}"
            );
            assert_eq!(fixed(&running(), &fix) == running(), fix == Fix::Immutable, "{change}");
        }
    }

    #[test]
    fn user_data_is_compared_and_shown_by_hash_only() {
        let d = only(&with(serde_json::json!({"userData": "password=hunter2"})));
        assert_eq!(d.field, "userData");
        assert!(d.have.starts_with("sha256:") && d.want.starts_with("sha256:"), "{d:?}");
        assert!(!d.have.contains("hunter2") && !d.want.contains("hunter2"), "{d:?}");
        assert!(d.fix.needs_stop());
        // Fixed, it matches; an instance from before the tag is taken to match.
        let after = fixed(&running(), &d.fix);
        assert_eq!(
            differences(&with(serde_json::json!({"userData": "password=hunter2"})), None, &after),
            vec![]
        );
        let mut untagged = running();
        untagged.tags.remove(TAG_USER_DATA_SHA256);
        assert_eq!(differences(&with(serde_json::json!({"userData": "other"})), None, &untagged), vec![]);
    }

    #[test]
    fn only_type_and_user_data_need_a_stop() {
        let needs_stop = |change| only(&with(change)).fix.needs_stop();
        assert!(needs_stop(serde_json::json!({"instanceType": "t3.small"})));
        assert!(!needs_stop(serde_json::json!({"tags": {}})));
        assert!(!needs_stop(serde_json::json!({"securityGroupIds": ["sg-9"]})));
        assert!(!needs_stop(serde_json::json!({"rootVolumeGiB": 40})));
    }
}
