"""Renders the Helm chart with Helm's own engine (helm-python-sdk) over several value sets,
validates every manifest (kubernetes-validate, strict; the chart's own kinds against its CRDs),
asserts the security policy, and writes each set's manifests to OUT/<set>.yaml for the Rust test
to `kubectl apply` into the sandbox. Exits non-zero on any finding.

usage: check.py CHART_DIR OUT_DIR
"""

import json
import pathlib
import sys

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

ROLE_ARN = "arn:aws:iam::123456789012:role/dataroom-operator"
VALUE_SETS = {
    "defaults": {},
    "irsa": {
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": ROLE_ARN}},
        "dns": {"provider": "external-dns", "zone": "rooms.example.com"},
        "watchNamespace": "rooms",
        "audit": {"archive": {"bucket": "dr-audit"}},
        "network": {"operatorCidrs": ["10.20.0.0/16", "fd00:10::/64"]},
    },
    "ha": {
        "replicas": 2, "persistence": {"accessMode": "ReadWriteMany"}, "aws": {"region": "eu-west-1", "credentialsSecret": "aws-credentials"},
        "dns": {"provider": "route53", "zone": "rooms.example.com", "route53HostedZoneId": "Z0123456789ABC"},
    },
    "metrics": {
        "metrics": {
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True, "launchesPerHour": 0, "execsPerHour": None},
            "grafanaDashboard": {"folder": "Data rooms"},
        },
        "admin": {"keys": ["alice sha256:" + "ab" * 32, "ci sha256:" + "cd" * 32 + " scopes=read,exec expires=2027-01-01T00:00:00Z"]},
        "notifications": {"webhook": {"url": "https://hooks.example.com/T0/B0", "secretName": "dr-webhook", "actions": ["launch", "api.instance.*"]}},
    },
    "cert-manager": {
        "tls": {"certManager": {"enabled": True, "issuerName": "cluster-ca", "issuerKind": "ClusterIssuer"}},
        "metrics": {"serviceMonitor": {"enabled": True}},
        "budget": {"writableThroughApi": True},
    },
    "own-tls": {
        "tls": {"existingSecret": "my-tls"}, "admin": {"kubernetesIdentities": False}, "rbac": {"userRoles": False},
        "dns": {"roomServices": False},
    },
    "trial": {
        "persistence": {"enabled": False}, "admin": {"enabled": False}, "networkPolicy": {"enabled": False},
        "tls": {"enabled": False}, "metrics": {"grafanaDashboard": {"enabled": False}},
    },
}
# Values the schema or the templates must refuse, and a word the refusal must contain.
REFUSED = {
    "replicas 0": ({"replicas": 0}, "replicas"),
    "unknown key": ({"replicaCount": 2}, "replicaCount"),
    "bad key line": ({"admin": {"keys": ["alice not-a-hash"]}}, "keys"),
    "HA on ReadWriteOnce": ({"replicas": 2}, "ReadWriteMany"),
    "watching the release namespace": ({"watchNamespace": "dataroom"}, "watchNamespace"),
    "archive bucket name": ({"audit": {"archive": {"bucket": "Not_A_Bucket"}}}, "bucket"),
    "checkpoint interval": ({"audit": {"checkpointIntervalSeconds": 7200}}, "checkpointIntervalSeconds"),
    "cert-manager without an issuer": ({"tls": {"certManager": {"enabled": True}}}, "issuerName"),
    "the whole internet as the operator's range": ({"network": {"operatorCidrs": ["0.0.0.0/0"]}}, "operatorCidrs"),
    "a DNS provider without a zone": ({"dns": {"provider": "external-dns"}}, "dns.zone"),
    "route53 without its hosted zone": ({"dns": {"provider": "route53", "zone": "rooms.example.com"}}, "route53HostedZoneId"),
    "an unknown DNS provider": ({"dns": {"provider": "bind", "zone": "rooms.example.com"}}, "provider"),
    "a webhook without its secret": ({"notifications": {"webhook": {"url": "https://hooks.example.com/x"}}}, "secretName"),
    "a webhook that is not http(s)": ({"notifications": {"webhook": {"url": "ftp://x", "secretName": "s"}}}, "url"),
}
SERVICE = "dr-dataroom-operator"
KUBE_VERSION = "1.30.0"

