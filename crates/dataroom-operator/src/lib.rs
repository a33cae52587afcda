//! dataroom-operator: a Kubernetes operator that turns `DataRoom` and `Ec2Instance` resources into
//! EC2 instances, behind a budget gate and a hash-chained audit log.

pub mod admin;
pub mod assembly;
pub mod audit;
pub mod budget;
pub mod clock;
pub mod cloud;
pub mod config;
pub mod controller;
pub mod crd;
pub mod dns;
pub mod instance;
pub mod leader;
pub mod metrics;
pub mod notify;
pub mod probe;
pub mod runner;
pub mod seams;
pub mod signal;
pub mod ssh;
pub mod telemetry;
