//! Proxy facts: proxy URLs and `no_proxy` domains from the environment, shell
//! profile files and the package and developer tools' configuration.
//!
//! A proxy URL names infrastructure of the host's organisation, so it is a
//! strong fingerprint; its `host:port` and bare host are facts too, because a
//! client may send just those. Parsing is best effort: each format is read
//! line by line for the handful of keys that carry a proxy, without
//! interpreting the rest of the file.

use std::net::IpAddr;

use super::{
    FactKind, Strength,
    source::{Found, Sources, list_dir, parse_assignment, read_text, strip_quotes},
};

/// Environment variables (any case) that carry a proxy URL.
const URL_VARS: &[&str] = &["http_proxy", "https_proxy", "all_proxy", "ftp_proxy"];

/// Proxy host names with a dot that many unrelated hosts share.
const GENERIC_HOSTS: &[&str] = &[
    "host.docker.internal",
    "gateway.docker.internal",
    "host.containers.internal",
];

/// Values that switch a proxy off rather than name one.
const NOT_A_PROXY: &[&str] = &["direct", "false", "none", "off", "no", "null"];

/// Proxy facts of the host; `homes` are the home directories of the users
/// whose tool configuration is read (`~/.npmrc`, `~/.gitconfig`, …).
pub(crate) fn host_facts(src: &Sources, homes: &[String], out: &mut Found) {
    for (var, value) in &src.env {
        env_var(var, var, value, out);
    }
    shell_file(src, "/etc/environment", out);
    for (file, _) in list_dir(&src.path("/etc/profile.d")) {
        if file.ends_with(".sh") {
            shell_file(src, &format!("/etc/profile.d/{file}"), out);
        }
    }
    config(src, "/etc/apt/apt.conf", apt, out);
    for (file, _) in list_dir(&src.path("/etc/apt/apt.conf.d")) {
        config(src, &format!("/etc/apt/apt.conf.d/{file}"), apt, out);
    }
    config(src, "/etc/pip.conf", pip, out);
    config(src, "/etc/xdg/pip/pip.conf", pip, out);
    config(src, "/etc/npmrc", npm, out);
    config(src, "/etc/gitconfig", git, out);
    for home in homes {
        let home = home.trim_end_matches('/');
        config(src, &format!("{home}/.config/pip/pip.conf"), pip, out);
        config(src, &format!("{home}/.pip/pip.conf"), pip, out);
        config(src, &format!("{home}/.npmrc"), npm, out);
        config(src, &format!("{home}/.gitconfig"), git, out);
        config(src, &format!("{home}/.config/git/config"), git, out);
    }
}

/// An environment variable `var` found under `name`: a proxy URL or a
/// `no_proxy` list if the variable (in any case) is one of those.
pub(crate) fn env_var(name: &str, var: &str, value: &str, out: &mut Found) {
    let var = var.to_ascii_lowercase();
    if URL_VARS.contains(&var.as_str()) {
        url_facts(name, value, out);
    } else if var == "no_proxy" {
        no_proxy_facts(name, value, out);
    }
}

/// A parser of one configuration format: (display path, text, facts).
type Parser = fn(&str, &str, &mut Found);

/// Run `parse` on the file at host path `path`, if it is there.
fn config(src: &Sources, path: &str, parse: Parser, out: &mut Found) {
    if let Some(text) = read_text(&src.path(path)) {
        parse(path, &text, out);
    }
}

/// Shell assignments (`/etc/environment`, `export X=...` in profile scripts).
fn shell_file(src: &Sources, path: &str, out: &mut Found) {
    let Some(text) = read_text(&src.path(path)) else {
        return;
    };
    for (var, value) in text.lines().filter_map(parse_assignment) {
        // `$other` or a command substitution is only known when the shell
        // runs; the literal would not be what the environment has.
        if !value.contains(['$', '`']) {
            env_var(&format!("{path} {var}"), var, &value, out);
        }
    }
}

