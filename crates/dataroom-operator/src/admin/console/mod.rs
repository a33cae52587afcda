//! The console at `/ui/`: pages rendered here from the same views the API answers with, and a
//! little JavaScript (`assets/console.js`, served from the binary) that calls the API for what
//! changes things and streams what is live. A page is shown to a signed-in session with the
//! rights of the key that opened it (see `session`); every response carries a strict CSP.

mod fleet;
mod governance;
mod instances;
mod live;
mod sign;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, dev::Payload, get, web};
use maud::{DOCTYPE, Markup, html};

use super::auth::Admin;
use super::error::ApiError;
use super::scope::{Authorized, Required};

/// No script or style but the console's own files, no framing, no sniffing: a page that some
/// data managed to inject markup into still runs nothing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
     object-src 'none'";

/// The headers every console response carries.
fn secure_headers() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "same-origin"))
        .add((header::CACHE_CONTROL, "no-store"))
}

/// A signed-in viewer whose session holds the scope `S`. Without a session the page sends the
/// browser to the sign-in page; without the scope it says which one is missing.
pub struct Viewer<S>(Authorized<S>);

impl<S> std::ops::Deref for Viewer<S> {
    type Target = Admin;

    fn deref(&self) -> &Admin {
        &self.0
    }
}

impl<S: Required + 'static> FromRequest for Viewer<S> {
    type Error = PageError;
    type Future = futures::future::LocalBoxFuture<'static, Result<Self, PageError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let authorized = Authorized::<S>::from_request(req, payload);
        Box::pin(async move { authorized.await.map(Viewer).map_err(PageError) })
    }
}

/// A refused page: to the sign-in page when there is no session, else the problem in words.
#[derive(Debug)]
pub struct PageError(ApiError);

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.detail.fmt(f)
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.0.status
    }

    fn error_response(&self) -> HttpResponse {
        if self.0.status == StatusCode::UNAUTHORIZED {
            return HttpResponse::SeeOther().insert_header((header::LOCATION, "/ui/sign-in")).finish();
        }
        let page = bare(
            "Not allowed",
            html! { p role="alert" { (self.0.detail) } p { a href="/ui/fleet" { "Back to the fleet" } } },
        );
        HttpResponse::build(self.0.status).content_type("text/html; charset=utf-8").body(page.into_string())
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e)
    }
}

/// A page of the console: the navigation, who is signed in, sign-out, and `body`.
fn page(title: &str, admin: &Admin, body: Markup) -> Markup {
    let nav = [
        ("/ui/fleet", "Fleet"),
        ("/ui/instances", "Instances"),
        ("/ui/budget", "Budget"),
        ("/ui/audit", "Audit"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header {
                    nav aria-label="Console" {
                        strong { "dataroom-operator" }
                        @for (href, label) in nav {
                            a href=(href) aria-current=[(label == title).then_some("page")] { (label) }
                        }
                    }
                    form method="post" action="/ui/sign-out" {
                        span.who { "Signed in as " (admin.actor()) }
                        button type="submit" id="sign-out" { "Sign out" }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// A page without navigation (sign-in, refusals).
fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body { main.narrow { h1 { (title) } (body) } }
        }
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · dataroom-operator" }
            link rel="stylesheet" href="/ui/static/console.css";
            script src="/ui/static/console.js" defer {}
        }
    }
}

/// An HTML response of `markup`.
fn html_response(markup: Markup) -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(markup.into_string())
}

#[get("/static/console.js")]
async fn script() -> HttpResponse {
    let js = include_str!("assets/console.js");
    HttpResponse::Ok().content_type("text/javascript; charset=utf-8").body(js)
}

#[get("/static/console.css")]
async fn style() -> HttpResponse {
    HttpResponse::Ok().content_type("text/css; charset=utf-8").body(include_str!("assets/console.css"))
}

async fn home() -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, "/ui/fleet")).finish()
}

/// Seconds as `3h 05m`, `4m 10s` or `12s`.
fn duration(seconds: i64) -> String {
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s:02}s"),
        _ => format!("{h}h {m:02}m"),
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    let scope = web::scope("/ui")
        .wrap(secure_headers())
        .route("", web::get().to(home))
        .route("/", web::get().to(home))
        .service(script)
        .service(style)
        .configure(sign::configure)
        .configure(fleet::configure)
        .configure(instances::configure)
        .configure(governance::configure)
        .configure(live::configure);
    cfg.service(scope);
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(super::duration(12), "12s");
        assert_eq!(super::duration(250), "4m 10s");
        assert_eq!(super::duration(3 * 3600 + 5 * 60 + 9), "3h 05m");
    }
}
