//! Conformance of the Kubernetes API emulator with documented API server behaviour, driven
//! in-process through `kube::Client` and raw requests.

use std::time::Duration;

use dataroom_sandbox::install_crds;
use http_body_util::BodyExt;
use kube_emulator::ApiServer;
use serde_json::{Value, json};

const EC2: &str = "/apis/dataroom.dev/v1alpha1/namespaces/default/ec2instances";
const CM: &str = "/api/v1/namespaces/default/configmaps";

async fn raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: Value,
    content_type: &str,
) -> (u16, Value) {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(serde_json::to_vec(&body).unwrap().into())
        .unwrap();
    let response = client.send(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn call(client: &kube::Client, method: &str, path: &str, body: Value) -> (u16, Value) {
    raw(client, method, path, body, "application/json").await
}

/// The first `n` lines of a watch (or fewer if `wait` passes without one).
async fn watch_lines(client: &kube::Client, path: &str, n: usize, wait: Duration) -> Vec<Value> {
    let request = http::Request::builder().uri(path).body(Vec::new().into()).unwrap();
    let mut body = client.send(request).await.unwrap().into_body();
    let (mut lines, mut buffer) = (Vec::new(), String::new());
    while lines.len() < n {
        let Ok(Some(Ok(frame))) = tokio::time::timeout(wait, body.frame()).await else { break };
        buffer.push_str(&String::from_utf8_lossy(&frame.into_data().unwrap_or_default()));
        while let Some(end) = buffer.find('\n') {
            lines.push(serde_json::from_str(&buffer[..end]).unwrap());
            buffer.drain(..=end);
        }
    }
    lines
}

async fn setup() -> (std::sync::Arc<ApiServer>, kube::Client) {
    let server = ApiServer::configured(1000, Duration::from_millis(100));
    let client = server.client();
    install_crds(&client).await.unwrap();
    (server, client)
}

fn ec2(name: &str) -> Value {
    json!({ "apiVersion": "dataroom.dev/v1alpha1", "kind": "Ec2Instance", "metadata": { "name": name }, "spec": {} })
}

fn rv(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn generation_moves_on_spec_changes_only_and_stale_updates_conflict() {
    let (_s, c) = setup().await;
    let (code, created) = call(&c, "POST", EC2, ec2("web")).await;
    assert_eq!(code, 201);
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(created["metadata"]["uid"].is_string() && created["metadata"]["creationTimestamp"].is_string());
    assert_eq!(created["spec"]["instanceType"], "t3.micro", "defaults applied");

    let mut status = created.clone();
    status["status"] = json!({ "state": "pending" });
    let (code, after_status) = call(&c, "PUT", &format!("{EC2}/web/status"), status).await;
    assert_eq!(code, 200);
    assert_eq!(after_status["metadata"]["generation"], 1);
    assert!(rv(&after_status) > rv(&created));

    let mut spec = after_status.clone();
    spec["spec"]["powerState"] = json!("Stopped");
    let (_, after_spec) = call(&c, "PUT", &format!("{EC2}/web"), spec).await;
    assert_eq!(after_spec["metadata"]["generation"], 2);

    let mut stale = created.clone();
    stale["spec"]["instanceType"] = json!("t3.small");
    let (code, body) = call(&c, "PUT", &format!("{EC2}/web"), stale).await;
    assert_eq!(code, 409);
    assert_eq!(body["reason"], "Conflict");
    let (code, _) = call(&c, "POST", EC2, ec2("web")).await;
    assert_eq!(code, 409, "AlreadyExists");
}

#[tokio::test]
async fn the_status_subresource_is_isolated_both_ways() {
    let (_s, c) = setup().await;
    let (_, mut obj) = call(
        &c,
        "POST",
        EC2,
        json!({ "apiVersion": "dataroom.dev/v1alpha1", "kind": "Ec2Instance",
        "metadata": { "name": "web" }, "spec": {}, "status": { "state": "forged" } }),
    )
    .await;
    assert!(obj.get("status").is_none(), "status is ignored on create");
    obj["status"] = json!({ "state": "ignored" });
    let (_, obj) = call(&c, "PUT", &format!("{EC2}/web"), obj).await;
    assert!(obj.get("status").is_none(), "the main endpoint ignores status");
    let mut both = obj.clone();
    both["status"] = json!({ "state": "running" });
    both["spec"]["instanceType"] = json!("t3.large");
    let (_, obj) = call(&c, "PUT", &format!("{EC2}/web/status"), both).await;
    assert_eq!(obj["status"]["state"], "running");
    assert_eq!(obj["spec"]["instanceType"], "t3.micro", "/status ignores the rest");
    let (code, _) = raw(
        &c,
        "PATCH",
        &format!("{EC2}/web/status"),
        json!({ "status": { "state": "stopped" } }),
        "application/merge-patch+json",
    )
    .await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn invalid_objects_get_422_naming_the_field() {
    let (_s, c) = setup().await;
    let mut bad = ec2("web");
    bad["spec"] = json!({ "powerState": "Paused", "rootVolumeGiB": 0, "unknown": 1 });
    let (code, status) = call(&c, "POST", EC2, bad).await;
    assert_eq!(code, 422);
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Invalid");
    let fields: Vec<&str> = status["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["spec.powerState", "spec.rootVolumeGiB"]);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("is invalid: [spec.powerState: Unsupported value: \"Paused\""),
        "{status}"
    );
    let mut pruned = ec2("ok");
    pruned["spec"] = json!({ "unknown": 1 });
    let (code, obj) = call(&c, "POST", EC2, pruned).await;
    assert_eq!(code, 201);
    assert!(obj["spec"].get("unknown").is_none(), "unknown fields are pruned");
    let (code, _) = call(&c, "POST", EC2, ec2("Bad_Name")).await;
    assert_eq!(code, 422);
}

#[tokio::test]
async fn finalizers_hold_deletion_and_owners_cascade() {
    let (_s, c) = setup().await;
    let mut held = ec2("held");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    let (_, owner) = call(&c, "POST", EC2, held).await;
    let dependent = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "dep", "ownerReferences": [
        { "apiVersion": "dataroom.dev/v1alpha1", "kind": "Ec2Instance", "name": "held", "uid": owner["metadata"]["uid"] } ] } });
    assert_eq!(call(&c, "POST", CM, dependent).await.0, 201);

    let (code, marked) = call(&c, "DELETE", &format!("{EC2}/held"), json!({})).await;
    assert_eq!(code, 200);
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(call(&c, "GET", &format!("{EC2}/held"), Value::Null).await.0, 200, "still there");
    assert_eq!(call(&c, "GET", &format!("{CM}/dep"), Value::Null).await.0, 200);

    let patch = json!([{ "op": "test", "path": "/metadata/finalizers/0", "value": "example.com/hold" }, { "op": "remove", "path": "/metadata/finalizers/0" }]);
    assert_eq!(raw(&c, "PATCH", &format!("{EC2}/held"), patch, "application/json-patch+json").await.0, 200);
    assert_eq!(
        call(&c, "GET", &format!("{EC2}/held"), Value::Null).await.0,
        404,
        "gone once finalizers are empty"
    );
    assert_eq!(call(&c, "GET", &format!("{CM}/dep"), Value::Null).await.0, 404, "dependents cascade");
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists() {
    let (_s, c) = setup().await;
    for (name, app) in [("a", "web"), ("b", "db"), ("c", "web")] {
        let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name, "labels": { "app": app } } });
        call(&c, "POST", CM, cm).await;
    }
    let names = |list: Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(call(&c, "GET", &format!("{CM}?labelSelector=app%3Dweb"), Value::Null).await.1),
        ["a", "c"]
    );
    assert_eq!(
        names(call(&c, "GET", &format!("{CM}?labelSelector=app%20in%20(db)"), Value::Null).await.1),
        ["b"]
    );
    assert_eq!(
        names(call(&c, "GET", &format!("{CM}?fieldSelector=metadata.name%3Dc"), Value::Null).await.1),
        ["c"]
    );
    assert_eq!(
        names(
            call(&c, "GET", "/api/v1/configmaps?fieldSelector=metadata.namespace%3Ddefault", Value::Null)
                .await
                .1
        )
        .len(),
        3
    );
}