/// apt: `Acquire::http::Proxy "http://proxy:3128/";` (also the `Proxy "...";`
/// line of the nested `Acquire { http { ... } }` form).
fn apt(path: &str, text: &str, out: &mut Found) {
    for line in text.lines().map(str::trim) {
        if line.starts_with("//") || line.starts_with('#') {
            continue;
        }
        let Some((key, rest)) = line.split_once('"') else {
            continue;
        };
        let key = key
            .rsplit([' ', '\t', '{'])
            .find(|k| !k.is_empty())
            .unwrap_or_default();
        let lower = key.to_ascii_lowercase();
        if (lower.ends_with("::proxy") || lower == "proxy")
            && let Some((value, _)) = rest.split_once('"')
        {
            url_facts(&format!("{path} {key}"), value, out);
        }
    }
}

/// pip (INI): `proxy = http://proxy:3128` in any section.
fn pip(path: &str, text: &str, out: &mut Found) {
    for (key, value) in ini_pairs(text) {
        if key.eq_ignore_ascii_case("proxy") {
            url_facts(&format!("{path} proxy"), value, out);
        }
    }
}

/// npm: `proxy=`, `https-proxy=`, `http-proxy=`, `noproxy=`.
fn npm(path: &str, text: &str, out: &mut Found) {
    for (key, value) in ini_pairs(text) {
        if value.contains('$') {
            continue; // `${VAR}`: expanded by npm at run time.
        }
        let name = format!("{path} {key}");
        match key.to_ascii_lowercase().as_str() {
            "proxy" | "https-proxy" | "http-proxy" => url_facts(&name, value, out),
            "noproxy" => no_proxy_facts(&name, value, out),
            _ => {}
        }
    }
}

/// git: `proxy = ...` in an `[http]` or `[http "<url>"]` section.
fn git(path: &str, text: &str, out: &mut Found) {
    let mut in_http = false;
    for line in text.lines().map(str::trim) {
        if let Some(section) = line.strip_prefix('[') {
            let name = section
                .split([' ', '\t', '.', ']', '"'])
                .next()
                .unwrap_or_default();
            in_http = name.eq_ignore_ascii_case("http");
            continue;
        }
        if !in_http {
            continue;
        }
        if let Some((key, value)) = ini_pair(line)
            && key.eq_ignore_ascii_case("proxy")
        {
            url_facts(&format!("{path} http.proxy"), value, out);
        }
    }
}

/// The `key = value` (or `key: value`) pairs of an INI-like file.
fn ini_pairs(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().filter_map(ini_pair)
}

/// One `key = value` or `key: value` line; comments and sections give `None`.
fn ini_pair(line: &str) -> Option<(&str, &str)> {
    let line = line.trim();
    if line.starts_with(['#', ';', '[']) {
        return None;
    }
    let at = line.find(['=', ':'])?;
    let (key, value) = (line.get(..at)?.trim(), line.get(at + 1..)?.trim());
    (!key.is_empty()).then_some((key, value))
}

/// Facts of one proxy URL found under `name`: the URL as configured, without
/// its credentials, its `host:port` and its host.
fn url_facts(name: &str, raw: &str, out: &mut Found) {
    // A URL has no blanks: whatever follows one is a trailing comment.
    let url = strip_quotes(raw)
        .split_whitespace()
        .next()
        .unwrap_or_default();
    if url.is_empty() || NOT_A_PROXY.iter().any(|n| url.eq_ignore_ascii_case(n)) {
        return;
    }
    let Some(p) = ProxyUrl::parse(url) else {
        out.push(FactKind::Proxy, name, url, Strength::Strong);
        return;
    };
    let ip = p.host.parse::<IpAddr>().is_ok();
    let specific =
        p.host.contains('.') && !GENERIC_HOSTS.iter().any(|g| p.host.eq_ignore_ascii_case(g));
    let strength = |strong: bool| {
        if strong {
            Strength::Strong
        } else {
            Strength::Weak
        }
    };
    // A scheme-less value (`squid:3128`) is no more telling than its host:port.
    out.push(
        FactKind::Proxy,
        name,
        url,
        strength(p.scheme.is_some() || p.credentials || specific || ip),
    );
    if p.credentials {
        // Clients that redact credentials still send the rest.
        out.push(
            FactKind::Proxy,
            name,
            &p.without_credentials(),
            Strength::Strong,
        );
    }
    if is_local(p.host) {
        return;
    }
    if let Some(port) = p.port {
        out.push(
            FactKind::Proxy,
            name,
            &format!("{}:{port}", p.host_literal()),
            strength(specific || ip),
        );
    }
    // A bare address is already an IP fact's business if it is the host's;
    // as a proxy it matters only with its port.
    if !ip {
        out.push(FactKind::Proxy, name, p.host, strength(specific));
    }
}

