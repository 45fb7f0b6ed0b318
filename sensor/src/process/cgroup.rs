//! Containers, told from the cgroup a process belongs to.
//!
//! Container runtimes and Kubernetes name a container's cgroup after it, with the
//! systemd driver (`docker-<id>.scope`) or the cgroupfs driver (`/docker/<id>`).
//! How each runtime names it is data ([`SEGMENT_RULES`], [`PARENT_RULES`]); the
//! innermost match wins, so a container nested in another is reported as itself.

use super::Container;

/// How an identifier inside a cgroup name is checked.
#[derive(Debug, Clone, Copy)]
enum IdKind {
    /// A full container id: 64 lower-case hex digits.
    Hex64,
    /// A machine or container name (LXC, systemd-nspawn).
    Name,
}

/// A cgroup named `<prefix><id><suffix>` is a container of `runtime`. The suffix
/// may be missing (the cgroupfs drivers of CRI-O and podman leave it off).
#[derive(Debug)]
struct SegmentRule {
    prefix: &'static str,
    suffix: &'static str,
    runtime: &'static str,
    id: IdKind,
}

/// Container cgroups named after their container, with systemd units or not.
const SEGMENT_RULES: &[SegmentRule] = &[
    SegmentRule {
        prefix: "docker-",
        suffix: ".scope",
        runtime: "docker",
        id: IdKind::Hex64,
    },
    SegmentRule {
        prefix: "cri-containerd-",
        suffix: ".scope",
        runtime: "containerd",
        id: IdKind::Hex64,
    },
    SegmentRule {
        prefix: "nerdctl-",
        suffix: ".scope",
        runtime: "containerd",
        id: IdKind::Hex64,
    },
    // `crio-conmon-<id>.scope` holds CRI-O's monitor, not the container: its id
    // does not check as hex.
    SegmentRule {
        prefix: "crio-",
        suffix: ".scope",
        runtime: "cri-o",
        id: IdKind::Hex64,
    },
    // Likewise `libpod-conmon-<id>.scope`.
    SegmentRule {
        prefix: "libpod-",
        suffix: ".scope",
        runtime: "podman",
        id: IdKind::Hex64,
    },
    // `lxc.monitor.<name>` holds LXC's monitor, not the container.
    SegmentRule {
        prefix: "lxc.payload.",
        suffix: "",
        runtime: "lxc",
        id: IdKind::Name,
    },
    SegmentRule {
        prefix: "systemd-nspawn@",
        suffix: ".service",
        runtime: "systemd-nspawn",
        id: IdKind::Name,
    },
];

/// A cgroup that is a child of `parent` and whose whole name is an id is a
/// container of `runtime` (cgroupfs drivers).
#[derive(Debug)]
struct ParentRule {
    parent: &'static str,
    runtime: &'static str,
    id: IdKind,
}

/// Container cgroups named after their container under a runtime's own cgroup.
const PARENT_RULES: &[ParentRule] = &[
    ParentRule {
        parent: "docker",
        runtime: "docker",
        id: IdKind::Hex64,
    },
    ParentRule {
        parent: "lxc",
        runtime: "lxc",
        id: IdKind::Name,
    },
];

/// Runtime reported for a Kubernetes container whose cgroup (cgroupfs driver:
/// `/kubepods/<qos>/pod<uid>/<id>`) does not say which runtime runs it.
const KUBERNETES: &str = "kubernetes";

/// The cgroup path a process belongs to, from the text of `/proc/PID/cgroup`:
/// the cgroup v2 path (the `0::` line), else the first line's path (cgroup v1).
pub(super) fn cgroup_path(text: &str) -> Option<String> {
    let paths: Vec<&str> = text
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .collect();
    // On hybrid v1/v2 hosts a runtime may place the process in v1 hierarchies
    // only, leaving the unified line at "/": the line that names a container wins.
    if let Some(p) = paths.iter().find(|p| container_from_cgroup(p).is_some()) {
        return Some((*p).to_owned());
    }
    if let Some(v2) = text.lines().find_map(|l| l.strip_prefix("0::")) {
        return Some(v2.to_owned());
    }
    paths.first().map(|p| (*p).to_owned())
}

/// The container a cgroup path belongs to, if any: Docker, containerd, CRI-O,
/// podman (systemd and cgroupfs drivers), Kubernetes pods (with the pod's UID),
/// LXC and systemd-nspawn.
pub fn container_from_cgroup(path: &str) -> Option<Container> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let in_kubernetes = segments.iter().any(|s| s.starts_with("kubepods"));
    for (i, segment) in segments.iter().enumerate().rev() {
        let parent = i.checked_sub(1).and_then(|p| segments.get(p)).copied();
        let Some((runtime, id)) = match_segment(segment, parent, in_kubernetes) else {
            continue;
        };
        let pod_uid = if in_kubernetes {
            segments[..i].iter().rev().find_map(|s| pod_uid(s))
        } else {
            None
        };
        return Some(Container {
            runtime,
            id,
            pod_uid,
        });
    }
    None
}

