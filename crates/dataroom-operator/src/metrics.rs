//! Prometheus metrics (prometheus-client): reconciles, failures by error kind, reconcile duration,
//! EC2 calls by operation and outcome (throttles apart), budget usage, polls, audit records by
//! action and outcome, audited operations' durations, audit write failures.

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::crd::{Ec2BudgetSpec, Ec2BudgetStatus};

type Labels = Vec<(&'static str, String)>;
type StaticLabels = Vec<(&'static str, &'static str)>;

pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<Labels, Counter>,
    pub reconcile_failures: Family<Labels, Counter>,
    pub reconcile_duration: Family<Labels, Histogram>,
    pub cloud_calls: Family<Labels, Counter>,
    pub budget_refusals: Family<StaticLabels, Counter>,
    pub budget_instances: Gauge,
    pub budget_max_instances: Gauge,
    pub budget_spend_usd: Gauge<f64, AtomicU64>,
    pub budget_cap_usd: Gauge<f64, AtomicU64>,
    pub managed_instances: Gauge,
    pub poll_duration: Histogram,
    pub audit_write_failures: Counter,
    pub admin_keys_reload_failures: Counter,
    pub api_auth_failures: Counter,
    pub api_rate_limited: Counter,
    pub audit_records: Family<Labels, Counter>,
    pub operation_duration: Family<Labels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("dataroom");
        let reconcile_duration = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        let operation_duration = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        let metrics = Self {
            reconciles: Family::default(),
            reconcile_failures: Family::default(),
            reconcile_duration,
            cloud_calls: Family::default(),
            budget_refusals: Family::default(),
            budget_instances: Gauge::default(),
            budget_max_instances: Gauge::default(),
            budget_spend_usd: Gauge::default(),
            budget_cap_usd: Gauge::default(),
            managed_instances: Gauge::default(),
            poll_duration: Histogram::new(exponential_buckets(0.01, 2.0, 12)),
            audit_write_failures: Counter::default(),
            admin_keys_reload_failures: Counter::default(),
            api_auth_failures: Counter::default(),
            api_rate_limited: Counter::default(),
            audit_records: Family::default(),
            operation_duration,
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register("reconciles", "Reconciles started, by kind", metrics.reconciles.clone());
        r.register(
            "reconcile_failures",
            "Failed reconciles, by kind and error",
            metrics.reconcile_failures.clone(),
        );
        r.register("reconcile_duration_seconds", "Reconcile duration", metrics.reconcile_duration.clone());
        r.register("cloud_calls", "Cloud API calls, by operation and outcome", metrics.cloud_calls.clone());
        r.register(
            "budget_refusals",
            "Launches and starts refused, by limit",
            metrics.budget_refusals.clone(),
        );
        r.register("budget_instances", "Instances holding a budget slot", metrics.budget_instances.clone());
        r.register("budget_max_instances", "The maxInstances limit", metrics.budget_max_instances.clone());
        r.register("budget_spend_today_usd", "Spend so far in the UTC day", metrics.budget_spend_usd.clone());
        r.register("budget_daily_cap_usd", "The dailySpendUsd limit", metrics.budget_cap_usd.clone());
        r.register(
            "managed_instances",
            "Managed instances seen by the last poll",
            metrics.managed_instances.clone(),
        );
        r.register("poll_duration_seconds", "Duration of a full EC2 sweep", metrics.poll_duration.clone());
        r.register(
            "audit_write_failures",
            "Audit records that could not be written",
            metrics.audit_write_failures.clone(),
        );
        r.register(
            "admin_keys_reload_failures",
            "Changes of the admin keys file refused because it did not parse (the last good keys stay)",
            metrics.admin_keys_reload_failures.clone(),
        );
        r.register(
            "api_auth_failures",
            "Admin API requests with no or a wrong, expired key",
            metrics.api_auth_failures.clone(),
        );
        r.register(
            "api_rate_limited",
            "Admin API requests refused with 429",
            metrics.api_rate_limited.clone(),
        );
        r.register(
            "audit_records",
            "Audit records written, by action and outcome: what the operator and its API did (launches, exec, files, sign-ins)",
            metrics.audit_records.clone(),
        );
        r.register(
            "operation_duration_seconds",
            "Audited operations from intent to outcome, by action (exec, file transfers, AMIs)",
            metrics.operation_duration.clone(),
        );
        Self { registry, ..metrics }
    }
}

/// Observes a reconcile's duration when dropped.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    kind: &'static str,
    started: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        let labels = vec![("kind", self.kind.to_string())];
        self.metrics.reconcile_duration.get_or_create(&labels).observe(self.started.elapsed().as_secs_f64());
    }
}

impl Metrics {
    pub fn reconcile_started(&self, kind: &'static str) -> ReconcileTimer<'_> {
        self.reconciles.get_or_create(&vec![("kind", kind.to_string())]).inc();
        ReconcileTimer { metrics: self, kind, started: Instant::now() }
    }

    pub fn reconcile_failed(&self, kind: &str, error: &str) {
        let labels = vec![("kind", kind.to_string()), ("error", error.to_string())];
        self.reconcile_failures.get_or_create(&labels).inc();
    }

    /// One audit record written.
    pub fn audit_record(&self, action: &str, outcome: &str) {
        let labels = vec![("action", action.to_string()), ("outcome", outcome.to_string())];
        self.audit_records.get_or_create(&labels).inc();
    }

    pub fn operation_finished(&self, action: &str, seconds: f64) {
        self.operation_duration.get_or_create(&vec![("action", action.to_string())]).observe(seconds);
    }

    pub fn cloud_call(&self, operation: &str, outcome: &str) {
        let labels = vec![("operation", operation.to_string()), ("outcome", outcome.to_string())];
        self.cloud_calls.get_or_create(&labels).inc();
    }

    pub fn budget(&self, limits: &Ec2BudgetSpec, usage: &Ec2BudgetStatus) {
        self.budget_instances.set(usage.running_instances as i64);
        self.budget_max_instances.set(limits.max_instances as i64);
        self.budget_spend_usd.set(usage.spend_today_usd);
        self.budget_cap_usd.set(limits.daily_spend_usd);
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