#[tokio::test]
async fn watches_resume_send_bookmarks_and_expire() {
    let (_s, c) = setup().await;
    let (_, first) = call(&c, "POST", EC2, ec2("one")).await;
    call(&c, "POST", EC2, ec2("two")).await;
    call(&c, "POST", EC2, ec2("three")).await;
    let lines = watch_lines(
        &c,
        &format!("{EC2}?watch=true&resourceVersion={}", rv(&first)),
        2,
        Duration::from_secs(2),
    )
    .await;
    let names: Vec<&str> = lines.iter().map(|l| l["object"]["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["two", "three"], "resumes after the given version");
    assert!(lines.iter().all(|l| l["type"] == "ADDED"));

    let lines = watch_lines(
        &c,
        &format!("{EC2}?watch=true&resourceVersion={}&allowWatchBookmarks=true", rv(&first)),
        3,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(lines[2]["type"], "BOOKMARK");

    let small = ApiServer::configured(3, Duration::from_secs(60));
    let c = small.client();
    for n in 0..10 {
        let cm =
            json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": format!("cm-{n}") } });
        call(&c, "POST", CM, cm).await;
    }
    let lines =
        watch_lines(&c, &format!("{CM}?watch=true&resourceVersion=2"), 1, Duration::from_secs(2)).await;
    assert_eq!(lines[0]["type"], "ERROR");
    assert_eq!(lines[0]["object"]["code"], 410, "too old: 410 Gone");
}

#[tokio::test]
async fn discovery_names_kinds_short_names_and_categories() {
    let (_s, c) = setup().await;
    let (_, groups) = call(&c, "GET", "/apis", Value::Null).await;
    assert!(groups["groups"].as_array().unwrap().iter().any(|g| g["name"] == "dataroom.dev"));
    let (_, list) = call(&c, "GET", "/apis/dataroom.dev/v1alpha1", Value::Null).await;
    let ec2 = list["resources"].as_array().unwrap().iter().find(|r| r["name"] == "ec2instances").unwrap();
    assert_eq!(ec2["shortNames"], json!(["ec2"]));
    assert_eq!(ec2["categories"], json!(["dataroom"]));
    assert_eq!(ec2["namespaced"], true);
    let (_, core) = call(&c, "GET", "/api/v1", Value::Null).await;
    assert!(core["resources"].as_array().unwrap().iter().any(|r| r["name"] == "configmaps"));
}

/// A write that changes nothing (the same server-side apply again, a label set to its value, an
/// update that sends the object back) stores nothing: the resourceVersion stays and watchers hear
/// nothing, as on a real API server. A deletion that removes at once answers with a Status.
#[tokio::test]
async fn writes_that_change_nothing_store_nothing_and_deletes_answer_a_status() {
    let (_s, c) = setup().await;
    let (_, created) = call(
        &c,
        "POST",
        CM,
        json!({ "metadata": { "name": "same", "labels": { "a": "1" } }, "data": { "k": "v" } }),
    )
    .await;
    let apply = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "same" }, "data": { "k": "v" } });
    let applied = format!("{CM}/same?fieldManager=tester");
    let (_, first) = raw(&c, "PATCH", &applied, apply.clone(), "application/apply-patch+yaml").await;
    let watch = format!("{CM}?watch=true&resourceVersion={}", rv(&first));
    let watcher = tokio::spawn({
        let c = c.clone();
        async move { watch_lines(&c, &watch, 1, Duration::from_secs(3)).await }
    });
    let (_, again) = raw(&c, "PATCH", &applied, apply, "application/apply-patch+yaml").await;
    let (_, relabelled) = raw(
        &c,
        "PATCH",
        &format!("{CM}/same"),
        json!({ "metadata": { "labels": { "a": "1" } } }),
        "application/merge-patch+json",
    )
    .await;
    let (_, put_back) = call(&c, "PUT", &format!("{CM}/same"), relabelled.clone()).await;
    for unchanged in [&again, &relabelled, &put_back] {
        assert_eq!(rv(unchanged), rv(&first), "{unchanged}");
    }
    assert!(rv(&first) >= rv(&created));
    let (_, changed) = raw(
        &c,
        "PATCH",
        &format!("{CM}/same"),
        json!({ "data": { "k": "w" } }),
        "application/merge-patch+json",
    )
    .await;
    assert!(rv(&changed) > rv(&first));
    let heard = watcher.await.unwrap();
    assert_eq!(heard.len(), 1);
    assert_eq!(heard[0]["object"]["data"]["k"], "w", "the first event is the real change: {heard:?}");

    let (code, status) = call(&c, "DELETE", &format!("{CM}/same"), json!({})).await;
    assert_eq!(
        (code, status["kind"].as_str(), status["status"].as_str()),
        (200, Some("Status"), Some("Success"))
    );
    assert_eq!(
        (status["details"]["name"].as_str(), status["details"]["uid"].clone()),
        (Some("same"), changed["metadata"]["uid"].clone())
    );
}

