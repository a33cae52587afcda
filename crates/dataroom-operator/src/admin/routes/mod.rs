//! The admin API's routes, one module per scope.

pub mod audit;
pub mod budget;
pub mod exec_stream;
pub mod files;
pub mod fleet;
pub mod health;
pub mod images;
pub mod instances;
pub mod ssh;

pub fn configure(cfg: &mut actix_web::web::ServiceConfig) {
    cfg.configure(instances::configure)
        .configure(budget::configure)
        .configure(audit::configure)
        .configure(ssh::configure)
        .configure(exec_stream::configure)
        .configure(files::configure)
        .configure(health::configure)
        .configure(images::configure)
        .configure(fleet::configure);
}
