//! `/api/audit`: the audit log, paged and filtered, and a verification of its hash chain.

use std::io::{BufRead, Seek, SeekFrom};

use actix_web::{get, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::admin::AdminState;
use crate::admin::auth::Admin;
use crate::admin::error::{ApiError, Problem};
use crate::admin::scope::{Authorized, needs};
use crate::audit::{Outcome, Record};

const MAX_PAGE: usize = 1000;
/// Most records one page reads; a page that stops here hands back where it got to.
const MAX_SCANNED: usize = 100_000;

/// One audit record, as stored.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditRecord {
    pub seq: u64,
    /// RFC 3339.
    pub time: String,
    /// Who: `controller`, or `admin:<key name> (<key fingerprint>)`.
    pub actor: String,
    pub action: String,
    pub target: String,
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// `success`, `started`, `refused` or `failure`.
    #[schema(value_type = String)]
    pub outcome: Outcome,
    pub detail: Option<String>,
    /// Hash of the previous record.
    pub prev: String,
    /// This record's hash.
    pub hash: String,
}

impl From<Record> for AuditRecord {
    fn from(r: Record) -> Self {
        let Record { seq, time, actor, action, target, params, outcome, detail, prev, hash } = r;
        AuditRecord { seq, time, actor, action, target, params, outcome, detail, prev, hash }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    /// Pass as `after` for the next page; absent on the last page. A page reads at most 100,000
    /// records, so one whose filter matched little may hold fewer than `limit` and still go on.
    pub next_after: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only records with a sequence number above this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// Page size (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Only this action (e.g. `api.instance.create`, `instance.launch`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Only this target (e.g. `ec2instance/default/web`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Only records whose actor contains this (e.g. `admin:ops`, `k8s:alice`, `controller`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Only records at or after this time (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Only records before this time (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

fn time(field: &str, value: &Option<String>) -> Result<Option<jiff::Timestamp>, ApiError> {
    value
        .as_deref()
        .map(|v| {
            v.parse().map_err(|_| ApiError::bad_request("invalid_query", format!("{field} is not RFC 3339")))
        })
        .transpose()
}

fn page(
    path: &std::path::Path,
    query: &AuditQuery,
    visible: impl Fn(&Record) -> bool,
) -> Result<AuditPage, ApiError> {
    if query.after.is_some_and(|after| after > i64::MAX as u64) {
        return Err(ApiError::bad_request("invalid_query", "after is a sequence number, 0 to 2^63-1"));
    }
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", format!("limit is between 1 and {MAX_PAGE}")));
    }
    let (since, until) = (time("since", &query.since)?, time("until", &query.until)?);
    let read = |e| ApiError::upstream("reading the audit log", e);
    let mut file = std::fs::File::open(path).map_err(read)?;
    let after = query.after.unwrap_or(0);
    let start = crate::audit::first_after(&mut file, after).map_err(read)?;
    file.seek(SeekFrom::Start(start)).map_err(read)?;
    let mut records = Vec::new();
    let (mut scanned, mut last_seq) = (0, None);
    let mut more = false;
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(read)?;
        let Ok((record, _)) = Record::open(&line) else { continue };
        if scanned == MAX_SCANNED {
            // A page's work is bounded: a selective filter over a long log goes on from here.
            more = true;
            break;
        }
        scanned += 1;
        last_seq = Some(record.seq);
        let at = record.time.parse::<jiff::Timestamp>().ok();
        let keep = record.seq > after
            && visible(&record)
            && query.action.as_ref().is_none_or(|a| &record.action == a)
            && query.target.as_ref().is_none_or(|t| &record.target == t)
            && query.actor.as_ref().is_none_or(|a| record.actor.contains(a.as_str()))
            && since.is_none_or(|s| at.is_some_and(|at| at >= s))
            && until.is_none_or(|u| at.is_some_and(|at| at < u));
        if !keep {
            continue;
        }
        if records.len() == limit {
            more = true;
            break;
        }
        records.push(AuditRecord::from(record));
    }
    // A full page goes on after its last record; one cut short by the scan bound after the last
    // record it read.
    let next_after = match (more, records.len() == limit) {
        (false, _) => None,
        (true, true) => records.last().map(|r| r.seq),
        (true, false) => last_seq,
    };
    Ok(AuditPage { records, next_after })
}

#[utoipa::path(
    params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = Problem), (status = 401, body = Problem)),
    security(("admin_key" = ["audit"])),
    tag = "governance"
)]
#[get("/api/audit")]
pub async fn list(
    admin: Authorized<needs::Audit>,
    state: web::Data<AdminState>,
    query: web::Query<AuditQuery>,
) -> Result<web::Json<AuditPage>, ApiError> {
    Ok(web::Json(read(&state, &admin, query.into_inner()).await?))
}

