//! The metrics and health endpoint: Prometheus text exposition of every counter
//! `sensor.status` carries (`GET /metrics`), and a health check (`GET /healthz`:
//! 200 when probes are attached and every sink delivers, 503 with the reason
//! otherwise). Plain HTTP/1.1 on an address the operator chooses (loopback by
//! default); each request is answered and the connection closed.

use std::fmt::Write as _;

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// Renders a `sensor.status` body as Prometheus metrics: every number becomes a
/// gauge named by its path (`telltale_kernel_lost_records`); arrays of objects
/// with a `name` (sinks) and maps of counters (alerts by rule) become labels.
pub fn render(status: &Value) -> String {
    let mut out = String::new();
    walk("telltale", status, &[], &mut out);
    out
}

fn walk(prefix: &str, v: &Value, labels: &[(String, String)], out: &mut String) {
    match v {
        Value::Number(n) => {
            let _ = write!(out, "{prefix}");
            if !labels.is_empty() {
                out.push('{');
                for (i, (k, val)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape(val));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {n}");
        }
        Value::Bool(b) => walk(prefix, &Value::from(u8::from(*b)), labels, out),
        Value::Object(m) => {
            for (k, child) in m {
                if let Some(label) = map_label(prefix) {
                    // A map of counters keyed by a name: the key is a label.
                    let mut l = labels.to_vec();
                    l.push((label.into(), k.clone()));
                    walk(prefix, child, &l, out);
                } else {
                    walk(&format!("{prefix}_{}", sanitize(k)), child, labels, out);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                let name = item.get("name").and_then(Value::as_str).unwrap_or("");
                let mut l = labels.to_vec();
                l.push(("name".into(), name.to_owned()));
                if let Value::Object(m) = item {
                    for (k, child) in m {
                        if k != "name" {
                            walk(&format!("{prefix}_{}", sanitize(k)), child, &l, out);
                        }
                    }
                }
            }
        }
        Value::String(_) | Value::Null => {}
    }
}

/// Objects whose keys are data (rule ids), not field names.
fn map_label(prefix: &str) -> Option<&'static str> {
    prefix.ends_with("_alerts_by_rule").then_some("rule")
}

fn sanitize(k: &str) -> String {
    k.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Why the sensor is not healthy, if it is not.
pub fn unhealthy(status: &Value) -> Option<String> {
    if status["targets"]["attached"].as_u64() == Some(0) {
        return Some("no TLS library is hooked".into());
    }
    let failing: Vec<String> = status["sinks"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter(|x| x["healthy"] == false && x["failures"].as_u64().unwrap_or(0) > 0)
                .map(|x| {
                    format!(
                        "sink {} failing: {}",
                        x["name"].as_str().unwrap_or("?"),
                        x["last_error"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    (!failing.is_empty()).then(|| failing.join("; "))
}

/// Answers one connection with the current status.
pub async fn serve(mut conn: TcpStream, status: Value) {
    let mut buf = [0u8; 2048];
    let n = match tokio::time::timeout(std::time::Duration::from_secs(2), conn.read(&mut buf)).await
    {
        Ok(Ok(n)) => n,
        _ => return,
    };
    let request = String::from_utf8_lossy(&buf[..n]);
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (code, reason, body, ctype) = match path {
        "/metrics" => (200, "OK", render(&status), "text/plain; version=0.0.4"),
        "/healthz" => match unhealthy(&status) {
            None => (200, "OK", "ok\n".to_owned(), "text/plain"),
            Some(why) => (503, "Service Unavailable", format!("{why}\n"), "text/plain"),
        },
        _ => (
            404,
            "Not Found",
            "try /metrics or /healthz\n".into(),
            "text/plain",
        ),
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        conn.write_all(head.as_bytes()).await?;
        conn.write_all(body.as_bytes()).await?;
        conn.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_become_gauges_and_names_become_labels() {
        let s = serde_json::json!({
            "uptime_ms": 5,
            "kernel": {"lost_records": 2},
            "sinks": [{"name": "siem", "delivered": 7, "healthy": true, "last_error": null}],
            "detect": {"alerts_by_rule": {"TT-FP-001": 3}},
            "state": "running"
        });
        let m = render(&s);
        assert!(m.contains("telltale_uptime_ms 5\n"), "{m}");
        assert!(m.contains("telltale_kernel_lost_records 2\n"));
        assert!(m.contains("telltale_sinks_delivered{name=\"siem\"} 7\n"));
        assert!(m.contains("telltale_sinks_healthy{name=\"siem\"} 1\n"));
        assert!(m.contains("telltale_detect_alerts_by_rule{rule=\"TT-FP-001\"} 3\n"));
        assert!(!m.contains("state"));
    }

    #[test]
    fn health_names_what_is_wrong() {
        let ok = serde_json::json!({"targets": {"attached": 2}, "sinks": [{"name": "a", "healthy": true, "failures": 0}]});
        assert_eq!(unhealthy(&ok), None);
        let bad = serde_json::json!({"targets": {"attached": 2}, "sinks": [{"name": "a", "healthy": false, "failures": 3, "last_error": "refused"}]});
        assert_eq!(unhealthy(&bad).as_deref(), Some("sink a failing: refused"));
        let none = serde_json::json!({"targets": {"attached": 0}, "sinks": []});
        assert!(unhealthy(&none).unwrap().contains("no TLS"));
    }
}
