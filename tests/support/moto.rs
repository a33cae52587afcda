//! A moto server (PyPI `moto[server]`, a real AWS API emulator) on a free loopback port, one per
//! test, killed on drop. A missing moto is a failure, never a skip.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};

pub struct Moto {
    child: Child,
    pub endpoint: String,
}

fn moto_binary() -> PathBuf {
    if let Ok(path) = std::env::var("DATAROOM_MOTO_SERVER") {
        return path.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    panic!(
        "moto_server not found: run `make test` (it creates .venv with moto[server]) or set DATAROOM_MOTO_SERVER"
    );
}

impl Moto {
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(moto_binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen on port {port} within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, endpoint: format!("http://127.0.0.1:{port}") }
    }

    pub async fn config(&self) -> SdkConfig {
        let credentials = aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "moto");
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(credentials)
            .load()
            .await
    }

    /// An AMI that moto serves out of the box.
    pub async fn image(&self) -> String {
        let ec2 = aws_sdk_ec2::Client::new(&self.config().await);
        let images = ec2.describe_images().send().await.unwrap().images.unwrap();
        let ebs = images.iter().find(|i| i.root_device_type.as_ref().is_some_and(|t| t.as_str() == "ebs"));
        ebs.or(images.first()).and_then(|i| i.image_id.clone()).expect("moto serves images")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
