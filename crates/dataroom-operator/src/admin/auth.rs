//! Admin keys: a file of named SHA-256 hashes (several at once, for rotation), and the extractor
//! every `/api` handler takes. Only `Authorization: Bearer <key>` is read (or a console session
//! that holds one, see `session`); a key anywhere else is ignored. Hashes are compared in
//! constant time, and only a key's name and fingerprint are ever recorded.

use std::collections::BTreeSet;
use std::path::Path;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::identity::{self, Person, Reach};
use super::scope::Scope;
use super::{AdminState, is_dns_label, session};

#[derive(Clone, Debug, PartialEq)]
struct Named {
    name: String,
    hash: [u8; 32],
    scopes: BTreeSet<Scope>,
    /// `None`: every namespace.
    namespaces: Option<BTreeSet<String>>,
    expires: Option<jiff::Timestamp>,
}

/// The accepted keys, by hash.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdminKeys {
    keys: Vec<Named>,
}

/// The caller, once its key matched. Handlers get it only through `scope::Authorized`, which
/// has checked the scope the operation needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Admin {
    pub name: String,
    /// `sha256:` and the first 16 hex digits of the key's hash: enough to tell keys apart.
    pub fingerprint: String,
    scopes: BTreeSet<Scope>,
    namespaces: Option<BTreeSet<String>>,
    /// A Kubernetes user rather than an admin key.
    kubernetes: bool,
}

impl Admin {
    /// The actor in audit records: `admin:NAME (FINGERPRINT)`, or `k8s:USERNAME`.
    pub fn actor(&self) -> String {
        match self.kubernetes {
            true => format!("k8s:{}", self.name),
            false => format!("admin:{} ({})", self.name, self.fingerprint),
        }
    }

    /// A Kubernetes user RBAC allows `scope`'s operation where `reach` says.
    fn kubernetes(person: &Person, scope: Scope, reach: Reach) -> Self {
        Admin {
            name: person.username.clone(),
            fingerprint: String::new(),
            scopes: BTreeSet::from([scope]),
            namespaces: match reach {
                Reach::Everywhere => None,
                Reach::Namespaces(namespaces) => Some(namespaces),
            },
            kubernetes: true,
        }
    }

    /// 403 `insufficient_scope`, naming the scope needed, unless the key holds `scope`.
    pub fn holds(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            return Ok(());
        }
        let held: Vec<&str> = self.scopes.iter().map(|s| s.name()).collect();
        let why = format!(
            "this operation needs the `{}` scope; the key {} holds: {}",
            scope.name(),
            self.name,
            if held.is_empty() { "none".to_string() } else { held.join(", ") }
        );
        Err(ApiError::new(StatusCode::FORBIDDEN, "insufficient_scope", why))
    }

    /// Whether the key reaches objects in `namespace` (a key without `namespaces=` reaches all).
    pub fn reaches(&self, namespace: &str) -> bool {
        self.namespaces.as_ref().is_none_or(|n| n.contains(namespace))
    }

    /// Whether the key is confined to some namespaces (and so sees nothing that has none).
    pub fn is_confined(&self) -> bool {
        self.namespaces.is_some()
    }
}

/// How every admin key begins: any other bearer token is taken for a Kubernetes token.
pub const KEY_PREFIX: &str = "drk_";

fn fingerprint(hash: &[u8; 32]) -> String {
    format!("sha256:{}", &hex::encode(hash)[..16])
}

const FORMAT: &str =
    "expected `NAME sha256:<64 hex digits> [scopes=S,…] [namespaces=NS,…] [expires=RFC3339]`";

/// One line of the keys file: the name, the hash and the options after them.
fn parse_line(line: &str) -> Result<Named, String> {
    let mut words = line.split_whitespace();
    let (Some(name), Some(hash)) = (words.next(), words.next()) else { return Err(FORMAT.into()) };
    let hex = hash.strip_prefix("sha256:").ok_or(FORMAT)?;
    let hash: [u8; 32] = hex::decode(hex).ok().and_then(|h| h.try_into().ok()).ok_or(FORMAT)?;
    let mut named =
        Named { name: name.to_string(), hash, scopes: Scope::ALL.into(), namespaces: None, expires: None };
    let mut seen = BTreeSet::new();
    for option in words {
        let (key, value) = option.split_once('=').ok_or_else(|| format!("`{option}`: {FORMAT}"))?;
        if !seen.insert(key) {
            return Err(format!("`{key}=` is given twice"));
        }
        match key {
            "scopes" => named.scopes = Scope::parse_list(value)?,
            "namespaces" => {
                let names: BTreeSet<String> = value.split(',').map(str::to_string).collect();
                if let Some(bad) = names.iter().find(|n| !is_dns_label(n)) {
                    return Err(format!("namespace `{bad}` is not a DNS label"));
                }
                named.namespaces = Some(names);
            }
            "expires" => {
                let at =
                    value.parse().map_err(|e| format!("expires=`{value}` is not an RFC 3339 time ({e})"))?;
                named.expires = Some(at);
            }
            other => return Err(format!("unknown option `{other}=`; {FORMAT}")),
        }
    }
    Ok(named)
}