failures = []


def fail(where, message):
    failures.append(f"{where}: {message}")


def crd_schemas(chart):
    schemas = {}
    for doc in yaml.safe_load_all((chart / "crds" / "dataroom.dev.yaml").read_text()):
        for version in doc["spec"]["versions"]:
            key = (f"{doc['spec']['group']}/{version['name']}", doc["spec"]["names"]["kind"])
            schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


def validate(where, doc, schemas):
    key = (doc["apiVersion"], doc["kind"])
    if key in schemas:
        try:
            jsonschema.validate(doc, schemas[key])
        except jsonschema.ValidationError as e:
            fail(where, f"{doc['kind']} breaks its CRD schema: {e.message}")
        return
    if doc["apiVersion"] == "cert-manager.io/v1":
        spec = doc.get("spec", {})
        if not (spec.get("secretName") and spec.get("issuerRef", {}).get("name") and spec.get("dnsNames")):
            fail(where, "the Certificate is missing its secretName, issuerRef or dnsNames")
        return
    if doc["apiVersion"].startswith("monitoring.coreos.com/"):
        # No schema offline for prometheus-operator's kinds: check what they cannot work without.
        spec = doc.get("spec", {})
        ok = spec.get("endpoints") if doc["kind"] == "ServiceMonitor" else all(
            r.get("expr") for g in spec.get("groups", []) for r in g.get("rules", []))
        if not ok:
            fail(where, f"{doc['kind']} {doc['metadata']['name']} is missing its endpoints or rule expressions")
        return
    try:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        fail(where, f"{doc['kind']} {doc['metadata']['name']}: {str(e).splitlines()[0]}")


def check_rbac(where, doc):
    if doc["kind"] not in ("Role", "ClusterRole"):
        return
    for rule in doc.get("rules", []):
        for field in ("verbs", "resources", "apiGroups", "resourceNames"):
            if "*" in rule.get(field, []):
                fail(where, f"{doc['kind']} {doc['metadata']['name']} has a wildcard in {field}")
        if "secrets" in rule.get("resources", []) and {"list", "watch"} & set(rule["verbs"]):
            fail(where, "Secrets may be read by name only, never listed or watched")


def check_pod(where, doc):
    if doc["kind"] != "Deployment":
        return
    if doc["spec"].get("strategy", {}).get("type") != "Recreate":
        fail(where, "only the leader is Ready, so a rolling update would never finish: use Recreate")
    pod = doc["spec"]["template"]["spec"]
    if pod.get("securityContext", {}).get("seccompProfile", {}).get("type") != "RuntimeDefault":
        fail(where, "the pod has no RuntimeDefault seccomp profile")
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        sc = c.get("securityContext", {})
        expected = {"runAsNonRoot": True, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False}
        for field, value in expected.items():
            if sc.get(field) is not value:
                fail(where, f"container {c['name']}: securityContext.{field} must be {value}")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            fail(where, f"container {c['name']}: capabilities must drop ALL")
        if sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            fail(where, f"container {c['name']}: seccompProfile must be RuntimeDefault")


