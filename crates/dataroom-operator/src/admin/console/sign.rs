//! Signing in and out. A sign-in takes an admin key (or a Kubernetes token, where the operator
//! accepts them) that holds at least `read`, and answers with the session cookie; a failed one is
//! audited with its source address and slowed per address. Both forms post only from this origin.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;

use super::{PageError, bare, html_response};
use crate::admin::error::ApiError;
use crate::admin::scope::Scope;
use crate::admin::{AdminState, auth, session};
use crate::audit::Outcome;

const TARGET: &str = "console//sessions";

fn form(problem: Option<&str>) -> Markup {
    bare(
        "Sign in",
        html! {
            @if let Some(problem) = problem { p.problem role="alert" id="problem" { (problem) } }
            form method="post" action="/ui/sign-in" {
                label for="key" { "Admin key or Kubernetes token" }
                input type="password" id="key" name="key" autocomplete="current-password" required autofocus;
                button type="submit" { "Sign in" }
            }
            p.hint { "The sandbox's key is in the file its banner names (admin-key in its state directory)." }
        },
    )
}

#[get("/sign-in")]
async fn sign_in_page() -> HttpResponse {
    html_response(form(None))
}

#[derive(Deserialize)]
struct SignIn {
    key: String,
}

fn same_origin(req: &HttpRequest) -> Result<(), PageError> {
    session::check_origin(req).map_err(PageError)
}

#[post("/sign-in")]
async fn sign_in(
    state: web::Data<AdminState>,
    req: HttpRequest,
    body: web::Form<SignIn>,
) -> Result<HttpResponse, PageError> {
    same_origin(&req)?;
    let address = auth::peer(&req);
    state.sessions.attempt(address)?;
    let params = json!({ "source": address.to_string() });
    let credential = body.key.trim();
    let admin = match auth::admit(&state, &req, credential, Scope::Read).await {
        Ok(admin) => admin,
        Err(refused) => {
            state.shared.metrics.api_auth_failures.inc();
            let op = state.shared.operation("anonymous", "console.sign_in", TARGET, params);
            op.record(Outcome::Refused, None, Some(refused.detail.clone())).await.map_err(ApiError::from)?;
            let why = match refused.status {
                StatusCode::UNAUTHORIZED => "That key or token is not accepted.".to_string(),
                _ => refused.detail,
            };
            let page = form(Some(&why)).into_string();
            return Ok(HttpResponse::Unauthorized().content_type("text/html; charset=utf-8").body(page));
        }
    };
    let op = state.shared.operation(&admin.actor(), "console.sign_in", TARGET, params);
    op.record(Outcome::Success, None, None).await.map_err(ApiError::from)?;
    let id = state.sessions.open(credential, &admin.actor(), (state.shared.clock)());
    Ok(HttpResponse::SeeOther()
        .cookie(session::cookie(&id, req.app_config().secure()))
        .insert_header((header::LOCATION, "/ui/fleet"))
        .finish())
}

#[post("/sign-out")]
async fn sign_out(state: web::Data<AdminState>, req: HttpRequest) -> Result<HttpResponse, PageError> {
    same_origin(&req)?;
    if let Some(actor) = session::id(&req).and_then(|id| state.sessions.close(&id)) {
        let op = state.shared.operation(
            &actor,
            "console.sign_out",
            TARGET,
            json!({ "source": auth::peer(&req).to_string() }),
        );
        op.record(Outcome::Success, None, None).await.map_err(ApiError::from)?;
    }
    Ok(HttpResponse::SeeOther()
        .cookie(session::removal(req.app_config().secure()))
        .insert_header((header::LOCATION, "/ui/sign-in"))
        .finish())
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(sign_in_page).service(sign_in).service(sign_out);
}
