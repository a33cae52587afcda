//! Rooms by name in the sandbox: the simulated Route53 answers real DNS queries (the real `dig`),
//! with a Ready room's address, and NXDOMAIN once it stops or goes, across an operator restart in
//! the middle; a hostname another room has is refused.

mod support;

use support::sandbox::Sandbox;

const ZONE: &str = "rooms.dataroom.test";

fn dig(sandbox: &Sandbox, name: &str) -> (String, Vec<String>) {
    support::sandbox::dig(sandbox.dns, name)
}

fn room_field(sandbox: &Sandbox, room: &str, path: &str) -> String {
    sandbox.ok(&["get", "dr", room, "-o", &format!("jsonpath={{{path}}}")])
}

fn wait_phase(sandbox: &Sandbox, room: &str, phase: &str) {
    sandbox.ok(&[
        "wait",
        &format!("dr/{room}"),
        &format!("--for=jsonpath={{.status.phase}}={phase}"),
        "--timeout=60s",
    ]);
}

/// The example room, Ready and published under its name: that name and the room's address.
fn published_example(sandbox: &Sandbox) -> (String, String) {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/dataroom.yaml");
    sandbox.ok(&["apply", "-f", example]);
    wait_phase(sandbox, "investor-x", "Ready");
    let name = format!("investor-x.default.{ZONE}");
    let published = format!("--for=jsonpath={{.status.dnsName}}={name}");
    sandbox.ok(&["wait", "dr/investor-x", &published, "--timeout=30s"]);
    let endpoint = room_field(sandbox, "investor-x", ".status.endpoint");
    (name, endpoint.split(':').next().unwrap().to_string())
}

