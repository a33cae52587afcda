use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What happened, as the caller describes it. Parameters must not carry secrets; keys that look
/// like they might are redacted on the way in as a second line of defence.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub actor: String,
    pub action: String,
    pub target: String,
    pub params: serde_json::Value,
    pub outcome: Outcome,
    pub detail: Option<String>,
}

impl Entry {
    pub fn new(actor: &str, action: &str, target: &str, outcome: Outcome) -> Self {
        Self {
            actor: actor.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            params: serde_json::Value::Object(Default::default()),
            outcome,
            detail: None,
        }
    }

    pub fn params(mut self, params: serde_json::Value) -> Self {
        self.params = params;
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Done.
    Success,
    /// Begun; a later record says how it ended.
    Started,
    /// Not done because a limit (budget, validation) said no.
    Refused,
    /// Tried and failed.
    Failure,
}

impl Outcome {
    /// As the log writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Started => "started",
            Self::Refused => "refused",
            Self::Failure => "failure",
        }
    }
}

/// One line of the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub time: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub params: serde_json::Value,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Hash of the previous record (`GENESIS` for the first).
    pub prev: String,
    /// SHA-256 of this line's bytes up to (not including) `,"hash":`, plus the closing brace.
    #[serde(default, skip_serializing)]
    pub hash: String,
}

const HASH_FIELD: &str = ",\"hash\":\"";

impl Record {
    /// Serialises the record as one line (without the newline) and fills in its hash.
    pub fn seal(&mut self) -> String {
        let body = serde_json::to_string(self).expect("records always serialise");
        self.hash = digest(&body);
        let open = &body[..body.len() - 1];
        format!("{open}{HASH_FIELD}{}\"}}", self.hash)
    }

    /// Parses one line and checks that its hash matches its bytes.
    /// `Err` says why the line is not a well-formed record; `Ok((record, intact))`.
    pub fn open(line: &str) -> Result<(Record, bool), String> {
        let at = line.rfind(HASH_FIELD).ok_or("no hash field at the end of the line")?;
        let claimed = line[at + HASH_FIELD.len()..]
            .strip_suffix("\"}")
            .ok_or("the line does not end with the hash field")?;
        let mut record: Record = serde_json::from_str(line).map_err(|e| format!("not a JSON record: {e}"))?;
        let body = format!("{}}}", &line[..at]);
        let actual = digest(&body);
        record.hash = claimed.to_string();
        Ok((record, actual == claimed))
    }
}

fn digest(body: &str) -> String {
    hex::encode(Sha256::digest(body.as_bytes()))
}

/// Replaces the values of keys that look like secrets.
pub fn redact(value: &mut serde_json::Value) {
    const SUSPECT: &[&str] = &["private", "secret_value", "password", "token", "key_material"];
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                let lower = key.to_ascii_lowercase();
                if SUSPECT.iter().any(|s| lower.contains(s)) {
                    *v = serde_json::Value::String("<redacted>".into());
                } else {
                    redact(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::Outcome;

    #[test]
    fn outcome_names_are_those_the_log_writes() {
        for o in [Outcome::Success, Outcome::Started, Outcome::Refused, Outcome::Failure] {
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
    }
}
