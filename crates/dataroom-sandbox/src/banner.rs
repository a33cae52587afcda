//! What the sandbox prints once it is ready: where everything is, and what to try.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use crate::instances;

pub struct Banner {
    pub started: Instant,
    pub resumed: bool,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub api_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub dns_addr: SocketAddr,
    pub audit: PathBuf,
    pub key_file: PathBuf,
}

impl fmt::Display for Banner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = format!("kubectl --kubeconfig {}", self.kubeconfig.display());
        write!(
            f,
            "dataroom-operator sandbox is ready ({:.1}s, {})\n\
         \n  state:       {dir}\n  kubeconfig:  {kc}\n  API:         http://{api}\n  console:     http://{admin}/ui/  (sign in with the key in {key})\n  admin API:   http://{admin}/api  (docs: /api/docs/; key in {key})\n  health:      http://{admin}/healthz  /readyz  /metrics\n  audit log:   {audit}\n  DNS:         {dns_ip} port {dns_port} (UDP and TCP), zone {zone}: Ready rooms as NAME.NAMESPACE.{zone}\n  instances:   SSH and SFTP on 127.B.x.y:{ssh}, health on :{health}, files under {dir}/instances\n\
         \nEverything runs on this machine: EC2 is simulated in memory, no AWS account is used.\n\
         \nTry:\n  export KUBECONFIG={kc}\n  kubectl apply -f examples/ec2instance.yaml\n  kubectl get ec2 -w\n  kubectl patch ec2 web --type merge -p '{{\"spec\":{{\"powerState\":\"Stopped\"}}}}'\n  kubectl delete ec2 web\n  curl -H \"Authorization: Bearer $(cat {key})\" http://{admin}/api/ec2/instances\n  dig @{dns_ip} -p {dns_port} investor-x.default.{zone}   # after examples/dataroom.yaml is Ready\n  cargo run --release -- audit verify {audit}\n\
         \nCtrl-C stops the sandbox. (Plain `{k} get ec2` works without the export.)",
            self.started.elapsed().as_secs_f64(),
            if self.resumed { "resumed from its state directory" } else { "fresh state" },
            dir = self.dir.display(),
            kc = self.kubeconfig.display(),
            audit = self.audit.display(),
            key = self.key_file.display(),
            ssh = instances::SSH_PORT,
            health = instances::HEALTH_PORT,
            api = self.api_addr,
            admin = self.admin_addr,
            dns_ip = self.dns_addr.ip(),
            dns_port = self.dns_addr.port(),
            zone = crate::dns::ZONE,
        )
    }
}