def check_archive(where, doc, values):
    """The archive is configured exactly when a bucket is named, as the operator reads it."""
    if doc["kind"] != "Deployment":
        return
    env = {e["name"]: e.get("value") for e in doc["spec"]["template"]["spec"]["containers"][0]["env"]}
    archive = values.get("audit", {}).get("archive", {})
    expected = f"s3://{archive['bucket']}/{archive.get('prefix', 'dataroom-operator/audit')}" if archive.get("bucket") else None
    if env.get("DATAROOM_AUDIT_ARCHIVE") != expected:
        fail(where, f"DATAROOM_AUDIT_ARCHIVE is {env.get('DATAROOM_AUDIT_ARCHIVE')!r}, expected {expected!r}")
    network = values.get("network", {})
    if env.get("DATAROOM_MANAGED_SECURITY_GROUP") != str(network.get("managedSecurityGroup", True)).lower():
        fail(where, "DATAROOM_MANAGED_SECURITY_GROUP does not follow network.managedSecurityGroup")
    if env.get("DATAROOM_ROOM_SERVICES") != str(values.get("dns", {}).get("roomServices", True)).lower():
        fail(where, "DATAROOM_ROOM_SERVICES does not follow dns.roomServices")
    dns = values.get("dns", {})
    if (env.get("DATAROOM_DNS_PROVIDER"), env.get("DATAROOM_DNS_ZONE")) != (dns.get("provider") or None, dns.get("zone") if dns.get("provider") else None):
        fail(where, "DATAROOM_DNS_PROVIDER and DATAROOM_DNS_ZONE do not follow dns.provider and dns.zone")
    cidrs = ",".join(network.get("operatorCidrs", [])) or None
    if env.get("DATAROOM_OPERATOR_CIDRS") != cidrs:
        fail(where, f"DATAROOM_OPERATOR_CIDRS is {env.get('DATAROOM_OPERATOR_CIDRS')!r}, expected {cidrs!r}")


def check_monitoring(name, docs, values):
    """The dashboard ConfigMap is there unless turned off, labelled for Grafana's sidecar, with
    valid JSON; each rate alert is there unless its threshold is null, with that threshold."""
    metrics = values.get("metrics", {})
    dashboard = metrics.get("grafanaDashboard", {})
    maps = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")]
    if len(maps) != (0 if dashboard.get("enabled") is False else 1):
        fail(name, f"{len(maps)} dashboard ConfigMaps")
    for m in maps:
        if m["metadata"]["labels"].get("grafana_dashboard") != "1":
            fail(name, "the dashboard lacks the sidecar's label grafana_dashboard: \"1\"")
        if (m["metadata"].get("annotations") or {}).get("grafana_folder") != dashboard.get("folder", None) and dashboard.get("folder"):
            fail(name, "the dashboard's folder annotation")
        panels = json.loads(m["data"]["dataroom-operator.json"])["panels"]
        if len(panels) < 10:
            fail(name, f"the dashboard has {len(panels)} panels")
    rules = [d for d in docs if d["kind"] == "PrometheusRule"]
    if not metrics.get("prometheusRule", {}).get("enabled"):
        return
    alerts = {r["alert"]: r["expr"] for g in rules[0]["spec"]["groups"] for r in g["rules"]}
    asked = {"launchesPerHour": 0, "execsPerHour": None}
    for alert, key in [("DataroomLaunches", "launchesPerHour"), ("DataroomExecs", "execsPerHour")]:
        if asked[key] is None and alert in alerts:
            fail(name, f"{alert} is there though {key} is null")
        if asked[key] is not None and not alerts.get(alert, "").endswith(f"> {asked[key]}"):
            fail(name, f"{alert} does not alert above {key} {asked[key]}: {alerts.get(alert)}")
    for alert in ("DataroomFileTransfers", "DataroomBudgetRefusals", "DataroomFailedAuthentications"):
        if alert not in alerts:
            fail(name, f"no {alert} alert")


