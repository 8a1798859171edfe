//! Which container a cgroup v2 path belongs to, read from the names the
//! container runtimes and the kubelet give their cgroups.
//!
//! The kernel knows no containers, only cgroups; the runtimes name a
//! container's cgroup after its id, each in its own way:
//!
//! | who | systemd cgroup driver | cgroupfs driver |
//! |---|---|---|
//! | Docker | `/system.slice/docker-<id>.scope` | `/docker/<id>` |
//! | containerd (nerdctl) | `/system.slice/nerdctl-<id>.scope` | `/default/<id>` |
//! | Kubernetes (any runtime) | `/kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid>.slice/<runtime>-<id>.scope` | `/kubepods/<qos>/pod<uid>/<id>` |
//! | CRI-O | `…/crio-<id>.scope` | `…/crio-<id>` |
//! | Podman | `/machine.slice/libpod-<id>.scope`, quadlet `…/<unit>.service/libpod-payload-<id>` | `/libpod_parent/libpod-<id>` |
//! | systemd-nspawn | `/machine.slice/systemd-nspawn@<name>.service/payload`, `machine-<name>.scope/payload` | |
//! | LXC, Incus | `/lxc.payload.<name>` | |
//!
//! Guaranteed pods have no QoS level (`kubepods-pod<uid>.slice`,
//! `/kubepods/pod<uid>`); the systemd driver writes the pod UID with
//! underscores, and a kubelet started with `--cgroup-root` adds its own
//! prefix (kind: `/kubelet.slice/kubelet-kubepods.slice/…`). Rootless
//! runtimes put the same names under
//! `/user.slice/user-<uid>.slice/user@<uid>.service/…`.
//!
//! Processes can sit below a container's own cgroup (systemd inside the
//! container: `…/docker-<id>.scope/init.scope`; crun's
//! `…/libpod-<id>.scope/container`; nspawn's `payload/system.slice/…`).
//! So the path is read from its deepest part upwards, and the deepest
//! container wins: for kind (Kubernetes in a Docker container) that is the
//! pod's container, not the node's.
//!
//! Not containers, by decision: the monitors beside them (CRI-O's
//! `crio-conmon-<id>.scope`, Podman's `libpod-conmon-<id>.scope` and a
//! quadlet's `runtime` cgroup, nspawn's `supervisor`, LXC's
//! `lxc.monitor.<name>`) run in the host's namespaces and own no socket of
//! the container's; `podman-<pid>.scope` is rootless Podman's own process;
//! libvirt's `machine-qemu\x2d<n>\x2d<name>.scope` is a virtual machine.
//! Docker, containerd, CRI-O and Podman ids are 64 hex digits: anything
//! else after their prefix is no container (`docker-compose@app.service`).

use super::unescape;

/// The software that made a container's cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    Docker,
    /// containerd: Kubernetes' `cri-containerd-` scopes and nerdctl's.
    Containerd,
    CriO,
    Podman,
    /// A machine of systemd-nspawn, named as machinectl names it.
    Nspawn,
    /// LXC and Incus (and LXD) containers, by name.
    Lxc,
    /// A Kubernetes pod's container whose runtime the path does not name:
    /// the cgroupfs driver gives containerd and Docker the same layout.
    Kubernetes,
}

impl Runtime {
    const ALL: [Runtime; 7] = [
        Runtime::Docker,
        Runtime::Containerd,
        Runtime::CriO,
        Runtime::Podman,
        Runtime::Nspawn,
        Runtime::Lxc,
        Runtime::Kubernetes,
    ];

    /// The runtime [`Runtime::as_str`] names (`container_runtime` in JSON).
    pub fn from_name(name: &str) -> Option<Runtime> {
        Runtime::ALL.into_iter().find(|r| r.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Podman => "podman",
            Runtime::Nspawn => "nspawn",
            Runtime::Lxc => "lxc",
            Runtime::Kubernetes => "kubernetes",
        }
    }
}

/// How much of a container id people are shown: as much as `docker ps`
/// and `crictl ps` print.
pub const SHORT_ID: usize = 12;

/// `id`'s first [`SHORT_ID`] bytes, cut back to a character boundary
/// (nspawn and LXC names need not be ASCII).
pub fn short_id(id: &str) -> &str {
    let cut = (0..=SHORT_ID.min(id.len())).rev().find(|&i| id.is_char_boundary(i)).unwrap_or(0);
    &id[..cut]
}

