//! `cargo xtask image`: tcptrace in a FROM-scratch container image, built
//! with podman from a context laid out here (no registry is reached): the
//! release binary, exactly the shared libraries `ldd` names and the dynamic
//! loader, and an /etc/passwd for `--user nobody`. Then checked without
//! running a container: the entrypoint and labels (podman image inspect), the
//! files of its one layer, and the binary run from that layer under chroot
//! with the host's kernel.
use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail, ensure};

use crate::{
    setup,
    shell::{as_root, run, workspace_root},
};

pub const REPOSITORY: &str = "localhost/tcptrace";
/// Where the image keeps the binary; the DaemonSet names it too.
pub const BINARY: &str = "/usr/local/bin/tcptrace";
pub const ENTRYPOINT: [&str; 3] = [BINARY, "-o", "json"];
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The image's /etc/passwd and /etc/group: root, and nobody for `--user nobody`.
pub const PASSWD: &str = "root:x:0:0:root:/:/nonexistent\nnobody:x:65534:65534:nobody:/nonexistent:/nonexistent\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";

/// `localhost/tcptrace:VERSION`.
pub fn tag() -> String {
    format!("{REPOSITORY}:{VERSION}")
}

/// Builds tcptrace in release mode, lays out the context and builds the image.
pub fn build() -> Result<String> {
    setup::packages(&["podman"])?;
    let root = workspace_root();
    crate::shell::build_release()?;
    let binary = root.join("target/release/tcptrace");
    let context = root.join("target/image/context");
    let _ = fs::remove_dir_all(&context);
    let rootfs = context.join("rootfs");
    copy_into(&rootfs, &binary, BINARY)?;
    let ldd = Command::new("ldd").arg(&binary).output().context("cannot run ldd")?;
    ensure!(ldd.status.success(), "ldd {}: {}", binary.display(), String::from_utf8_lossy(&ldd.stderr));
    for library in shared_libraries(&String::from_utf8_lossy(&ldd.stdout))? {
        copy_into(&rootfs, Path::new(&library), &library)?;
    }
    write(&rootfs.join("etc/passwd"), PASSWD)?;
    write(&rootfs.join("etc/group"), GROUP)?;
    let tag = tag();
    run(as_root("podman")?
        .args(["build", "--quiet", "--file"])
        .arg(root.join("deploy/Containerfile"))
        .args(["--build-arg", &format!("VERSION={VERSION}"), "--tag", &tag, "--tag", &format!("{REPOSITORY}:latest")])
        .arg(&context))?;
    Ok(tag)
}

/// The image as built: entrypoint, labels, exactly the expected files, and a
/// binary that runs from its layer (chroot, host kernel).
pub fn check(tag: &str) -> Result<()> {
    let inspect = as_root("podman")?.args(["image", "inspect", tag]).output().context("podman image inspect")?;
    ensure!(inspect.status.success(), "podman image inspect {tag}: {}", String::from_utf8_lossy(&inspect.stderr));
    let images: Vec<serde_json::Value> = serde_json::from_slice(&inspect.stdout).context("podman image inspect")?;
    let config = &images.first().context("podman image inspect: no image")?["Config"];
    ensure!(config["Entrypoint"] == serde_json::json!(ENTRYPOINT), "entrypoint is {}", config["Entrypoint"]);
    let labels = &config["Labels"];
    ensure!(labels["org.opencontainers.image.title"] == "tcptrace", "labels: {labels}");
    ensure!(labels["org.opencontainers.image.version"] == VERSION, "labels: {labels}");
    let size = images[0]["Size"].as_u64().unwrap_or(0);

    let work = workspace_root().join("target/image/check");
    let _ = fs::remove_dir_all(&work);
    let rootfs = work.join("rootfs");
    fs::create_dir_all(&rootfs).with_context(|| format!("create {}", rootfs.display()))?;
    let archive = work.join("image.tar");
    run(as_root("podman")?
        .args(["image", "save", "--quiet", "--format", "docker-archive", "--output"])
        .arg(&archive)
        .arg(tag))?;
    run(Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&work).arg("manifest.json"))?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(work.join("manifest.json")).context("manifest.json")?)
            .context("manifest.json")?;
    let layers: Vec<&str> = manifest[0]["Layers"].as_array().into_iter().flatten().filter_map(|l| l.as_str()).collect();
    let [layer] = layers[..] else { bail!("expected one layer, the image has {}", layers.len()) };
    run(Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&work).arg(layer))?;
    run(Command::new("tar").arg("-xf").arg(work.join(layer)).arg("-C").arg(&rootfs))?;

    let found = files_under(&rootfs)?;
    let expected = expected_files()?;
    ensure!(found == expected, "image files {found:?}, expected {expected:?}");

    let version = chroot(&rootfs, &["--version"])?;
    ensure!(version.0 == Some(0) && version.1.trim() == format!("tcptrace {VERSION}"), "--version: {version:?}");
    // --user is resolved (from the image's /etc/passwd) before --count is
    // checked: the --count error proves nobody was found.
    let user = chroot(&rootfs, &["--user", "nobody", "-n", "0"])?;
    ensure!(user.0 == Some(2) && user.2.contains("--count 0"), "--user nobody in the image: {user:?}");
    eprintln!(
        "xtask: image {tag}: {:.1} MB, entrypoint {}, {} files, runs under chroot",
        size as f64 / 1e6,
        ENTRYPOINT.join(" "),
        found.len()
    );
    let _ = fs::remove_dir_all(&work);
    Ok(())
}