/// The runtime and id one cgroup names, if it is a container's.
fn match_segment(
    segment: &str,
    parent: Option<&str>,
    in_kubernetes: bool,
) -> Option<(&'static str, String)> {
    for rule in SEGMENT_RULES {
        let Some(rest) = segment.strip_prefix(rule.prefix) else {
            continue;
        };
        let id = rest.strip_suffix(rule.suffix).unwrap_or(rest);
        if let Some(id) = check_id(id, rule.id) {
            return Some((rule.runtime, id));
        }
    }
    let parent = parent?;
    for rule in PARENT_RULES {
        if parent == rule.parent
            && let Some(id) = check_id(segment, rule.id)
        {
            return Some((rule.runtime, id));
        }
    }
    if in_kubernetes && pod_uid(parent).is_some() {
        return check_id(segment, IdKind::Hex64).map(|id| (KUBERNETES, id));
    }
    None
}

/// The id, if it checks as `kind`; systemd's `\x2d` escapes are undone in names.
fn check_id(id: &str, kind: IdKind) -> Option<String> {
    match kind {
        IdKind::Hex64 => (id.len() == 64
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| id.to_owned()),
        IdKind::Name => {
            let name = unescape_unit_name(id);
            (!name.is_empty() && !name.chars().any(char::is_whitespace)).then_some(name)
        }
    }
}

