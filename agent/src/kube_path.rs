//! Pod identity from kubelet's log paths, so the agent needs no API-server watch per node:
//! `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log`, or the symlinks
//! `/var/log/containers/<pod>_<namespace>_<container>-<container id>.log` that point there
//! (and, with Docker, at `/var/lib/docker/containers/<id>/<id>-json.log`).

use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodMeta {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub container: String,
}

/// The pod a log file belongs to, when its path has kubelet's shape.
pub fn pod_meta(path: &Path) -> Option<PodMeta> {
    pods_path(path).or_else(|| containers_path(path))
}

fn pods_path(path: &Path) -> Option<PodMeta> {
    let container_dir = path.parent()?;
    let pod_dir = container_dir.parent()?;
    if pod_dir.parent()?.file_name()? != "pods" {
        return None;
    }
    let container = container_dir.file_name()?.to_str()?;
    // Namespace and pod names cannot hold `_` (they are DNS labels and subdomains).
    let mut parts = pod_dir.file_name()?.to_str()?.split('_');
    let (namespace, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || [namespace, pod, uid, container].iter().any(|s| s.is_empty()) {
        return None;
    }
    Some(PodMeta {
        namespace: namespace.to_owned(),
        pod: pod.to_owned(),
        pod_uid: uid.to_owned(),
        container: container.to_owned(),
    })
}

/// `<pod>_<namespace>_<container>-<64 hex container id>.log` in a `containers` directory.
fn containers_path(path: &Path) -> Option<PodMeta> {
    if path.parent()?.file_name()? != "containers" {
        return None;
    }
    let stem = path.file_name()?.to_str()?.strip_suffix(".log")?;
    let (rest, id) = stem.rsplit_once('-')?;
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut parts = rest.split('_');
    let (pod, namespace, container) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || [pod, namespace, container].iter().any(|s| s.is_empty()) {
        return None;
    }
    Some(PodMeta {
        namespace: namespace.to_owned(),
        pod: pod.to_owned(),
        pod_uid: String::new(),
        container: container.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kubelet_paths() {
        let meta =
            pod_meta(Path::new("/var/log/pods/prod_order-api-7d9f_0f1e2d3c-aaaa-bbbb/app/0.log"))
                .unwrap();
        assert_eq!(meta.namespace, "prod");
        assert_eq!(meta.pod, "order-api-7d9f");
        assert_eq!(meta.pod_uid, "0f1e2d3c-aaaa-bbbb");
        assert_eq!(meta.container, "app");
        assert!(pod_meta(Path::new("/tmp/x/pods/ns_p_u/c/1.log")).is_some());
    }

    #[test]
    fn reads_container_symlink_names() {
        let id = "3f2a".repeat(16);
        let meta = pod_meta(Path::new(&format!(
            "/var/log/containers/order-api-7d9f_prod_app-sidecar-{id}.log"
        )))
        .unwrap();
        assert_eq!(
            (meta.pod.as_str(), meta.namespace.as_str(), meta.container.as_str()),
            ("order-api-7d9f", "prod", "app-sidecar")
        );
        assert_eq!(meta.pod_uid, "");
        for bad in [
            format!("/var/log/containers/p_ns_c-{}.log", &id[..10]),
            format!("/var/log/containers/p_ns-{id}.log"),
            format!("/var/log/other/p_ns_c-{id}.log"),
        ] {
            assert_eq!(pod_meta(Path::new(&bad)), None, "{bad}");
        }
    }

    #[test]
    fn ignores_other_paths() {
        for p in [
            "/var/log/syslog",
            "/var/log/pods/bad/app/0.log",
            "/var/log/pods/a_b_c_d/app/0.log",
            "/x/ns_p_u/c/0.log",
        ] {
            assert_eq!(pod_meta(Path::new(p)), None, "{p}");
        }
    }
}
