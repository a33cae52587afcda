//! The in-process harness plus the sandbox's simulated instances (SSH, SFTP, health), and admin
//! state whose SSH pool reaches them.

use dataroom_operator::admin::AdminState;
use dataroom_sandbox::instances::Simulator;
use serde_json::{Value, json};

use super::admin::{call, state};
use super::harness::{Harness, Options};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The harness with simulated instances behind it, and admin state that reaches them.
pub struct Rig {
    pub h: Harness,
    pub root: tempfile::TempDir,
    pub ssh_port: u16,
    pub health_port: u16,
    pub simulator: tokio::task::JoinHandle<()>,
}

impl Rig {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    /// The rig with harness options (a manual clock, say); its SSH settings are the rig's.
    pub async fn start_with(mut options: Options) -> Self {
        let (ssh_port, health_port) = (free_port(), free_port());
        options.ssh.port = ssh_port;
        let h = Harness::start_with(options).await;
        let root = tempfile::tempdir().unwrap();
        let simulator = Self::simulate(&h, root.path(), ssh_port, health_port);
        Rig { h, root, ssh_port, health_port, simulator }
    }

    pub fn simulate(
        h: &Harness,
        root: &std::path::Path,
        ssh_port: u16,
        health_port: u16,
    ) -> tokio::task::JoinHandle<()> {
        let simulator = Simulator { fake: h.fake.clone(), root: root.to_path_buf(), ssh_port, health_port };
        tokio::spawn(simulator.run())
    }

    pub fn state(&self) -> AdminState {
        state(&self.h)
    }
}

pub async fn running<S>(app: &S, name: &str) -> Value
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse,
            Error = actix_web::Error,
        >,
{
    let (status, view) = call(app, "POST", "/api/ec2/instances?wait=20", Some(json!({"name": name}))).await;
    assert_eq!(status, 201, "{view}");
    view
}

impl Rig {
    /// The first live instance's working directory on this machine.
    pub fn home(&self) -> std::path::PathBuf {
        self.root.path().join(&self.h.fake.live_instances()[0].id)
    }
}
