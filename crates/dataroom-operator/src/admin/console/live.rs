//! `/ui/events`: the fleet table's rows as server-sent events, sent again whenever the
//! controller's view of rooms or instances changes (the watch feeds `Shared::changes`) and each
//! second for the clocks (uptime, idle stop), only when what a viewer would see differs. Every
//! viewer reads the operator's memory: no viewer costs the API server a request. A stream ends
//! when its session does.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, get, web};
use bytes::Bytes;

use super::Viewer;
use super::fleet::{rows, table_body};
use crate::admin::auth::Admin;
use crate::admin::scope::needs;
use crate::admin::{AdminState, session};

/// How often the clocks on the page move.
const TICK: Duration = Duration::from_secs(1);

struct Viewing {
    state: web::Data<AdminState>,
    admin: Admin,
    session: Option<String>,
    changes: tokio::sync::watch::Receiver<u64>,
    last: Option<String>,
}

impl Viewing {
    fn session_open(&self) -> bool {
        let now = (self.state.shared.clock)();
        self.session.as_ref().is_none_or(|id| self.state.sessions.credential(id, now).is_some())
    }

    /// The next event this viewer should see, once there is one; `None` when the session ended.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if !self.session_open() {
                return None;
            }
            let body = table_body(&rows(&self.state, &self.admin)).into_string();
            if self.last.as_ref() != Some(&body) {
                let event = event("fleet", &body);
                self.last = Some(body);
                return Some(event);
            }
            tokio::select! {
                changed = self.changes.changed() => changed.ok()?,
                () = tokio::time::sleep(TICK) => {}
            }
        }
    }
}

/// One server-sent event: each line of `data` on a `data:` line of its own.
fn event(name: &str, data: &str) -> Bytes {
    let lines: String = data.lines().map(|l| format!("data: {l}\n")).collect();
    Bytes::from(format!("event: {name}\n{lines}\n"))
}

#[get("/events")]
async fn events(viewer: Viewer<needs::Read>, state: web::Data<AdminState>, req: HttpRequest) -> HttpResponse {
    let changes = state.shared.changes.subscribe();
    let viewing =
        Viewing { admin: (*viewer).clone(), session: session::id(&req), state, changes, last: None };
    let stream = futures::stream::unfold(viewing, |mut viewing| async move {
        let event = viewing.next().await?;
        Some((Ok::<_, actix_web::Error>(event), viewing))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream)
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(events);
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_event_puts_each_line_of_its_data_on_a_data_line() {
        assert_eq!(super::event("fleet", "<tr>\n</tr>"), "event: fleet\ndata: <tr>\ndata: </tr>\n\n");
    }
}
