//! Test-only redirections, all in one place, so that every way a test or bench reaches into a
//! production path is named here. Production leaves them empty (`Seams::default()`); `run` sets
//! only `sandbox_cloud`, from its hidden `--sandbox-cloud` flag.

use std::net::SocketAddr;

#[derive(Clone, Debug, Default)]
pub struct Seams {
    /// Connect every instance's SSH to this address instead (one sshd serving every test instance).
    pub ssh_address: Option<SocketAddr>,
    /// Send DataRoom health checks to this host instead of the instance's address.
    pub health_host: Option<String>,
    /// Use the simulated EC2 of a `sandbox --external-operator` at this address instead of AWS,
    /// to measure the operator apart from the sandbox.
    pub sandbox_cloud: Option<SocketAddr>,
}
