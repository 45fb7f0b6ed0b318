//! Network facts: MAC addresses and the host's own IP addresses.
//!
//! IPv4 addresses come from `/proc/net/fib_trie` (the kernel's local routing
//! table lists every address as `/32 host LOCAL`), attributed to an interface
//! through `/proc/net/route`; IPv6 addresses from `/proc/net/if_inet6`.
//! Loopback is skipped, and so is IPv6 link-local (`fe80::/10`): it is only
//! meaningful on the link, and when derived from the MAC (EUI-64) it adds
//! nothing to the MAC fact, while privacy-style ones change constantly.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{
    FactKind, Strength,
    source::{Found, MAX_DIR_ENTRIES, Sources, first_line, list_dir, read_text},
};

/// MAC addresses of `/sys/class/net/*/address` (not `lo`, not all-zero).
pub(crate) fn mac_facts(src: &Sources, out: &mut Found) {
    for (iface, dir) in list_dir(&src.path("/sys/class/net")) {
        if iface == "lo" {
            continue;
        }
        let Some(mac) = first_line(&dir.join("address")) else {
            continue;
        };
        let mac = mac.to_ascii_lowercase();
        let hex = mac
            .split(':')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_hexdigit()));
        if hex && mac.bytes().any(|b| b != b'0' && b != b':') {
            out.push(FactKind::Mac, iface, &mac, Strength::Strong);
        }
    }
}

/// The host's IPv4 and IPv6 addresses.
pub(crate) fn ip_facts(src: &Sources, out: &mut Found) {
    let routes = read_text(&src.path("/proc/net/route"))
        .map(|t| parse_routes(&t))
        .unwrap_or_default();
    if let Some(trie) = read_text(&src.path("/proc/net/fib_trie")) {
        for ip in local_ipv4(&trie) {
            let name = iface_of(&routes, ip).unwrap_or("/proc/net/fib_trie");
            out.push(FactKind::Ip, name, &ip.to_string(), Strength::Strong);
        }
    }
    if let Some(text) = read_text(&src.path("/proc/net/if_inet6")) {
        for (ip, iface) in text
            .lines()
            .take(MAX_DIR_ENTRIES * 16)
            .filter_map(inet6_line)
        {
            out.push(FactKind::Ip, iface, &ip.to_string(), Strength::Strong);
        }
    }
}

/// Local IPv4 host addresses of a `fib_trie` dump, outside 127.0.0.0/8, in
/// order of first appearance (the table lists each in several sections).
fn local_ipv4(trie: &str) -> Vec<Ipv4Addr> {
    let mut last: Option<Ipv4Addr> = None;
    let mut out = Vec::new();
    for line in trie.lines().map(str::trim) {
        if let Some(addr) = line.strip_prefix("|-- ") {
            last = addr.trim().parse().ok();
        } else if line.starts_with("/32 host LOCAL")
            && let Some(ip) = last
            && !ip.is_loopback()
            && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    out
}

/// A connected route: interface, destination network, mask.
type Route = (String, u32, u32);

/// Routes of `/proc/net/route` (addresses as the kernel prints them: the
/// network-order bytes as a native-endian hex number).
fn parse_routes(text: &str) -> Vec<Route> {
    let hex = |s: &str| {
        u32::from_str_radix(s, 16)
            .ok()
            .map(|n| u32::from(Ipv4Addr::from(n.to_ne_bytes())))
    };
    text.lines()
        .skip(1)
        .take(MAX_DIR_ENTRIES * 16)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            Some(((*f.first()?).to_owned(), hex(f.get(1)?)?, hex(f.get(7)?)?))
        })
        .collect()
}

/// The interface of the most specific non-default route containing `ip`.
fn iface_of(routes: &[Route], ip: Ipv4Addr) -> Option<&str> {
    let ip = u32::from(ip);
    routes
        .iter()
        .filter(|(_, dest, mask)| *mask != 0 && ip & mask == *dest)
        .max_by_key(|(_, _, mask)| mask.count_ones())
        .map(|(iface, _, _)| iface.as_str())
}

/// One `/proc/net/if_inet6` line (`<32 hex> <idx> <plen> <scope> <flags> <iface>`),
/// unless loopback or link-local.
fn inet6_line(line: &str) -> Option<(Ipv6Addr, &str)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let (hex, iface) = (*f.first()?, *f.get(5)?);
    if hex.len() != 32 {
        return None;
    }
    let ip = Ipv6Addr::from(u128::from_str_radix(hex, 16).ok()?);
    let link_local = ip.segments()[0] & 0xffc0 == 0xfe80;
    (!ip.is_loopback() && !link_local && iface != "lo").then_some((ip, iface))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fib_trie_and_routes() {
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     \
                    +-- 10.20.30.0/24 2 0 2\n        |-- 10.20.30.40\n           /32 host LOCAL\n        \
                    |-- 10.20.30.255\n           /32 link BROADCAST\n     |-- 127.0.0.1\n        /32 host LOCAL\n\
                    Local:\n     |-- 10.20.30.40\n           /32 host LOCAL\n";
        let ips = local_ipv4(trie);
        assert_eq!(ips, [Ipv4Addr::new(10, 20, 30, 40)]);
        // 10.20.30.0/24 on eth0 and the default route via eth0, as printed on
        // this (native-endian) machine.
        let le = |ip: Ipv4Addr| format!("{:08X}", u32::from_ne_bytes(ip.octets()));
        let routes = format!(
            "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
             eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\n\
             eth0\t{}\t00000000\t0001\t0\t0\t0\t{}\n",
            le(Ipv4Addr::new(10, 20, 30, 0)),
            le(Ipv4Addr::new(255, 255, 255, 0))
        );
        let routes = parse_routes(&routes);
        assert_eq!(iface_of(&routes, ips[0]), Some("eth0"));
        assert_eq!(iface_of(&routes, Ipv4Addr::new(192, 168, 9, 9)), None);
    }

    #[test]
    fn if_inet6_lines() {
        let global = inet6_line("20010db8000000000000000000000001 02 40 00 80 eth0");
        assert_eq!(global, Some(("2001:db8::1".parse().expect("ip"), "eth0")));
        assert_eq!(
            inet6_line("00000000000000000000000000000001 01 80 10 80 lo"),
            None
        );
        assert_eq!(
            inet6_line("fe800000000000005054fffe12345678 02 40 20 80 eth0"),
            None
        );
        assert_eq!(inet6_line("garbage"), None);
    }
}