def check_tls(name, docs, values):
    """HTTPS exactly when tls.enabled, from the Secret the values name, with probes and the
    ServiceMonitor speaking it; plain HTTP only with --insecure-http said out loud."""
    tls = values.get("tls", {})
    enabled = tls.get("enabled", True)
    cert_manager = tls.get("certManager", {}).get("enabled", False)
    secret = tls.get("existingSecret") or f"{SERVICE}-tls"
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    pod = by_kind["Deployment"][0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    if ("DATAROOM_TLS_CERT" in env) != enabled or (env.get("DATAROOM_INSECURE_HTTP") == "true") == enabled:
        fail(name, f"TLS env does not match tls.enabled={enabled}: {env}")
    for probe in ("livenessProbe", "readinessProbe"):
        if container[probe]["httpGet"].get("scheme") != ("HTTPS" if enabled else "HTTP"):
            fail(name, f"{probe} does not speak {'HTTPS' if enabled else 'HTTP'}")
    mounted = [v["secret"]["secretName"] for v in pod["volumes"] if v["name"] == "tls"]
    if mounted != ([secret] if enabled else []):
        fail(name, f"the TLS volume is {mounted}, expected {secret if enabled else 'none'}")
    certificates = by_kind.get("Certificate", [])
    if len(certificates) != int(enabled and cert_manager):
        fail(name, f"{len(certificates)} Certificates rendered")
    for certificate in certificates:
        if certificate["spec"]["secretName"] != secret or f"{SERVICE}.dataroom.svc" not in certificate["spec"]["dnsNames"]:
            fail(name, "the Certificate is not for the Service, or writes another Secret")
    generated = [d for d in by_kind.get("Secret", []) if d.get("type") == "kubernetes.io/tls"]
    if len(generated) != int(enabled and not cert_manager and not tls.get("existingSecret")):
        fail(name, f"{len(generated)} generated TLS Secrets")
    for doc in generated:
        check_generated_certificate(name, doc)
    for monitor in by_kind.get("ServiceMonitor", []):
        endpoint = monitor["spec"]["endpoints"][0]
        if (endpoint.get("scheme") == "https") != enabled:
            fail(name, "the ServiceMonitor's scheme does not match tls.enabled")


def check_webhook(name, docs, values):
    """The webhook's URL, actions and secret file exactly when notifications.webhook.url is set."""
    hook = values.get("notifications", {}).get("webhook", {})
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    mounted = [v["secret"]["secretName"] for v in pod["volumes"] if v["name"] == "webhook"]
    if not hook.get("url"):
        if "DATAROOM_WEBHOOK_URL" in env or mounted:
            fail(name, "webhook settings rendered without notifications.webhook.url")
        return
    if env.get("DATAROOM_WEBHOOK_URL") != hook["url"] or mounted != [hook["secretName"]]:
        fail(name, f"the webhook is not wired: {env.get('DATAROOM_WEBHOOK_URL')} {mounted}")
    if env.get("DATAROOM_WEBHOOK_ACTIONS") != ",".join(hook["actions"]):
        fail(name, f"webhook actions {env.get('DATAROOM_WEBHOOK_ACTIONS')}")
    if env.get("DATAROOM_WEBHOOK_SECRET_FILE") != "/etc/dataroom-operator/webhook/secret":
        fail(name, "the secret file is not where the Secret is mounted")


def env_route53(docs):
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    return env.get("DATAROOM_ROUTE53_HOSTED_ZONE_ID")


def check_grants(name, docs, values):
    """The operator may review tokens only when it accepts them, write the budget only when the
    API may, and the user roles come exactly when asked for."""
    admin = values.get("admin", {}).get("enabled", True)
    rules = [r for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"].startswith(SERVICE) for r in d["rules"]]
    granted = lambda resource, verb: any(resource in r["resources"] and verb in r["verbs"] for r in rules)
    identities = admin and values.get("admin", {}).get("kubernetesIdentities", True)
    if granted("tokenreviews", "create") != identities or granted("subjectaccessreviews", "create") != identities:
        fail(name, f"token and access reviews granted {not identities} with kubernetesIdentities={identities}")
    # In the watched namespace's Role with watchNamespace, else in the ClusterRole.
    room_rules = [r for d in docs if d["kind"] in ("Role", "ClusterRole") and d["metadata"]["name"].startswith(SERVICE) for r in d["rules"]]
    in_rooms = lambda resource, verb: any(resource in r["resources"] and verb in r["verbs"] for r in room_rules)
    if env_route53(docs) != (values.get("dns", {}).get("route53HostedZoneId") if values.get("dns", {}).get("provider") == "route53" else None):
        fail(name, "DATAROOM_ROUTE53_HOSTED_ZONE_ID does not follow dns.provider and dns.route53HostedZoneId")
    if in_rooms("dnsendpoints", "patch") != (values.get("dns", {}).get("provider") == "external-dns"):
        fail(name, "DNSEndpoints granted without dns.provider, or not granted with it")
    services = values.get("dns", {}).get("roomServices", True)
    if in_rooms("services", "patch") != services or in_rooms("endpointslices", "patch") != services:
        fail(name, f"Services and EndpointSlices granted {not services} with roomServices={services}")
    writable = admin and values.get("budget", {}).get("writableThroughApi", False)
    if granted("ec2budgets", "update") != writable:
        fail(name, f"budget update granted {not writable} with writableThroughApi={writable}")
    user_roles = {d["metadata"]["name"] for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"].startswith("dataroom-")}
    expected = {"dataroom-viewer", "dataroom-lifecycle", "dataroom-exec", "dataroom-admin"}
    if user_roles != (expected if values.get("rbac", {}).get("userRoles", True) else set()):
        fail(name, f"user roles rendered: {sorted(user_roles)}")


def check_generated_certificate(name, doc):
    """The generated key matches its certificate, which names the Service and chains to ca.crt."""
    import base64, ssl, tempfile
    files = {k: base64.b64decode(v) for k, v in doc["data"].items()}
    with tempfile.TemporaryDirectory() as d:
        for k, v in files.items():
            pathlib.Path(d, k).write_bytes(v)
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(f"{d}/tls.crt", f"{d}/tls.key")
        names = [v for k, v in ssl._ssl._test_decode_cert(f"{d}/tls.crt")["subjectAltName"] if k == "DNS"]
        if f"{SERVICE}.dataroom.svc" not in names:
            fail(name, f"the generated certificate is for {names}, not the Service")
        client = ssl.create_default_context(cafile=f"{d}/ca.crt")
        import socket, threading
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        def serve():
            conn, _ = listener.accept()
            try:
                server.wrap_socket(conn, server_side=True).close()
            except OSError:
                pass
        threading.Thread(target=serve, daemon=True).start()
        try:
            with client.wrap_socket(socket.create_connection(listener.getsockname()), server_hostname=f"{SERVICE}.dataroom.svc"):
                pass
        except ssl.SSLError as e:
            fail(name, f"a client trusting ca.crt refuses the generated certificate: {e}")
        listener.close()


def main():
    chart, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    schemas = crd_schemas(chart)
    loaded = helm.Chart.load(chart)
    for name, values in VALUE_SETS.items():
        lint = helm.lint(chart, values, strict=True, namespace="dataroom", kube_version=f"v{KUBE_VERSION}")
        for m in lint["messages"]:
            if m["severity"] >= 2:
                fail(name, f"helm lint: {m['path']}: {m['error']}")
        rendered = loaded.render(values, name="dr", namespace="dataroom", is_install=True)
        docs, kinds = [], []
        for path, text in sorted(rendered.items()):
            if path.endswith("NOTES.txt"):
                warned = "AUDIT LOG" in text
                if warned != (values.get("persistence", {}).get("enabled") is False):
                    fail(name, "NOTES must warn loudly exactly when the audit log is on an emptyDir")
                continue
            for doc in yaml.safe_load_all(text):
                if not doc:
                    continue
                validate(f"{name} {path}", doc, schemas)
                check_rbac(f"{name} {path}", doc)
                check_pod(f"{name} {path}", doc)
                check_archive(f"{name} {path}", doc, values)
                docs.append(doc)
                kinds.append(doc["kind"])
        for kind in ("Deployment", "ServiceAccount", "Service", "Ec2Budget"):
            if kind not in kinds:
                fail(name, f"no {kind} rendered")
        check_monitoring(name, docs, values)
        check_tls(name, docs, values)
        check_grants(name, docs, values)
        check_webhook(name, docs, values)
        (out / f"{name}.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
        print(f"{name}: {len(docs)} manifests valid ({', '.join(sorted(set(kinds)))})")
    for name, (values, word) in REFUSED.items():
        try:
            loaded.render(values, name="dr", namespace="dataroom", is_install=True)
            fail(name, "rendered, but must be refused")
        except helm.HelmError as e:
            if word not in str(e):
                fail(name, f"refused without naming {word}: {e}")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"value_sets": len(VALUE_SETS), "refused": len(REFUSED)}))


main()