/// A container, as its cgroup names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Container {
    pub runtime: Runtime,
    /// The id the runtime's own tools take (`docker inspect`, `crictl
    /// inspect`, `podman inspect`), or the machine's or container's name
    /// for nspawn and LXC.
    pub id: String,
    /// The Kubernetes pod's UID, dashed as the API writes it (a static
    /// pod's is 32 hex digits). Only Kubernetes pods: a Podman pod's id
    /// is not in its containers' paths.
    pub pod_uid: Option<String>,
}

/// The container whose cgroup `path` (relative to the cgroup2 root, as in
/// `/proc/PID/cgroup`) is or is below, if any.
pub fn container_of(path: &str) -> Option<Container> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    (0..parts.len()).rev().find_map(|at| {
        let (runtime, id) = container_at(&parts, at)?;
        let pod_uid = (0..at).rev().find_map(|p| pod_at(&parts, p));
        Some(Container { runtime, id, pod_uid })
    })
}

/// Prefixes of the cgroups runtimes name `<prefix><64 hex id>`, with or
/// without `.scope` (the systemd driver adds it, the cgroupfs one not).
/// A monitor's name (`crio-conmon-<id>`, `libpod-conmon-<id>`) has no hex
/// id after the prefix, so it is no container.
const PREFIXED: [(&str, Runtime); 6] = [
    ("docker-", Runtime::Docker),
    ("cri-containerd-", Runtime::Containerd),
    ("nerdctl-", Runtime::Containerd),
    ("crio-", Runtime::CriO),
    // `podman run --cgroups=split` (quadlet's default): a container below its service.
    ("libpod-payload-", Runtime::Podman),
    ("libpod-", Runtime::Podman),
];

/// The container whose own cgroup is `parts[at]`.
fn container_at(parts: &[&str], at: usize) -> Option<(Runtime, String)> {
    let part = parts[at];
    let parent = at.checked_sub(1).map(|p| parts[p]);
    let child = parts.get(at + 1).copied();
    let unit = part.strip_suffix(".scope").unwrap_or(part);
    if let Some((id, runtime)) =
        PREFIXED.iter().find_map(|(prefix, runtime)| Some((unit.strip_prefix(prefix)?, *runtime)))
    {
        return is_full_id(id).then(|| (runtime, id.to_string()));
    }
    if is_full_id(part) {
        let runtime = match parent? {
            "docker" => Runtime::Docker,
            // containerd's namespace for ctr and nerdctl, cgroupfs driver.
            "default" => Runtime::Containerd,
            _ if pod_at(parts, at - 1).is_some() => Runtime::Kubernetes,
            _ => return None,
        };
        return Some((runtime, part.to_string()));
    }
    if let Some(name) = part.strip_prefix("lxc.payload.").filter(|n| !n.is_empty()) {
        return Some((Runtime::Lxc, name.to_string()));
    }
    // nspawn moves its payload (and itself, to `supervisor`) below the
    // unit, which is what tells it from other machines machined registers.
    if child == Some("payload") {
        let name = part
            .strip_prefix("systemd-nspawn@")
            .and_then(|p| p.strip_suffix(".service"))
            .or_else(|| part.strip_prefix("machine-").and_then(|p| p.strip_suffix(".scope")))?;
        // machinectl shows `my-box` where the unit says `my\x2dbox`.
        return Some((Runtime::Nspawn, unescape(name, "\\x", 2, 16)));
    }
    None
}

/// The pod UID if `parts[at]` is a Kubernetes pod's cgroup: a slice
/// `…kubepods…-pod<uid>.slice` (systemd driver), or `pod<uid>` below a
/// `kubepods` directory (cgroupfs driver).
fn pod_at(parts: &[&str], at: usize) -> Option<String> {
    let part = parts[at];
    let raw = match part.strip_suffix(".slice") {
        Some(slice) => slice.rsplit_once("-pod").filter(|(qos, _)| qos.contains("kubepods"))?.1,
        None => part.strip_prefix("pod").filter(|_| parts[..at].contains(&"kubepods"))?,
    };
    pod_uid(raw)
}