/// The page of the log `query` asks for, of the records `admin` may see.
pub(crate) async fn read(
    state: &AdminState,
    admin: &Admin,
    query: AuditQuery,
) -> Result<AuditPage, ApiError> {
    let path = state.shared.audit.path();
    let admin = admin.clone();
    // A key confined to namespaces sees only records whose target is in one of them.
    let visible = move |r: &Record| {
        !admin.is_confined()
            || r.target.split('/').nth(1).is_some_and(|ns| !ns.is_empty() && admin.reaches(ns))
    };
    let result = web::block(move || page(&path, &query, visible)).await;
    result.map_err(|e| ApiError::upstream("reading the audit log", e))?
}

/// The newest `n` records `query` selects among the last 100,000, newest first (an object's
/// history on the console: its latest changes, however long the log).
pub(crate) async fn latest(
    state: &AdminState,
    admin: &Admin,
    mut query: AuditQuery,
    n: usize,
) -> Result<Vec<AuditRecord>, ApiError> {
    let (head, _) = state.shared.audit.head();
    query.after = Some(head.saturating_sub(MAX_SCANNED as u64));
    query.limit = Some(MAX_PAGE);
    let mut kept = std::collections::VecDeque::with_capacity(n + 1);
    loop {
        let page = read(state, admin, query.clone()).await?;
        for record in page.records {
            kept.push_back(record);
            if kept.len() > n {
                kept.pop_front();
            }
        }
        match page.next_after {
            Some(after) => query.after = Some(after),
            None => return Ok(kept.into_iter().rev().collect()),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Verification {
    pub intact: bool,
    pub records: u64,
    pub head_seq: Option<u64>,
    pub head_hash: Option<String>,
    pub problems: Vec<VerificationProblem>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerificationProblem {
    /// 1-based line number.
    pub line: usize,
    pub seq: Option<u64>,
    pub message: String,
}

#[utoipa::path(
    responses((status = 200, body = Verification), (status = 401, body = Problem)),
    security(("admin_key" = ["audit"])),
    tag = "governance"
)]
#[get("/api/audit/verify")]
pub async fn verify(
    _: Authorized<needs::Audit>,
    state: web::Data<AdminState>,
) -> Result<web::Json<Verification>, ApiError> {
    Ok(web::Json(verification(&state).await?))
}

/// Whether the log's hash chain holds, checked now.
pub(crate) async fn verification(state: &AdminState) -> Result<Verification, ApiError> {
    let audit = state.shared.audit.clone();
    let report = web::block(move || audit.verify())
        .await
        .map_err(|e| ApiError::upstream("reading the audit log", e))?
        .map_err(|e| ApiError::upstream("reading the audit log", e))?;
    let (head_seq, head_hash) = report.head.clone().unzip();
    Ok(Verification {
        intact: report.is_intact(),
        records: report.records,
        head_seq,
        head_hash,
        problems: report
            .problems
            .into_iter()
            .map(|p| VerificationProblem { line: p.line, seq: p.seq, message: p.message })
            .collect(),
    })
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(verify).service(list);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditLog, Entry};

    fn query(after: Option<u64>, limit: usize, action: Option<&str>) -> AuditQuery {
        let action = action.map(str::to_string);
        AuditQuery { after, limit: Some(limit), action, ..AuditQuery::default() }
    }

    #[tokio::test]
    async fn a_page_starts_after_its_cursor_without_reading_the_log_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        for n in 1..=3000u64 {
            let action = if n % 1000 == 0 { "rare" } else { "common" };
            log.append(Entry::new("test", action, "ec2instance/default/web", Outcome::Success))
                .await
                .unwrap();
        }
        let len = std::fs::metadata(&path).unwrap().len();
        for after in [0, 1, 999, 1500, 2998, 2999, 3000, 5000] {
            let page = page(&path, &query(Some(after), 3, None), |_| true).unwrap();
            let seqs: Vec<u64> = page.records.iter().map(|r| r.seq).collect();
            let expected: Vec<u64> = (after + 1..=3000).take(3).collect();
            assert_eq!(seqs, expected, "after {after}");
            assert_eq!(page.next_after, (after + 3 < 3000).then_some(after + 3), "after {after}");
            let mut file = std::fs::File::open(&path).unwrap();
            let start = crate::audit::first_after(&mut file, after).unwrap();
            assert!(after < 2000 || start > len / 2, "after {after}: bisected to {start} of {len}");
        }
        let rare = page(&path, &query(None, 10, Some("rare")), |_| true).unwrap();
        assert_eq!(rare.records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1000, 2000, 3000]);
        assert_eq!(rare.next_after, None);
    }
}