#[test]
fn a_ready_room_answers_by_name_and_is_gone_once_stopped_or_deleted() {
    let sandbox = Sandbox::start();
    let (name, address) = published_example(&sandbox);
    let answer = dig(&sandbox, &name);
    assert_eq!(answer, ("NOERROR".to_string(), vec![address.clone()]), "Ready: published");
    assert_eq!(dig(&sandbox, &format!("nobody.default.{ZONE}")).0, "NXDOMAIN");
    // In the cluster: a Service of the room's name, and an EndpointSlice to its instance.
    let port = sandbox.ok(&["get", "svc", "investor-x", "-o", "jsonpath={.spec.ports[0].port}"]);
    assert_eq!(port, "8000");
    let slice = ["get", "endpointslices.discovery.k8s.io", "investor-x-instance", "-o"];
    let slice_field = |path: &str| sandbox.ok(&[&slice[..], &[&format!("jsonpath={{{path}}}")]].concat());
    assert_eq!(slice_field(".endpoints[0].addresses[0]"), address);
    assert_eq!(slice_field(".metadata.labels.kubernetes\\.io/service-name"), "investor-x");

    // Stopped while the operator is down: the restarted operator removes the record.
    let sandbox = {
        let stopped = sandbox.ok(&[
            "patch",
            "dr",
            "investor-x",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"state":"Stopped"}}"#,
        ]);
        assert!(stopped.contains("patched"));
        sandbox.restart()
    };
    wait_phase(&sandbox, "investor-x", "Stopped");
    sandbox.ok(&["wait", "dr/investor-x", "--for=condition=DnsPublished=false", "--timeout=30s"]);
    assert_eq!(dig(&sandbox, &name).0, "NXDOMAIN", "Stopped: gone");
    assert_eq!(room_field(&sandbox, "investor-x", ".status.dnsName"), "");
    let gone = sandbox.kubectl(&["get", "svc", "investor-x"]);
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("NotFound"),
        "the Service goes with the room's readiness"
    );

    // Running again: back, at its new instance's address.
    sandbox.ok(&["patch", "dr", "investor-x", "--type", "merge", "-p", r#"{"spec":{"state":"Running"}}"#]);
    wait_phase(&sandbox, "investor-x", "Ready");
    sandbox.ok(&["wait", "dr/investor-x", "--for=condition=DnsPublished", "--timeout=30s"]);
    let address =
        room_field(&sandbox, "investor-x", ".status.endpoint").split(':').next().unwrap().to_string();
    assert_eq!(dig(&sandbox, &name).1, vec![address]);

    // A second room asking for a name the first has (by its own hostname) is refused.
    let second = r#"{"apiVersion":"dataroom.dev/v1alpha1","kind":"DataRoom","metadata":{"name":"copycat"},
        "spec":{"config":{"inline":{"room":"copycat"}},"dns":{"hostname":"investor-x.default"},"healthCheck":{"periodSeconds":1}}}"#;
    let file = sandbox.dir.path().join("copycat.json");
    std::fs::write(&file, second).unwrap();
    sandbox.ok(&["apply", "-f", file.to_str().unwrap()]);
    wait_phase(&sandbox, "copycat", "Ready");
    sandbox.ok(&["wait", "dr/copycat", "--for=condition=DnsPublished=false", "--timeout=30s"]);
    let message = room_field(&sandbox, "copycat", r#".status.conditions[?(@.type=="DnsPublished")].message"#);
    assert!(message.contains("belongs to the room default/investor-x"), "{message}");
    let reason = room_field(&sandbox, "copycat", r#".status.conditions[?(@.type=="DnsPublished")].reason"#);
    assert_eq!(reason, "NameTaken");
    let first = room_field(&sandbox, "investor-x", ".status.endpoint").split(':').next().unwrap().to_string();
    assert_eq!(dig(&sandbox, &name).1, vec![first], "the first room keeps its name");

    // The owner deleted: the name passes to the room that asked for it next; deleted too: gone.
    sandbox.ok(&["delete", "dr", "investor-x", "--timeout=60s"]);
    let copycat = room_field(&sandbox, "copycat", ".status.endpoint").split(':').next().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while dig(&sandbox, &name).1 != [copycat.clone()] {
        assert!(
            std::time::Instant::now() < deadline,
            "the name never passed to copycat: {:?}",
            dig(&sandbox, &name)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    sandbox.ok(&["delete", "dr", "copycat", "--timeout=60s"]);
    assert_eq!(dig(&sandbox, &name).0, "NXDOMAIN", "deleted: gone");
    let audit = std::fs::read_to_string(sandbox.dir.path().join("audit.jsonl")).unwrap();
    let count =
        |action: &str| audit.lines().filter(|l| l.contains(&format!("\"action\":\"{action}\""))).count();
    assert!(count("dns.publish") >= 2 && count("dns.unpublish") >= 2, "{audit}");
}

/// `--dns-provider external-dns`: one DNSEndpoint per name, as ExternalDNS's CRD source reads it,
/// replaced when the address changes and deleted when the room goes.
#[tokio::test]
async fn external_dns_gets_a_dns_endpoint_per_published_room() {
    use dataroom_operator::dns::Publisher;
    use dataroom_operator::dns::external::ExternalDns;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};

    let server = kube_emulator::ApiServer::new();
    let client = server.client();
    let crd: CustomResourceDefinition =
        serde_yaml::from_str(include_str!("fixtures/dnsendpoint-crd.yaml")).unwrap();
    Api::<CustomResourceDefinition>::all(client.clone()).create(&PostParams::default(), &crd).await.unwrap();
    let zone = ExternalDns::new(client.clone(), "default", "rooms.example.com");
    let name = "investor-x.default.rooms.example.com";
    zone.publish(name, "10.0.0.5".parse().unwrap()).await.unwrap();
    zone.publish(name, "10.0.0.6".parse().unwrap()).await.unwrap();
    let gvk = GroupVersionKind::gvk("externaldns.k8s.io", "v1alpha1", "DNSEndpoint");
    let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &ApiResource::from_gvk(&gvk));
    let endpoint = api.get(name).await.unwrap();
    let endpoints = &endpoint.data["spec"]["endpoints"];
    assert_eq!(endpoints.as_array().unwrap().len(), 1, "{endpoints}");
    assert_eq!(endpoints[0]["dnsName"], name);
    assert_eq!(
        (&endpoints[0]["recordType"], &endpoints[0]["targets"]),
        (&serde_json::json!("A"), &serde_json::json!(["10.0.0.6"]))
    );
    zone.unpublish(name).await.unwrap();
    assert!(api.get_opt(name).await.unwrap().is_none(), "deleted with the room");
    zone.unpublish(name).await.unwrap();
}

/// `--dns-provider route53` against moto: UPSERT, a second UPSERT that moves the name, and DELETE
/// of the record as it stands; removing a missing name succeeds.
#[tokio::test]
async fn route53_holds_one_a_record_per_published_room() {
    use dataroom_operator::dns::Publisher;
    use dataroom_operator::dns::route53::Route53;

    let moto = support::moto::Moto::start();
    let config = moto.config().await;
    let route53 = aws_sdk_route53::Client::new(&config);
    let created =
        route53.create_hosted_zone().name("rooms.example.com").caller_reference("dns-test").send().await;
    let zone_id = created.unwrap().hosted_zone.unwrap().id.trim_start_matches("/hostedzone/").to_string();
    let zone = Route53::with_config(&config, &zone_id, "rooms.example.com");
    let name = "investor-x.default.rooms.example.com";
    let records = || async {
        let listed = route53.list_resource_record_sets().hosted_zone_id(&zone_id).send().await.unwrap();
        let a =
            listed.resource_record_sets.into_iter().filter(|s| s.r#type == aws_sdk_route53::types::RrType::A);
        a.map(|s| {
            (s.name, s.resource_records.unwrap_or_default().into_iter().map(|r| r.value).collect::<Vec<_>>())
        })
        .collect::<Vec<_>>()
    };
    zone.publish(name, "10.0.0.5".parse().unwrap()).await.unwrap();
    zone.publish(name, "10.0.0.6".parse().unwrap()).await.unwrap();
    assert_eq!(records().await, vec![(format!("{name}."), vec!["10.0.0.6".to_string()])]);
    zone.unpublish(name).await.unwrap();
    assert_eq!(records().await, vec![], "deleted with the room");
    zone.unpublish(name).await.unwrap();
}

/// A Ready room given another hostname: the old name is removed and the new one published.
#[test]
fn a_changed_hostname_moves_the_record() {
    let sandbox = Sandbox::start();
    let (old, address) = published_example(&sandbox);
    sandbox.ok(&[
        "patch",
        "dr",
        "investor-x",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"dns":{"hostname":"deals"}}}"#,
    ]);
    let new = format!("deals.{ZONE}");
    sandbox.ok(&[
        "wait",
        "dr/investor-x",
        &format!("--for=jsonpath={{.status.dnsName}}={new}"),
        "--timeout=30s",
    ]);
    assert_eq!(dig(&sandbox, &new), ("NOERROR".to_string(), vec![address]));
    assert_eq!(dig(&sandbox, &old).0, "NXDOMAIN", "the old name is removed");
}
