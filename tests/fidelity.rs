//! The API emulator as a second client no one here wrote sees it: the official Kubernetes Python
//! client (from PyPI, in `.venv`, installed by `make test`) runs `tests/fidelity/client.py`
//! against a fresh emulator served over TLS with a token, as the sandbox serves it: CRUD, every
//! patch type, dry run, paging, selectors, watches with resume and 410, status isolation,
//! finalizers, schema and validation rules.

use std::path::Path;

use kube_emulator::{Access, ApiServer, Secured};

/// Watch events the emulator keeps: few, so that the suite can outrun them and meet 410 Gone.
const HISTORY: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_client_finds_the_emulator_faithful() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    assert!(python.exists(), "{} is missing: `make test` installs the Python test peers", python.display());
    let server = ApiServer::with_history(HISTORY);
    let secured = Secured::generate().unwrap();
    let (addr, task) =
        kube_emulator::serve(server, "127.0.0.1:0".parse().unwrap(), Access::secured(&secured))
            .await
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    dataroom_sandbox::write_kubeconfig(&kubeconfig, addr, Some(&secured)).unwrap();
    let output = tokio::process::Command::new(&python)
        .arg(root.join("tests/fidelity/client.py"))
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", dir.path())
        .output()
        .await
        .unwrap();
    task.abort();
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the Python client found differences:\n{report}");
    assert!(report.contains("Ran 10 tests") && report.contains("OK"), "{report}");
}