/// A pod UID in the API's form: the systemd driver's underscores
/// (systemd takes dashes for nesting) back to dashes. A static pod's UID
/// is the kubelet's 32-hex-digit hash of its manifest.
fn pod_uid(raw: &str) -> Option<String> {
    let uid = raw.replace('_', "-");
    let dashed = uid.len() == 36
        && uid.char_indices().all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { c == '-' } else { is_hex(c) });
    let hashed = uid.len() == 32 && uid.chars().all(is_hex);
    (dashed || hashed).then_some(uid)
}

/// A full Docker, containerd, CRI-O or Podman id: 64 lowercase hex digits.
fn is_full_id(s: &str) -> bool {
    s.len() == 64 && s.chars().all(is_hex)
}

fn is_hex(c: char) -> bool {
    c.is_ascii_digit() || ('a'..='f').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_are_twelve_bytes_cut_at_a_character() {
        assert_eq!(short_id(&"0123456789abcdef".repeat(4)), "0123456789ab");
        assert_eq!(short_id("web"), "web");
        assert_eq!(short_id("aéééééé"), "aééééé");
    }

    const ID: &str = "9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d";
    const NODE: &str = "4f797c539e6c745de61a93ca3ff892358ecbcaccd8414d5db545c38428142970";
    const UID: &str = "73dc8baf-43a0-413e-aac2-5eb0868f6c1a";
    const UID_SYSTEMD: &str = "73dc8baf_43a0_413e_aac2_5eb0868f6c1a";
    const STATIC_UID: &str = "b53dfa9e2dc9b890f7fadb2770857b03";
    const USER: &str = "/user.slice/user-1000.slice/user@1000.service";

    fn row(runtime: Runtime, id: &str, pod: Option<&str>) -> Option<Container> {
        Some(Container { runtime, id: id.to_string(), pod_uid: pod.map(str::to_string) })
    }

    /// Real layouts, in the forms the runtimes' and the kubelet's sources,
    /// their issue threads and other tracers' test tables show them (see
    /// the module documentation); the ids are placeholders of the right
    /// shape.
    #[test]
    fn real_world_paths() {
        use Runtime::*;
        let burstable = format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_SYSTEMD}.slice");
        let besteffort =
            format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_SYSTEMD}.slice");
        let guaranteed = format!("/kubepods.slice/kubepods-pod{UID_SYSTEMD}.slice");
        let kind = format!(
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/\
             kubelet-kubepods-besteffort-pod{UID_SYSTEMD}.slice/cri-containerd-{ID}.scope"
        );
        let table: Vec<(String, Option<Container>)> = vec![
            // Docker: systemd driver, cgroupfs driver, systemd inside, rootless nerdctl.
            (format!("/system.slice/docker-{ID}.scope"), row(Docker, ID, None)),
            (format!("/docker/{ID}"), row(Docker, ID, None)),
            (format!("/system.slice/docker-{ID}.scope/init.scope"), row(Docker, ID, None)),
            (format!("/docker/{ID}/system.slice/nginx.service"), row(Docker, ID, None)),
            (format!("/system.slice/nerdctl-{ID}.scope"), row(Containerd, ID, None)),
            (format!("{USER}/user.slice/nerdctl-{ID}.scope"), row(Containerd, ID, None)),
            (format!("/default/{ID}/init.scope"), row(Containerd, ID, None)),
            // Kubernetes, systemd driver: each QoS level, each runtime.
            (format!("{burstable}/cri-containerd-{ID}.scope"), row(Containerd, ID, Some(UID))),
            (format!("{besteffort}/cri-containerd-{ID}.scope"), row(Containerd, ID, Some(UID))),
            (format!("{guaranteed}/cri-containerd-{ID}.scope"), row(Containerd, ID, Some(UID))),
            (format!("{burstable}/crio-{ID}.scope"), row(CriO, ID, Some(UID))),
            (format!("{guaranteed}/crio-{ID}.scope/container"), row(CriO, ID, Some(UID))),
            // CRI-O's pod sandbox (no infra container): the sandbox id, which crictl inspectp takes.
            (format!("{burstable}/crio-{NODE}"), row(CriO, NODE, Some(UID))),
            (format!("{burstable}/crio-conmon-{ID}.scope"), None),
            (format!("{besteffort}/docker-{ID}.scope"), row(Docker, ID, Some(UID))), // cri-dockerd
            (burstable.clone(), None),
            ("/kubepods.slice/kubepods-burstable.slice".to_string(), None),
            // Kubernetes, cgroupfs driver; a static pod; kind, also as seen from the host.
            (format!("/kubepods/burstable/pod{UID}/{ID}"), row(Kubernetes, ID, Some(UID))),
            (format!("/kubepods/pod{UID}/{ID}"), row(Kubernetes, ID, Some(UID))),
            (format!("/kubepods/pod{STATIC_UID}/crio-{ID}"), row(CriO, ID, Some(STATIC_UID))),
            (format!("/kubepods/besteffort/pod{UID}"), None),
            (kind.clone(), row(Containerd, ID, Some(UID))),
            (format!("/system.slice/docker-{NODE}.scope{kind}"), row(Containerd, ID, Some(UID))),
            (format!("/system.slice/docker-{NODE}.scope/kubelet.slice"), row(Docker, NODE, None)),
            // Podman: rootful, crun's sub-cgroup, conmon, rootless, a pod, cgroupfs, quadlet.
            (format!("/machine.slice/libpod-{ID}.scope"), row(Podman, ID, None)),
            (format!("/machine.slice/libpod-{ID}.scope/container"), row(Podman, ID, None)),
            (format!("/machine.slice/libpod-conmon-{ID}.scope"), None),
            (format!("{USER}/user.slice/libpod-{ID}.scope"), row(Podman, ID, None)),
            (format!("{USER}/user.slice/user-libpod_pod_{NODE}.slice/libpod-{ID}.scope"), row(Podman, ID, None)),
            (format!("{USER}/user.slice/podman-6696.scope"), None),
            (format!("/libpod_parent/libpod-{ID}"), row(Podman, ID, None)),
            (format!("/system.slice/nginx.service/libpod-payload-{ID}"), row(Podman, ID, None)),
            (format!("{USER}/app.slice/redis.service/runtime"), None),
            // systemd-nspawn: as a service, from a shell (escaped name), and its supervisor; a VM.
            ("/machine.slice/systemd-nspawn@zurps.service/payload".to_string(), row(Nspawn, "zurps", None)),
            (
                "/machine.slice/machine-my\\x2dbox.scope/payload/system.slice/getty.service".to_string(),
                row(Nspawn, "my-box", None),
            ),
            ("/machine.slice/machine-my\\x2dbox.scope/supervisor".to_string(), None),
            ("/machine.slice/machine-qemu\\x2d1\\x2dvm1.scope/libvirt/emulator".to_string(), None),
            // LXC and Incus.
            ("/lxc.payload.web/system.slice/nginx.service".to_string(), row(Lxc, "web", None)),
            ("/lxc.monitor.web".to_string(), None),
            // The host's own.
            ("/".to_string(), None),
            ("/init.scope".to_string(), None),
            ("/system.slice/nginx.service".to_string(), None),
            ("/system.slice/docker.service".to_string(), None),
            ("/system.slice/containerd.service".to_string(), None),
            ("/system.slice/docker-compose@app.service".to_string(), None),
            (format!("/system.slice/docker-{}.scope", &ID[..12]), None),
            ("/user.slice/user-1000.slice/session-3.scope".to_string(), None),
            (format!("/somewhere/{ID}"), None),
            (format!("/pod{UID}/{ID}"), None),
        ];
        for (path, want) in &table {
            assert_eq!(&container_of(path), want, "{path}");
        }
    }

    #[test]
    fn pod_uids_take_the_apis_form() {
        assert_eq!(pod_uid(UID_SYSTEMD).as_deref(), Some(UID));
        assert_eq!(pod_uid(UID).as_deref(), Some(UID));
        assert_eq!(pod_uid(STATIC_UID).as_deref(), Some(STATIC_UID));
        for bad in ["", "1234", &UID[1..], UID.replace('-', "x").as_str(), UID.to_uppercase().as_str()] {
            assert_eq!(pod_uid(bad), None, "{bad}");
        }
    }

    #[test]
    fn runtimes_have_names() {
        assert_eq!(Runtime::CriO.as_str(), "cri-o");
        assert_eq!(Runtime::Kubernetes.as_str(), "kubernetes");
        for runtime in Runtime::ALL {
            assert_eq!(Runtime::from_name(runtime.as_str()), Some(runtime));
        }
        assert_eq!(Runtime::from_name("Docker"), None);
    }
}