/// (exit code, stdout, stderr) of the image's tcptrace run with `args` in `rootfs`.
fn chroot(rootfs: &Path, args: &[&str]) -> Result<(Option<i32>, String, String)> {
    let out = as_root("chroot")?.arg(rootfs).arg(BINARY).args(args).output().context("cannot run chroot")?;
    Ok((out.status.code(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into()))
}

/// Paths (relative, no leading /) the image must hold and nothing else.
fn expected_files() -> Result<BTreeSet<String>> {
    let ldd = Command::new("ldd").arg(workspace_root().join("target/release/tcptrace")).output().context("ldd")?;
    let mut files: BTreeSet<String> = shared_libraries(&String::from_utf8_lossy(&ldd.stdout))?.into_iter().collect();
    files.extend([BINARY.to_owned(), "/etc/passwd".to_owned(), "/etc/group".to_owned()]);
    Ok(files.into_iter().map(|path| path.trim_start_matches('/').to_owned()).collect())
}

/// Every non-directory under `dir`, relative to it.
fn files_under(dir: &Path) -> Result<BTreeSet<String>> {
    let mut found = BTreeSet::new();
    let mut pending = vec![PathBuf::from(dir)];
    while let Some(next) = pending.pop() {
        for entry in fs::read_dir(&next).with_context(|| format!("read {}", next.display()))? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
            } else if let Ok(relative) = entry.path().strip_prefix(dir) {
                found.insert(relative.to_string_lossy().into_owned());
            }
        }
    }
    Ok(found)
}

/// The absolute paths of the libraries and loader in `ldd` output; the vDSO
/// has no file. A library ldd cannot find is an error.
pub fn shared_libraries(ldd: &str) -> Result<Vec<String>> {
    let mut paths = Vec::new();
    for line in ldd.lines().map(str::trim).filter(|line| !line.is_empty()) {
        let target = match line.split_once("=>") {
            Some((name, target)) => {
                let target = target.trim();
                if target.starts_with("not found") {
                    bail!("ldd: {} not found", name.trim());
                }
                target
            }
            None => line,
        };
        let path = target.split(" (").next().unwrap_or_default().trim();
        if path.starts_with('/') {
            paths.push(path.to_owned());
        }
    }
    ensure!(!paths.is_empty(), "ldd listed no libraries: {ldd}");
    Ok(paths)
}

/// Copies `source` (following symlinks) to `rootfs` + `path`, keeping its mode.
fn copy_into(rootfs: &Path, source: &Path, path: &str) -> Result<()> {
    let target = rootfs.join(path.trim_start_matches('/'));
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    fs::copy(source, &target).with_context(|| format!("copy {} to {}", source.display(), target.display()))?;
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libraries_from_ldd() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd1c5e2000)
\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f3b1c9a0000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f3b1c7bf000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f3b1c9e0000)
";
        assert_eq!(
            shared_libraries(ldd).expect("parsed"),
            ["/lib/x86_64-linux-gnu/libgcc_s.so.1", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]
        );
        assert!(shared_libraries("\tlibfoo.so.1 => not found\n").is_err());
        assert!(shared_libraries("\tstatically linked\n").is_err());
    }
}
