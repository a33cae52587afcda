//! `wrk`, the HTTP load generator the benchmarks measure with.

use std::process::Command;

/// Runs `wrk -t2 -c16` for 10 s against `url` with `Authorization: Bearer <bearer>`: (requests per
/// second, p99 in ms).
pub fn wrk(url: &str, bearer: &str) -> (f64, f64) {
    let out = Command::new("wrk")
        .args(["-t2", "-c16", "-d10s", "--latency", "-H", &format!("Authorization: Bearer {bearer}"), url])
        .output()
        .expect("wrk runs (apt-get install -y wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str| {
        let line =
            text.lines().find(|l| l.trim_start().starts_with(prefix)).unwrap_or_else(|| panic!("{text}"));
        line.split_whitespace().nth(1).unwrap().to_string()
    };
    let non_2xx = text.lines().find(|l| l.contains("Non-2xx"));
    assert!(non_2xx.is_none(), "every answer is a success: {text}");
    let rps: f64 = field("Requests/sec:").parse().unwrap();
    let p99 = field("99%");
    let p99 = match (p99.strip_suffix("ms"), p99.strip_suffix("us"), p99.strip_suffix('s')) {
        (Some(ms), _, _) => ms.parse::<f64>().unwrap(),
        (_, Some(us), _) => us.parse::<f64>().unwrap() / 1000.0,
        (_, _, Some(s)) => s.parse::<f64>().unwrap() * 1000.0,
        _ => panic!("wrk latency {p99}"),
    };
    (rps, p99)
}
