//! Console sessions. Signing in exchanges a credential (an admin key or a Kubernetes token) for a
//! random session ID in an `HttpOnly`, `SameSite=Strict` cookie, `Secure` over TLS. The credential
//! stays in this process's memory and every request is authenticated with it again, so a session
//! has exactly the rights of the key that opened it, and loses them when the key is removed from
//! the keys file or expires. Requests a session authenticates that could change something must
//! come from the console's own origin (CSRF).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{Method, StatusCode, header};
use base64::Engine as _;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use jiff::{SignedDuration, Timestamp};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// The session cookie's name.
pub const COOKIE: &str = "dataroom_session";

/// How long a session lasts from its sign-in, active or not.
pub const LIFETIME: SignedDuration = SignedDuration::from_hours(4);

/// Most sessions held at once; the oldest is ended to make room for another.
const MAX_SESSIONS: usize = 10_000;

struct Session {
    credential: String,
    actor: String,
    expires: Timestamp,
}

/// The open sessions, by the SHA-256 of their ID (the ID itself is only in the browser).
pub struct Sessions {
    live: Mutex<HashMap<[u8; 32], Session>>,
    /// Sign-in attempts per source address: failed ones are audited one by one, so guessing
    /// must be slow enough not to flood the log.
    attempts: DefaultKeyedRateLimiter<IpAddr>,
}

impl Default for Sessions {
    fn default() -> Self {
        let ten = NonZeroU32::new(10).expect("non-zero");
        Sessions { live: Mutex::default(), attempts: RateLimiter::keyed(Quota::per_minute(ten)) }
    }
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// A new session for `credential` (whose audit actor is `actor`) and its ID.
    pub fn open(&self, credential: &str, actor: &str, now: Timestamp) -> String {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let session =
            Session { credential: credential.to_string(), actor: actor.to_string(), expires: now + LIFETIME };
        let mut live = self.live.lock().unwrap();
        live.retain(|_, s| s.expires > now);
        if live.len() >= MAX_SESSIONS {
            let oldest = live.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k);
            oldest.map(|k| live.remove(&k));
        }
        live.insert(digest(&id), session);
        id
    }

    /// The credential of the session `id`, unless it has ended or expired by `now`.
    pub fn credential(&self, id: &str, now: Timestamp) -> Option<String> {
        let mut live = self.live.lock().unwrap();
        let key = digest(id);
        match live.get(&key) {
            Some(s) if s.expires > now => Some(s.credential.clone()),
            Some(_) => {
                live.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends the session `id`, giving back its actor if it was open.
    pub fn close(&self, id: &str) -> Option<String> {
        self.live.lock().unwrap().remove(&digest(id)).map(|s| s.actor)
    }

    /// One more sign-in attempt from `address`, or 429.
    pub fn attempt(&self, address: IpAddr) -> Result<(), ApiError> {
        self.attempts.check_key(&address).map_err(|_| {
            let why = "too many sign-in attempts from this address; try again in a minute";
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", why).retry_after(60)
        })
    }
}

/// The cookie that carries session `id` (`Secure` when the console is served over TLS).
pub fn cookie(id: &str, secure: bool) -> Cookie<'static> {
    Cookie::build(COOKIE, id.to_string())
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::seconds(LIFETIME.as_secs()))
        .finish()
}

/// The cookie that makes the browser forget the session.
pub fn removal(secure: bool) -> Cookie<'static> {
    let mut cookie = cookie("", secure);
    cookie.make_removal();
    cookie
}

/// Whether a request with `origin` came from the page served at `host` (`scheme` http or https).
/// A request without `Origin` is refused: browsers send it on every POST, PUT and DELETE.
pub fn same_origin(origin: Option<&str>, scheme: &str, host: Option<&str>) -> bool {
    match (origin, host) {
        (Some(origin), Some(host)) => origin == format!("{scheme}://{host}"),
        _ => false,
    }
}

/// 403 `cross_origin` unless `req`, authenticated by a session cookie, is safe or same-origin.
pub fn check_origin(req: &HttpRequest) -> Result<(), ApiError> {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok());
    // HTTP/1.1 names the host in `Host`, HTTP/2 in the request's authority. Never a forwarded
    // header: those are the client's to write.
    let authority = req.uri().authority().map(|a| a.as_str());
    let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).or(authority);
    let scheme = if req.app_config().secure() { "https" } else { "http" };
    if same_origin(origin, scheme, host) {
        return Ok(());
    }
    let why = "a console session may change things only from the console's own pages (the request's \
               Origin is another site's or missing)";
    Err(ApiError::new(StatusCode::FORBIDDEN, "cross_origin", why))
}

/// The session ID the request's cookie carries, if any.
pub fn id(req: &HttpRequest) -> Option<String> {
    req.cookie(COOKIE).map(|c| c.value().to_string()).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-12-03T08:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_session_holds_its_credential_for_four_hours_and_ends_at_sign_out() {
        let sessions = Sessions::default();
        let id = sessions.open("drk_secret", "admin:ops", now());
        assert_ne!(id, sessions.open("drk_secret", "admin:ops", now()), "every session is another");
        assert_eq!(sessions.credential(&id, now()).as_deref(), Some("drk_secret"));
        let later = now() + SignedDuration::from_mins(239);
        assert!(sessions.credential(&id, later).is_some());
        assert_eq!(sessions.credential(&id, now() + LIFETIME), None, "expired at four hours");
        assert_eq!(sessions.credential(&id, now()), None, "an expired session is forgotten");
        let other = sessions.open("drk_secret", "admin:ops", now());
        assert_eq!(sessions.close(&other).as_deref(), Some("admin:ops"));
        assert_eq!(sessions.credential(&other, now()), None);
        assert_eq!(sessions.close(&other), None);
        assert_eq!(sessions.credential("made-up", now()), None);
    }

    #[test]
    fn only_the_consoles_own_origin_is_same_origin() {
        let host = Some("127.0.0.1:8080");
        assert!(same_origin(Some("http://127.0.0.1:8080"), "http", host));
        for (origin, scheme, host) in [
            (Some("http://evil.example"), "http", host),
            (Some("https://127.0.0.1:8080"), "http", host),
            (Some("http://127.0.0.1:8080"), "https", host),
            (Some("http://127.0.0.1:8081"), "http", host),
            (Some("null"), "http", host),
            (None, "http", host),
            (Some("http://127.0.0.1:8080"), "http", None),
        ] {
            assert!(!same_origin(origin, scheme, host), "{origin:?} {scheme} {host:?}");
        }
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_over_tls() {
        let plain = cookie("abc", false).to_string();
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict") && !plain.contains("Secure"));
        assert!(plain.contains("Max-Age=14400") && plain.contains("Path=/"), "{plain}");
        assert!(cookie("abc", true).to_string().contains("Secure"));
        assert!(removal(false).to_string().contains("Max-Age=0"));
    }
}
