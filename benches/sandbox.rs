//! Sandbox startup and footprint: time from process start to ready, resident memory idle and
//! with 100 Ec2Instances running, how long those 100 take to be running, and DataRoom boot time
//! (apply → Ready over 20 rooms, with each boot step). Run with `cargo bench --bench sandbox`
//! (needs kubectl on PATH).

// The bench uses part of the test helper.
#[allow(dead_code)]
#[path = "../tests/support/sandbox.rs"]
mod sandbox;

use std::time::{Duration, Instant};

const COUNT: usize = 100;
const ROOMS: usize = 20;

fn main() {
    let sandbox = sandbox::Sandbox::start();
    std::thread::sleep(Duration::from_secs(1));
    let idle = sandbox.rss_mib();
    let mut manifest = String::from(
        "apiVersion: dataroom.dev/v1alpha1\nkind: Ec2Budget\nmetadata:\n  name: default\nspec:\n  maxInstances: 1000\n  dailySpendUsd: 10000\n",
    );
    for n in 0..COUNT {
        manifest.push_str(&format!(
            "---\napiVersion: dataroom.dev/v1alpha1\nkind: Ec2Instance\nmetadata:\n  name: web-{n:03}\nspec:\n  instanceType: t3.micro\n"
        ));
    }
    let file = sandbox.dir.path().join("fleet.yaml");
    std::fs::write(&file, manifest).unwrap();
    let started = Instant::now();
    sandbox.ok(&["apply", "-f", file.to_str().unwrap()]);
    // One list per poll: `kubectl wait --all` would measure kubectl's own client-side throttling.
    loop {
        let states = sandbox.ok(&["get", "ec2", "-o", "jsonpath={.items[*].status.state}"]);
        if states.split_whitespace().filter(|s| *s == "running").count() == COUNT {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "not all running after 300 s: {states}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let converged = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let loaded = sandbox.rss_mib();
    println!("sandbox startup and footprint");
    println!("  process start to /readyz 200:     {:>8.3} s", sandbox.ready_after);
    println!("  resident memory, idle:            {idle:>8.1} MiB");
    println!("  {COUNT} Ec2Instances applied to running: {:>8.2} s", converged.as_secs_f64());
    println!("  resident memory, {COUNT} running:     {loaded:>8.1} MiB");
    type_change(&sandbox);
    rooms(&sandbox);
}

/// `kubectl patch` of one instance's type to `UpToDate=True` with EC2 running the new type,
/// beside its floor, a stop and a start through `kubectl patch` (a type change is a stop, a
/// ModifyInstanceAttribute and a start); the median of five of each, among 100 running.
fn type_change(sandbox: &sandbox::Sandbox) {
    let patch = |spec: &str| {
        sandbox.ok(&["patch", "ec2", "web-000", "--type", "merge", "-p", &format!(r#"{{"spec":{spec}}}"#)]);
    };
    let wait = |condition: &str| {
        sandbox.ok(&["wait", "ec2/web-000", &format!("--for={condition}"), "--timeout=60s"]);
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut restarts = Vec::new();
    let mut changes = Vec::new();
    for (round, instance_type) in
        ["t3.small", "t3.micro", "t3.small", "t3.micro", "t3.small"].iter().enumerate()
    {
        let started = Instant::now();
        patch(r#"{"powerState":"Stopped"}"#);
        wait("jsonpath={.status.state}=stopped");
        patch(r#"{"powerState":"Running"}"#);
        wait("jsonpath={.status.state}=running");
        restarts.push(started.elapsed().as_secs_f64());

        let started = Instant::now();
        patch(&format!(r#"{{"instanceType":"{instance_type}"}}"#));
        wait(&format!("jsonpath={{.status.instanceType}}={instance_type}"));
        wait("jsonpath={.status.state}=running");
        wait("condition=UpToDate");
        changes.push(started.elapsed().as_secs_f64());
        let generation = sandbox.ok(&["get", "ec2", "web-000", "-o", "jsonpath={.metadata.generation}"]);
        assert_eq!(generation.trim(), (3 * round + 4).to_string(), "each patch changed the spec once");
    }
    let (restart, change) = (median(restarts), median(changes));
    println!("  type change of a running instance (median of 5, kubectl patch to UpToDate=True):");
    println!("    stop and start (the floor):      {restart:>6.2} s");
    println!("    type change (stop, modify, start): {change:>4.2} s   ({:.2}× the floor)", change / restart);
}

/// Applies 20 DataRooms at once and reports apply → Ready, and the boot steps the controller
/// recorded in each room's `ready` audit record, as p50 and max.
fn rooms(sandbox: &sandbox::Sandbox) {
    let mut manifest = String::new();
    for n in 0..ROOMS {
        manifest.push_str(&format!(
            "---\napiVersion: dataroom.dev/v1alpha1\nkind: DataRoom\nmetadata:\n  name: room-{n:02}\nspec:\n  config:\n    inline: {{room: {n}}}\n  healthCheck: {{periodSeconds: 1}}\n"
        ));
    }
    let file = sandbox.dir.path().join("rooms.yaml");
    std::fs::write(&file, manifest).unwrap();
    let applied = jiff::Timestamp::now();
    let started = Instant::now();
    sandbox.ok(&["apply", "-f", file.to_str().unwrap()]);
    loop {
        let phases = sandbox.ok(&["get", "dr", "-o", "jsonpath={.items[*].status.phase}"]);
        if phases.split_whitespace().filter(|s| *s == "Ready").count() == ROOMS {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "not all Ready after 300 s: {phases}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let audit = std::fs::read_to_string(sandbox.dir.path().join("audit.jsonl")).unwrap();
    let ready: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["action"] == "ready" && r["target"].as_str().unwrap().starts_with("dataroom/"))
        .collect();
    assert_eq!(ready.len(), ROOMS, "one ready record per room");
    let column = |f: &dyn Fn(&serde_json::Value) -> f64| {
        let mut v: Vec<f64> = ready.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[v.len() - 1])
    };
    let since_apply = column(&|r| {
        let at: jiff::Timestamp = r["time"].as_str().unwrap().parse().unwrap();
        at.duration_since(applied).as_secs_f64()
    });
    let step = |name: &'static str| column(&move |r| r["params"]["steps"][name].as_f64().unwrap());
    println!("  {ROOMS} DataRooms applied at once (p50 / max, seconds):");
    println!("    apply to Ready:                  {:>6.2} / {:>6.2}", since_apply.0, since_apply.1);
    let boot = column(&|r| r["params"]["boot_seconds"].as_f64().unwrap());
    println!("    boot (controller, create→Ready):  {:>6.2} / {:>6.2}", boot.0, boot.1);
    for (label, name) in [
        ("launch until running", "provision_seconds"),
        ("push config over SFTP", "configure_seconds"),
        ("first healthy answer", "health_seconds"),
    ] {
        let (p50, max) = step(name);
        println!("      {label:<30} {p50:>6.2} / {max:>6.2}");
    }
    println!("    all {ROOMS} Ready after:              {:>6.2}", started.elapsed().as_secs_f64());
    fan_out(sandbox);
    upgrades(sandbox);
}

/// A room's type change under each update strategy, three times each, while a client resolves
/// the room's name and asks its health endpoint every 100 ms: `Rolling` against its peer
/// `Recreate` (the old instance stopped first), by time to the new instance serving and by the
/// client's failed answers.
fn upgrades(sandbox: &sandbox::Sandbox) {
    println!(
        "  a room's instance type changed (kubectl patch to Ready on the new instance; a client polling its name every 100 ms):"
    );
    for (room, strategy) in [("room-00", "Rolling"), ("room-01", "Recreate")] {
        let spec = format!(r#"{{"spec":{{"updateStrategy":"{strategy}","drainSeconds":0}}}}"#);
        sandbox.ok(&["patch", "dr", room, "--type", "merge", "-p", &spec]);
        let name = format!("{room}.default.rooms.dataroom.test");
        let (mut times, mut failed, mut polls, mut longest) = (Vec::new(), 0, 0, 0.0f64);
        for instance_type in ["t3.small", "t3.micro", "t3.small"] {
            let old = sandbox.ok(&["get", "dr", room, "-o", "jsonpath={.status.instanceName}"]);
            let new = if old.ends_with(".b") { format!("dr-{room}") } else { format!("dr-{room}.b") };
            let client = sandbox::NamePoller::start(sandbox.dns, &name, 8000);
            std::thread::sleep(Duration::from_millis(300));
            let started = Instant::now();
            let patch = format!(r#"{{"spec":{{"instanceType":"{instance_type}"}}}}"#);
            sandbox.ok(&["patch", "dr", room, "--type", "merge", "-p", &patch]);
            let wait = |what: &str, condition: &str| {
                sandbox.ok(&["wait", what, &format!("--for={condition}"), "--timeout=120s"]);
            };
            wait(&format!("dr/{room}"), &format!("jsonpath={{.status.instanceName}}={new}"));
            wait(&format!("dr/{room}"), "jsonpath={.status.phase}=Ready");
            times.push(started.elapsed().as_secs_f64());
            wait(&format!("ec2/{old}"), "delete");
            wait(&format!("dr/{room}"), "condition=DnsPublished");
            std::thread::sleep(Duration::from_millis(300));
            let seen = client.stop();
            polls += seen.len();
            failed += seen.iter().filter(|p| !p.ok).count();
            longest = longest.max(outage(&seen));
        }
        times.sort_by(f64::total_cmp);
        println!(
            "    {strategy:<9} median {:>5.2} s   failed answers {failed:>3} of {polls:>3}   longest outage {longest:>5.2} s",
            times[1],
        );
    }
}

/// `echo` through the admin API on one room's instance at a time, then on all 20 at once: the
/// fan-out's wall time against a single exec's.
fn fan_out(sandbox: &sandbox::Sandbox) {
    let key = std::fs::read_to_string(sandbox.dir.path().join("admin-key")).unwrap();
    let auth = format!("Authorization: Bearer {}\r\n", key.trim());
    let exec = |n: usize| {
        let started = Instant::now();
        let url = format!("{}/api/ec2/instances/dr-room-{n:02}/exec", sandbox.admin);
        let (status, body) = sandbox::http_post_json(&url, &auth, r#"{"command": "echo fan-out"}"#).unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("fan-out"), "{body}");
        started.elapsed().as_secs_f64() * 1000.0
    };
    let exec = &exec;
    let p50 = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (0..ROOMS).for_each(|n| {
        exec(n);
    });
    let single = p50((0..5).flat_map(|_| (0..ROOMS).map(exec)).collect());
    let rounds: Vec<f64> = (0..10)
        .map(|_| {
            let started = Instant::now();
            std::thread::scope(|s| {
                // Every thread is spawned before any is joined.
                let threads: Vec<_> = (0..ROOMS).map(|n| s.spawn(move || exec(n))).collect();
                for thread in threads {
                    thread.join().unwrap();
                }
            });
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    let fan = p50(rounds);
    println!("  exec fan-out to {ROOMS} instances (p50 over 10 rounds, pooled connections):");
    println!("    one exec:                        {single:>6.2} ms");
    println!(
        "    {ROOMS} at once, wall time:          {fan:>6.2} ms   ({:.1}× one exec; {ROOMS}× if serialised)",
        fan / single
    );
}

/// The longest time between two answered polls with only failed ones between them.
fn outage(polls: &[sandbox::Poll]) -> f64 {
    let answered: Vec<f64> = polls.iter().filter(|p| p.ok).map(|p| p.at).collect();
    let gaps = answered.windows(2).filter(|w| polls.iter().any(|p| !p.ok && p.at > w[0] && p.at < w[1]));
    gaps.map(|w| w[1] - w[0]).fold(0.0, f64::max)
}
