//! The agent's image, built without a container daemon (`scripts/agent-image`: crane from the
//! Go module proxy, cached by `scripts/test-servers crane`) into a real registry on loopback
//! (`crane registry serve`): a `scratch` image of one layer holding the static agent of
//! `scripts/build-agent`, with the entrypoint, user and labels its Dockerfile gives; the
//! binary taken back out of the image runs, and needs no dynamic loader.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// The static agent `scripts/build-agent` (run by scripts/test) left in the target directory.
fn static_agent() -> PathBuf {
    let target = sluice().parent().unwrap().parent().unwrap().to_owned();
    std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().path().join("agent/sluice-agent"))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "no */agent/sluice-agent under {}: run scripts/build-agent (scripts/test does)",
                target.display()
            )
        })
}

fn crane() -> PathBuf {
    test_servers_tool("CRANE_BIN", "crane")
}

/// Whether an ELF file asks for a program interpreter (a dynamic loader): a `PT_INTERP` header.
fn has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(elf[4], 2, "64-bit");
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum)
        .any(|i| u32::from_le_bytes(elf[phoff + i * phentsize..][..4].try_into().unwrap()) == 3)
}

#[test]
fn the_agent_image_is_scratch_with_the_static_agent_and_its_dockerfile_config() {
    let binary = static_agent();
    let port = free_port();
    let _registry = Proc {
        child: Command::new(crane())
            .args(["registry", "serve", "--address", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        name: "crane registry",
    };
    wait_until(Duration::from_secs(10), "the registry answers", || {
        http_get(&format!("http://127.0.0.1:{port}/v2/")).is_some()
    });
    let image = format!("127.0.0.1:{port}/sluice-agent:test");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/agent-image");
    let out = Command::new("bash")
        .arg(script)
        .arg(&binary)
        .arg(&image)
        .env("CRANE", crane())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let crane_json = |args: &[&str]| -> serde_json::Value {
        let out = Command::new(crane()).args(args).arg(&image).arg("--insecure").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let config = crane_json(&["config"]);
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/sluice-agent"]));
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(config["config"]["Labels"]["org.opencontainers.image.title"], "sluice-agent");
    assert_eq!(config["config"]["Labels"]["org.opencontainers.image.licenses"], "Apache-2.0");
    assert_eq!(
        (config["os"].as_str(), config["architecture"].as_str()),
        (Some("linux"), Some("amd64"))
    );
    let manifest = crane_json(&["manifest"]);
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1, "one layer: FROM scratch");

    // The image's whole filesystem is the agent.
    let dir = tempfile::tempdir().unwrap();
    let fs = dir.path().join("fs.tar");
    let out =
        Command::new(crane()).args(["export", &image]).arg(&fs).arg("--insecure").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listing = Command::new("tar").arg("-tvf").arg(&fs).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert_eq!(listing.lines().count(), 1, "{listing}");
    assert!(listing.starts_with("-rwxr-xr-x 0/0"), "{listing}");
    let out = Command::new("tar").arg("-xf").arg(&fs).arg("-C").arg(dir.path()).output().unwrap();
    assert!(out.status.success());
    let agent = dir.path().join("sluice-agent");
    assert_eq!(std::fs::read(&agent).unwrap(), std::fs::read(&binary).unwrap(), "the very binary");
    assert!(
        !has_interpreter(&std::fs::read(&agent).unwrap()),
        "static: no dynamic loader in scratch"
    );
    assert!(has_interpreter(&std::fs::read(sluice()).unwrap()), "the check sees one where it is");
    let version = Command::new(&agent).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("sluice-agent "), "runs");
}