/// Undoes systemd's unit name escaping (`my\x2dbox` → `my-box`).
fn unescape_unit_name(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("\\x") {
        out.push_str(&rest[..i]);
        let escaped = rest
            .get(i + 2..i + 4)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .filter(u8::is_ascii);
        match escaped {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[i + 4..];
            }
            None => {
                out.push_str("\\x");
                rest = &rest[i + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The Kubernetes pod UID a cgroup names, with dashes: systemd driver
/// `kubepods-<qos>-pod<uid with _>.slice`, cgroupfs driver `pod<uid>`.
fn pod_uid(segment: &str) -> Option<String> {
    let uid = if segment.starts_with("kubepods") {
        let slice = segment.strip_suffix(".slice")?;
        let at = slice.rfind("-pod")?;
        &slice[at + "-pod".len()..]
    } else {
        segment.strip_prefix("pod")?
    };
    let uid = uid.replace('_', "-");
    // UIDs are UUIDs; static pods have a 32-digit hash instead.
    ((32..=36).contains(&uid.len()) && uid.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
        .then(|| uid.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4b2a1c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a";
    const ID2: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const POD: &str = "1b2c3d4e-5f60-4718-9a0b-c1d2e3f40516";

    fn container(path: &str) -> Option<(&'static str, String, Option<String>)> {
        container_from_cgroup(path).map(|c| (c.runtime, c.id, c.pod_uid))
    }

    fn found(
        runtime: &'static str,
        id: &str,
        pod: Option<&str>,
    ) -> Option<(&'static str, String, Option<String>)> {
        Some((runtime, id.to_owned(), pod.map(str::to_owned)))
    }

    #[test]
    fn docker() {
        assert_eq!(
            container(&format!("/system.slice/docker-{ID}.scope")),
            found("docker", ID, None)
        );
        assert_eq!(
            container(&format!("/docker/{ID}")),
            found("docker", ID, None)
        );
        // Rootless, and docker in docker: the innermost container.
        assert_eq!(
            container(&format!(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/docker-{ID}.scope"
            )),
            found("docker", ID, None)
        );
        assert_eq!(
            container(&format!("/docker/{ID}/docker/{ID2}")),
            found("docker", ID2, None)
        );
    }

    #[test]
    fn kubernetes_with_containerd_and_the_systemd_driver() {
        let pod = POD.replace('-', "_");
        assert_eq!(
            container(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{pod}.slice/cri-containerd-{ID}.scope"
            )),
            found("containerd", ID, Some(POD))
        );
        // Guaranteed QoS pods sit right under kubepods.slice.
        assert_eq!(
            container(&format!(
                "/kubepods.slice/kubepods-pod{pod}.slice/cri-containerd-{ID}.scope"
            )),
            found("containerd", ID, Some(POD))
        );
    }

    #[test]
    fn kubernetes_with_the_cgroupfs_driver() {
        assert_eq!(
            container(&format!("/kubepods/burstable/pod{POD}/{ID}")),
            found("kubernetes", ID, Some(POD))
        );
        assert_eq!(
            container(&format!("/kubepods/pod{POD}/{ID}")),
            found("kubernetes", ID, Some(POD))
        );
        assert_eq!(
            container(&format!("/kubepods/besteffort/pod{POD}/crio-{ID}")),
            found("cri-o", ID, Some(POD))
        );
        // The pod's own cgroup is no container.
        assert_eq!(container(&format!("/kubepods/burstable/pod{POD}")), None);
    }

    #[test]
    fn cri_o() {
        assert_eq!(
            container(&format!("/machine.slice/crio-{ID}.scope")),
            found("cri-o", ID, None)
        );
        let pod = POD.replace('-', "_");
        assert_eq!(
            container(&format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{pod}.slice/crio-{ID}.scope"
            )),
            found("cri-o", ID, Some(POD))
        );
        // The monitor is not the container.
        assert_eq!(
            container(&format!("/machine.slice/crio-conmon-{ID}.scope")),
            None
        );
    }

    #[test]
    fn podman() {
        assert_eq!(
            container(&format!("/libpod-{ID}.scope")),
            found("podman", ID, None)
        );
        assert_eq!(
            container(&format!("/machine.slice/libpod-{ID}.scope")),
            found("podman", ID, None)
        );
        // Podman 4 puts the payload in a child cgroup of the scope.
        assert_eq!(
            container(&format!("/machine.slice/libpod-{ID}.scope/container")),
            found("podman", ID, None)
        );
        assert_eq!(
            container(&format!("/libpod_parent/libpod-{ID}")),
            found("podman", ID, None)
        );
        assert_eq!(
            container(&format!("/machine.slice/libpod-conmon-{ID}.scope")),
            None
        );
    }

    #[test]
    fn lxc() {
        assert_eq!(container("/lxc.payload.web1"), found("lxc", "web1", None));
        assert_eq!(
            container("/lxc.payload.web1/system.slice/nginx.service"),
            found("lxc", "web1", None)
        );
        assert_eq!(container("/lxc/web1"), found("lxc", "web1", None));
        assert_eq!(container("/lxc.monitor.web1"), None);
    }

    #[test]
    fn systemd_nspawn() {
        assert_eq!(
            container("/machine.slice/systemd-nspawn@debian.service"),
            found("systemd-nspawn", "debian", None)
        );
        assert_eq!(
            container("/machine.slice/systemd-nspawn@my\\x2dbox.service/payload/system.slice"),
            found("systemd-nspawn", "my-box", None)
        );
    }

    #[test]
    fn hosts_processes_are_in_no_container() {
        for path in [
            "/user.slice/user-1000.slice/session-2.scope",
            "/system.slice/nginx.service",
            "/system.slice/docker.service",
            "/system.slice/containerd.service",
            "/machine.slice/machine-qemu\\x2d1\\x2dvm.scope",
            "/",
            "",
            &format!("/system.slice/docker-{}.scope", &ID[..12]),
            &format!("/system.slice/docker-{}.scope", ID.to_uppercase()),
            &format!("/other/{ID}"),
        ] {
            assert_eq!(container(path), None, "{path}");
        }
    }

    #[test]
    fn pod_uids() {
        assert_eq!(
            pod_uid("kubepods-burstable-pod1b2c3d4e_5f60_4718_9a0b_c1d2e3f40516.slice").as_deref(),
            Some(POD)
        );
        assert_eq!(pod_uid(&format!("pod{POD}")).as_deref(), Some(POD));
        // Static pods: a hash for a UID.
        assert_eq!(
            pod_uid("pod0123456789abcdef0123456789abcdef").as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(pod_uid("kubepods-burstable.slice"), None);
        assert_eq!(pod_uid("podman"), None);
    }

    #[test]
    fn cgroup_file_lines() {
        assert_eq!(
            cgroup_path("0::/user.slice/user-1000.slice/session-2.scope\n").as_deref(),
            Some("/user.slice/user-1000.slice/session-2.scope")
        );
        let v1 = format!("12:cpuset:/docker/{ID}\n11:memory:/docker/{ID}\n");
        assert_eq!(cgroup_path(&v1), Some(format!("/docker/{ID}")));
        // Hybrid hierarchies: the unified one is preferred…
        let hybrid = "12:cpuset:/\n1:name=systemd:/init.scope\n0::/init.scope\n";
        assert_eq!(cgroup_path(hybrid).as_deref(), Some("/init.scope"));
        // …unless another hierarchy names a container and the unified one does not.
        let v1_container = format!("8:pids:/docker/{ID}\n4:memory:/\n0::/\n");
        assert_eq!(cgroup_path(&v1_container), Some(format!("/docker/{ID}")));
        // Paths may contain colons.
        assert_eq!(cgroup_path("0::/a:b\n").as_deref(), Some("/a:b"));
        assert_eq!(cgroup_path(""), None);
        assert_eq!(cgroup_path("garbage\n"), None);
    }
}