/// `kubectl apply --dry-run=server`: validated and defaulted as a real write, and nothing stored:
/// no object, no watch event, no resourceVersion moved. Invalid input still fails.
#[tokio::test]
async fn a_server_dry_run_validates_and_stores_nothing() {
    let (_s, c) = setup().await;
    let (_, list) = call(&c, "GET", EC2, Value::Null).await;
    let watch =
        format!("{EC2}?watch=true&resourceVersion={}", list["metadata"]["resourceVersion"].as_str().unwrap());
    let watcher = tokio::spawn({
        let c = c.clone();
        async move { watch_lines(&c, &watch, 1, Duration::from_secs(2)).await }
    });
    let (code, dry) = call(&c, "POST", &format!("{EC2}?dryRun=All"), ec2("dry")).await;
    assert_eq!(code, 201, "{dry}");
    assert_eq!(dry["spec"]["instanceType"], "t3.micro", "defaulted as a real create");
    assert_eq!(call(&c, "GET", &format!("{EC2}/dry"), Value::Null).await.0, 404, "nothing created");
    let mut bad = ec2("bad");
    bad["spec"]["powerState"] = json!("Sideways");
    assert_eq!(call(&c, "POST", &format!("{EC2}?dryRun=All"), bad).await.0, 422, "still validated");
    assert_eq!(call(&c, "POST", &format!("{EC2}?dryRun=Some"), ec2("x")).await.0, 400);

    let (_, real) = call(&c, "POST", EC2, ec2("real")).await;
    let stopped = json!({ "spec": { "powerState": "Stopped" } });
    let path = format!("{EC2}/real?dryRun=All");
    let (code, patched) = raw(&c, "PATCH", &path, stopped, "application/merge-patch+json").await;
    assert_eq!((code, patched["spec"]["powerState"].as_str()), (200, Some("Stopped")));
    let (code, _) = call(&c, "DELETE", &path, json!({})).await;
    assert_eq!(code, 200);
    let (_, after) = call(&c, "GET", &format!("{EC2}/real"), Value::Null).await;
    assert_eq!((after["spec"]["powerState"].as_str(), rv(&after)), (Some("Running"), rv(&real)), "{after}");
    let heard = watcher.await.unwrap();
    assert_eq!(heard[0]["object"]["metadata"]["name"], "real", "the dry runs sent no event: {heard:?}");
}