impl AdminKeys {
    /// Parses lines of `NAME sha256:HEX [scopes=…] [namespaces=…] [expires=…]` (blank lines and
    /// `#` comments allowed). A line without `scopes=` holds every scope, as keys did before scopes.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut keys: Vec<Named> = Vec::new();
        for (n, line) in text.lines().enumerate().map(|(n, l)| (n + 1, l.trim())) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let named = parse_line(line).map_err(|why| format!("line {n}: {why}"))?;
            if keys.iter().any(|k| k.name == named.name) {
                return Err(format!("line {n}: the name {} is used twice", named.name));
            }
            keys.push(named);
        }
        if keys.is_empty() {
            return Err("no keys: add a line `NAME sha256:<hash>` (see `dataroom-operator admin-key`)".into());
        }
        Ok(AdminKeys { keys })
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading the admin keys {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// A fresh random key and the line that accepts it under `name`, with `options` after the
    /// hash (`scopes=…` and the like; checked by parsing the line).
    pub fn generate(name: &str, options: &str) -> Result<(String, String), String> {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let key = format!("{KEY_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
        let line = Self::line(name, &key);
        let line = match options.trim() {
            "" => line,
            options => format!("{} {options}\n", line.trim_end()),
        };
        Self::parse(&line)?;
        Ok((key, line))
    }

    /// The keys-file line that accepts `key` under `name` with every scope.
    pub fn line(name: &str, key: &str) -> String {
        format!("{name} sha256:{}\n", hex::encode(Sha256::digest(key.as_bytes())))
    }

    /// Each key's name and fingerprint (what a reload record names; never a hash).
    pub fn names(&self) -> Vec<(String, String)> {
        self.keys.iter().map(|k| (k.name.clone(), fingerprint(&k.hash))).collect()
    }

    /// The admin whose key this is, unless it has expired by `now`. Every stored hash is
    /// compared, in constant time.
    pub fn check(&self, key: &str, now: jiff::Timestamp) -> Result<Admin, String> {
        let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut found = None;
        for named in &self.keys {
            if bool::from(named.hash.ct_eq(&hash)) {
                found = Some(named);
            }
        }
        let named = found.ok_or("the admin key is not accepted")?;
        if let Some(expired) = named.expires.filter(|at| *at <= now) {
            return Err(format!("the admin key {} expired at {expired}", named.name));
        }
        Ok(Admin {
            name: named.name.clone(),
            fingerprint: fingerprint(&named.hash),
            scopes: named.scopes.clone(),
            namespaces: named.namespaces.clone(),
            kubernetes: false,
        })
    }
}

/// The caller, checked: an admin key or a Kubernetes token RBAC allows `scope`'s operation, from
/// the `Authorization` header or from the console session its cookie names (see `session`).
/// Whether the caller holds `scope` is `scope::Authorized`'s to check.
pub(super) async fn authenticate(req: &HttpRequest, scope: Scope) -> Result<Admin, ApiError> {
    let state = req.app_data::<web::Data<AdminState>>().expect("the admin state is configured");
    let address = peer(req);
    state.rates.address(address).map_err(|refused| limited(state, refused))?;
    let counted = |refused: ApiError| {
        if refused.status == StatusCode::UNAUTHORIZED {
            state.rates.failed(address);
            state.shared.metrics.api_auth_failures.inc();
        }
        refused
    };
    let header = req.headers().get(actix_web::http::header::AUTHORIZATION);
    let bearer = header.and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
    let credential = match (bearer, session::id(req)) {
        (Some(token), _) => token.to_string(),
        (None, Some(id)) => {
            let credential = state.sessions.credential(&id, (state.shared.clock)());
            let credential = credential.ok_or_else(|| {
                counted(ApiError::unauthorized("the console session has ended; sign in again"))
            })?;
            session::check_origin(req)?;
            credential
        }
        (None, None) => {
            let why = "send `Authorization: Bearer <admin key or Kubernetes token>`";
            return Err(counted(ApiError::unauthorized(why)));
        }
    };
    admit(state, req, &credential, scope).await.map_err(counted)
}

/// The address a request came from (unspecified when the transport has none, as in tests).
pub(super) fn peer(req: &HttpRequest) -> std::net::IpAddr {
    req.peer_addr().map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip())
}

fn limited(state: &AdminState, refused: ApiError) -> ApiError {
    state.shared.metrics.api_rate_limited.inc();
    refused
}