/// The parts of a proxy URL (`[scheme://][user[:pass]@]host[:port][/…]`).
#[derive(Debug, PartialEq, Eq)]
struct ProxyUrl<'a> {
    scheme: Option<&'a str>,
    credentials: bool,
    host: &'a str,
    port: Option<&'a str>,
}

impl<'a> ProxyUrl<'a> {
    /// Split a URL; `None` if the host or port is not plausible.
    fn parse(url: &'a str) -> Option<Self> {
        let (scheme, rest) = match url.split_once("://") {
            Some((s, r)) => (Some(s), r),
            None => (None, url),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (credentials, host_port) = match authority.rsplit_once('@') {
            Some((_, hp)) => (true, hp),
            None => (false, authority),
        };
        let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':'))
        } else {
            match host_port.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (host_port, None),
            }
        };
        let port_ok = port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
        let host_ok = !host.is_empty()
            && (host.parse::<IpAddr>().is_ok()
                || host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_'));
        (port_ok && host_ok).then_some(Self {
            scheme,
            credentials,
            host,
            port,
        })
    }

    /// The host as written in a URL (IPv6 in brackets).
    fn host_literal(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.to_owned()
        }
    }

    /// The URL's scheme and authority without `user:pass@`.
    fn without_credentials(&self) -> String {
        let host_port = match self.port {
            Some(port) => format!("{}:{port}", self.host_literal()),
            None => self.host_literal(),
        };
        match self.scheme {
            Some(scheme) => format!("{scheme}://{host_port}"),
            None => host_port,
        }
    }
}

