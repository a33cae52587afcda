//! `/api/ec2/budget`: the `Ec2Budget` named `default`, with live usage from the gate.

use actix_web::{get, put, web};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::admin::AdminState;
use crate::admin::error::{ApiError, Problem};
use crate::admin::scope::{Authorized, needs};
use crate::crd::{BUDGET_NAME, Ec2Budget, Ec2BudgetSpec, Ec2BudgetStatus};

/// The limits (the same fields as `kubectl edit ec2budget default`) and live usage.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BudgetView {
    pub limits: Ec2BudgetSpec,
    pub usage: Ec2BudgetStatus,
    /// Dollars left under `dailySpendUsd` today (usage so far, not projected).
    pub remaining_today_usd: f64,
}

fn view(state: &AdminState) -> BudgetView {
    let limits = state.shared.gate.limits();
    let usage = state.shared.gate.snapshot();
    let remaining_today_usd = (limits.daily_spend_usd - usage.spend_today_usd).max(0.0);
    BudgetView { limits, usage, remaining_today_usd }
}

#[utoipa::path(
    responses((status = 200, body = BudgetView), (status = 401, body = Problem)),
    security(("admin_key" = ["read"])),
    tag = "governance"
)]
#[get("/api/ec2/budget")]
pub async fn get_budget(_: Authorized<needs::Read>, state: web::Data<AdminState>) -> web::Json<BudgetView> {
    web::Json(view(&state))
}

/// Fields to change; those left out keep their value.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BudgetChange {
    #[schema(minimum = 0, maximum = 10000)]
    pub max_instances: Option<u32>,
    #[schema(minimum = 0, maximum = 1000000)]
    pub daily_spend_usd: Option<f64>,
    #[schema(example = "t3.medium")]
    pub max_instance_type: Option<String>,
    #[schema(minimum = 0, maximum = 100000)]
    pub default_idle_timeout_minutes: Option<u32>,
    #[serde(rename = "maxRootVolumeGiB")]
    #[schema(minimum = 1, maximum = 16384)]
    pub max_root_volume_gib: Option<u32>,
    #[schema(minimum = 0, maximum = 1000000)]
    pub max_launches_per_day: Option<u32>,
}

#[utoipa::path(
    request_body = BudgetChange,
    responses((status = 200, body = BudgetView), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, description = "insufficient_scope, or budget_read_only when the operator does not change the budget", body = Problem),
              (status = 422, description = "a limit is out of range", body = Problem)),
    security(("admin_key" = ["budget"])),
    tag = "governance"
)]
#[put("/api/ec2/budget")]
pub async fn put_budget(
    admin: Authorized<needs::Budget>,
    state: web::Data<AdminState>,
    change: web::Json<BudgetChange>,
) -> Result<web::Json<BudgetView>, ApiError> {
    let change = change.into_inner();
    let params = serde_json::to_value(&change).unwrap_or_default();
    let target = crate::admin::lookup::unnamespaced_target("ec2budget", BUDGET_NAME);
    let op = state.operation(&admin, "api.budget.update", &target, params);
    if !state.budget_writes {
        let why = "this operator does not change the budget through its API (the chart's \
                   budget.writableThroughApi is off): change it with `kubectl edit ec2budget default` or helm";
        let refused = ApiError::new(actix_web::http::StatusCode::FORBIDDEN, "budget_read_only", why);
        return Err(op.refused(refused).await);
    }
    if change.daily_spend_usd.is_some_and(|d| !d.is_finite()) {
        let invalid = ApiError::bad_request("invalid_body", "dailySpendUsd must be a number");
        return Err(op.refused(invalid).await);
    }
    let update = async {
        let api: Api<Ec2Budget> = Api::all(state.shared.client.clone());
        let mut spec = serde_json::to_value(&change).expect("plain data serialises");
        spec.as_object_mut().expect("an object").retain(|_, v| !v.is_null());
        let budget = match api.get_opt(BUDGET_NAME).await? {
            Some(_) => {
                api.patch(BUDGET_NAME, &PatchParams::default(), &Patch::Merge(json!({"spec": spec}))).await?
            }
            None => {
                let spec: Ec2BudgetSpec = serde_json::from_value(spec)
                    .map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
                api.create(&PostParams::default(), &Ec2Budget::new(BUDGET_NAME, spec)).await?
            }
        };
        state.shared.gate.set_limits(budget.spec);
        Ok::<_, ApiError>(view(&state))
    };
    Ok(web::Json(op.run(update).await?))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_budget).service(put_budget);
}