/// The admin `credential` names, with the reach RBAC gives a Kubernetes token for `scope`; 401
/// when it names none. Failures are the caller's to count.
pub(super) async fn admit(
    state: &AdminState,
    req: &HttpRequest,
    credential: &str,
    scope: Scope,
) -> Result<Admin, ApiError> {
    let admin = match &state.identities {
        Some(identities) if !credential.starts_with(KEY_PREFIX) => {
            let person = identities.person(credential).await.map_err(|e| match e {
                identity::Unrecognised::Refused(why) => ApiError::unauthorized(&why),
                identity::Unrecognised::Unavailable(unavailable) => unavailable,
            })?;
            // The fleet's routes and console pages act on DataRooms; RBAC is asked about those.
            let path = req.path();
            let rooms = ["/api/fleet/", "/ui/fleet", "/ui/events"].iter().any(|p| path.starts_with(p));
            let reach = identities.reach(&person, scope, rooms, || state.known_namespaces()).await?;
            let reach = reach.ok_or_else(|| identity::refused(&person, scope, rooms))?;
            Admin::kubernetes(&person, scope, reach)
        }
        _ => state
            .keys()
            .check(credential, (state.shared.clock)())
            .map_err(|why| ApiError::unauthorized(&why))?,
    };
    state.rates.key(&admin.actor()).map_err(|refused| limited(state, refused))?;
    Ok(admin)
}

#[cfg(test)]
mod tests {
    use super::AdminKeys;

    use super::Scope;

    fn now() -> jiff::Timestamp {
        "2026-12-02T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn keys_match_by_hash_and_report_name_and_fingerprint() {
        let (key, line) = AdminKeys::generate("ops", "").unwrap();
        let (old, old_line) = AdminKeys::generate("old", "").unwrap();
        let keys = AdminKeys::parse(&format!("# rotation\n{line}\n{old_line}")).unwrap();
        let admin = keys.check(&key, now()).unwrap();
        assert_eq!(admin.name, "ops");
        assert!(admin.fingerprint.starts_with("sha256:") && !admin.actor().contains(&key));
        assert_eq!(keys.check(&old, now()).unwrap().name, "old");
        assert!(keys.check("drk_wrong", now()).is_err());
        assert!(keys.check(&line, now()).is_err(), "the hash itself is not a key");
        for scope in Scope::ALL {
            assert!(admin.holds(scope).is_ok(), "a line without scopes= holds every scope");
        }
        assert!(admin.reaches("any") && !admin.is_confined());
    }

    #[test]
    fn options_confine_a_key_to_scopes_namespaces_and_a_time() {
        let options = "scopes=read,exec namespaces=team-a,team-b expires=2026-12-03T00:00:00Z";
        let (key, line) = AdminKeys::generate("ci", options).unwrap();
        assert!(line.ends_with(&format!(" {options}\n")), "{line}");
        let keys = AdminKeys::parse(&line).unwrap();
        let admin = keys.check(&key, now()).unwrap();
        assert!(admin.holds(Scope::Exec).is_ok() && admin.holds(Scope::Read).is_ok());
        let refused = admin.holds(Scope::Budget).unwrap_err();
        assert_eq!((refused.status.as_u16(), refused.code), (403, "insufficient_scope"));
        assert!(refused.detail.contains("needs the `budget` scope") && refused.detail.contains("read, exec"));
        assert!(admin.reaches("team-b") && !admin.reaches("team-c") && admin.is_confined());
        let later: jiff::Timestamp = "2026-12-03T00:00:00Z".parse().unwrap();
        assert!(keys.check(&key, later).unwrap_err().contains("expired at 2026-12-03T00:00:00Z"));
    }

    #[test]
    fn malformed_key_files_are_refused_with_the_line() {
        assert!(AdminKeys::parse("").unwrap_err().contains("no keys"));
        assert!(AdminKeys::parse("ops deadbeef").unwrap_err().starts_with("line 1"));
        let line = AdminKeys::line("a", "k");
        let line = line.trim_end();
        assert!(AdminKeys::parse(&format!("{line}\n{line}")).unwrap_err().contains("twice"));
        for (options, named) in [
            ("scopes=root", "unknown scope `root`"),
            ("namespaces=Team_A", "not a DNS label"),
            ("expires=tomorrow", "not an RFC 3339 time"),
            ("color=red", "unknown option `color=`"),
            ("scopes=read scopes=all", "given twice"),
            ("scopes", "expected `NAME"),
        ] {
            let refused = AdminKeys::parse(&format!("{line} {options}")).unwrap_err();
            assert!(refused.starts_with("line 1: ") && refused.contains(named), "{options}: {refused}");
        }
        assert!(AdminKeys::generate("x", "scopes=root").is_err(), "admin-key checks its options");
    }
}
