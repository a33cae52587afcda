//! The admin API fuzzed by schemathesis (from the test venv) against the OpenAPI document it
//! serves, with a valid key: no 5xx, every response as documented (status, content type, headers,
//! body schema), malformed input refused, and the key required. The sandbox runs as `nobody`:
//! generated `exec` commands run on this machine.
//!
//! `DATAROOM_FUZZ_EXAMPLES` sets the examples per operation (default 30).

mod support;

use std::path::Path;
use std::process::Command;

use support::sandbox::Sandbox;

const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
    response_headers_conformance,response_schema_conformance,negative_data_rejection,\
    missing_required_header,unsupported_method,ignored_auth";

#[test]
fn schemathesis_finds_no_server_error_and_no_undocumented_response() {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/schemathesis");
    assert!(bin.exists(), "{} is missing: run `make test`, which installs the test peers", bin.display());
    let examples = std::env::var("DATAROOM_FUZZ_EXAMPLES").unwrap_or_else(|_| "30".into());
    let sandbox = Sandbox::start_unprivileged();
    let key = std::fs::read_to_string(sandbox.dir.path().join("admin-key")).unwrap();
    // One running instance, so that routes naming an instance reach it as well as 404s.
    let manifest = sandbox.dir.path().join("web.yaml");
    std::fs::write(&manifest, "apiVersion: dataroom.dev/v1alpha1\nkind: Ec2Instance\nmetadata: {name: web}\nspec: {instanceType: t3.micro}\n").unwrap();
    sandbox.ok(&["apply", "-f", manifest.to_str().unwrap()]);

    // Routes that name an instance get `web` as well as generated names.
    std::fs::write(sandbox.dir.path().join("schemathesis.toml"), "[parameters]\n\"path.id\" = \"web\"\n")
        .unwrap();
    let report = sandbox.dir.path().join("junit.xml");
    let run = Command::new(&bin)
        .arg("run")
        .arg(format!("{}/api/openapi.json", sandbox.admin))
        .args(["--header", &format!("Authorization: Bearer {}", key.trim())])
        // One worker: with two, hypothesis's concurrent `ast.parse` trips a CPython 3.11.7 bug
        // ("AST constructor recursion depth mismatch", fixed in later CPythons) about one run in two.
        .args(["--checks", CHECKS, "--max-examples", &examples, "--workers", "1"])
        .args(["--phases", "examples,coverage,fuzzing", "--generation-database", "none"])
        .args(["--request-timeout", "30", "--no-color", "--report", "junit", "--report-junit-path"])
        .arg(&report)
        .current_dir(sandbox.dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    println!("{stdout}");
    assert!(
        run.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let junit = std::fs::read_to_string(&report).unwrap();
    assert!(junit.contains("<testcase"), "schemathesis ran no operation: {junit}");
}