/// Whether a host is this machine (`localhost`, a loopback or unspecified
/// address): such a proxy is a local agent, not organisation infrastructure.
fn is_local(host: &str) -> bool {
    let lower = host.to_ascii_lowercase();
    lower == "localhost"
        || lower.ends_with(".localhost")
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

/// `no_proxy` entries that are domain names (internal domains of the
/// organisation); addresses, CIDR ranges, wildcards and `localhost` are not.
fn no_proxy_facts(name: &str, list: &str, out: &mut Found) {
    for entry in strip_quotes(list).split([',', ' ', '\t', ';']) {
        if let Some(domain) = no_proxy_domain(entry) {
            out.push(FactKind::NoProxy, name, domain, Strength::Strong);
        }
    }
}

/// The domain of one `no_proxy` entry (`.corp.example`, `*.corp.example`,
/// `host.corp.example:8080` → `corp.example`, …), if it is one.
fn no_proxy_domain(entry: &str) -> Option<&str> {
    let entry = entry.trim();
    let entry = entry
        .strip_prefix("*.")
        .or_else(|| entry.strip_prefix('.'))
        .unwrap_or(entry);
    let host = match entry.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => entry,
    };
    let domain_chars = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    let plausible = domain_chars
        && host.contains('.')
        && host.bytes().any(|b| b.is_ascii_alphabetic())
        && host.parse::<IpAddr>().is_err()
        && !is_local(host);
    plausible.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(f: impl FnOnce(&mut Found)) -> Vec<(FactKind, String, String, Strength)> {
        let mut found = Found::default();
        f(&mut found);
        found
            .finish()
            .into_iter()
            .map(|f| (f.kind, f.name, f.value, f.strength))
            .collect()
    }

    fn values(f: impl FnOnce(&mut Found)) -> Vec<String> {
        facts(f).into_iter().map(|(_, _, v, _)| v).collect()
    }

    #[test]
    fn url_variants() {
        use Strength::*;
        let got = facts(|o| url_facts("https_proxy", "http://proxy.corp.example:3128/", o));
        let want = [
            ("http://proxy.corp.example:3128/", Strong),
            ("proxy.corp.example", Strong),
            ("proxy.corp.example:3128", Strong),
        ];
        let got: Vec<_> = got.iter().map(|(_, _, v, s)| (v.as_str(), *s)).collect();
        let mut want = want.to_vec();
        want.sort();
        assert_eq!(got, want);

        let mut v = values(|o| url_facts("x", "'http://u:p%40ss@10.1.2.3:8080'", o));
        v.sort();
        assert_eq!(
            v,
            [
                "10.1.2.3:8080",
                "http://10.1.2.3:8080",
                "http://u:p%40ss@10.1.2.3:8080"
            ]
        );

        let s = facts(|o| url_facts("x", "squid:3128", o));
        assert!(s.iter().all(|(_, _, _, st)| *st == Weak), "{s:?}");
        assert_eq!(s.len(), 2);

        assert_eq!(
            values(|o| url_facts("x", "http://localhost:3128", o)),
            ["http://localhost:3128"]
        );
        assert_eq!(
            values(|o| url_facts("x", "socks5://[::1]:1080", o)),
            ["socks5://[::1]:1080"]
        );
        let v6 = values(|o| url_facts("x", "http://[2001:db8::1]:3128", o));
        assert!(v6.contains(&"[2001:db8::1]:3128".to_owned()), "{v6:?}");
        assert!(values(|o| url_facts("x", "DIRECT", o)).is_empty());
        assert!(values(|o| url_facts("x", "  ", o)).is_empty());
        // Unparsable: the raw value only.
        assert_eq!(
            values(|o| url_facts("x", "http://bad host", o)),
            ["bad", "http://bad"]
        );
        assert_eq!(
            values(|o| url_facts("x", "http://host:port", o)),
            ["http://host:port"]
        );
    }

    #[test]
    fn no_proxy_entries() {
        let v = values(|o| {
            no_proxy_facts(
                "no_proxy",
                "localhost,127.0.0.1,*, .corp.example ,*.int.example,10.0.0.0/8,[::1],host.lan.example:8080,intranet,192.168.*",
                o,
            )
        });
        assert_eq!(v, ["corp.example", "host.lan.example", "int.example"]);
    }

    #[test]
    fn config_formats() {
        let v = values(|o| {
            apt(
                "/etc/apt/apt.conf.d/95proxy",
                "// Acquire::http::Proxy \"http://commented.example:1\";\n\
                 Acquire::http::Proxy \"http://apt.corp.example:3142\";\n\
                 acquire::https::proxy \"https://apt-s.corp.example:3143/\";\n\
                 Acquire::http::Proxy::mirror.example \"DIRECT\";\n\
                 Acquire { http { Proxy \"http://nested.corp.example:1\"; }; };\n",
                o,
            )
        });
        assert!(
            v.contains(&"http://apt.corp.example:3142".to_owned()),
            "{v:?}"
        );
        assert!(
            v.contains(&"https://apt-s.corp.example:3143/".to_owned()),
            "{v:?}"
        );
        assert!(
            v.contains(&"http://nested.corp.example:1".to_owned()),
            "{v:?}"
        );
        assert!(
            !v.iter()
                .any(|x| x.contains("commented") || x.contains("mirror")),
            "{v:?}"
        );

        let v = values(|o| {
            pip(
                "p",
                "[global]\n; proxy = http://no.example:1\nproxy: http://pip.corp.example:8080\n",
                o,
            )
        });
        assert!(
            v.contains(&"http://pip.corp.example:8080".to_owned())
                && !v.iter().any(|x| x.contains("no.example"))
        );

        let v = values(|o| {
            npm(
                "n",
                "registry=https://r.example/\nhttps-proxy=\"http://npm.corp.example:1\"\nproxy=${P}\nnoproxy=git.corp.example\n",
                o,
            )
        });
        assert!(
            v.contains(&"http://npm.corp.example:1".to_owned())
                && v.contains(&"git.corp.example".to_owned())
        );
        assert!(
            !v.iter().any(|x| x.contains("r.example") || x.contains('$')),
            "{v:?}"
        );

        let v = values(|o| {
            git(
                "g",
                "[core]\n\tproxy = http://core.example:1\n[http \"https://x.example\"]\n\tProxy = http://git.corp.example:3128 # c\n",
                o,
            )
        });
        assert!(
            v.contains(&"http://git.corp.example:3128".to_owned())
                && !v.iter().any(|x| x.contains("core.example"))
        );
    }
}
