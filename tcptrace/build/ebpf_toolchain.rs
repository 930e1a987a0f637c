//! The kernel programs' pinned toolchain: what the workspace Cargo.toml names
//! and what this machine has. Shared by tcptrace's build script (which refuses
//! a mismatch) and xtask (which installs the pins).
use std::{path::Path, process::Command};

use serde::Deserialize;

/// `[workspace.metadata.ebpf-toolchain]`.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Pins {
    /// A dated nightly: "nightly" alone means something else every day.
    pub nightly: String,
    /// The LLVM major both the nightly and bpf-linker are built on.
    pub llvm_major: u32,
    pub bpf_linker: String,
}

impl Pins {
    pub fn read(workspace_cargo_toml: &Path) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Manifest {
            workspace: Workspace,
        }
        #[derive(Deserialize)]
        struct Workspace {
            metadata: Metadata,
        }
        #[derive(Deserialize)]
        struct Metadata {
            #[serde(rename = "ebpf-toolchain")]
            ebpf_toolchain: Pins,
        }
        let text = std::fs::read_to_string(workspace_cargo_toml)
            .map_err(|e| format!("cannot read {}: {e}", workspace_cargo_toml.display()))?;
        let manifest: Manifest = toml::from_str(&text).map_err(|e| {
            format!("{}: [workspace.metadata.ebpf-toolchain]: {}", workspace_cargo_toml.display(), e.message())
        })?;
        Ok(manifest.workspace.metadata.ebpf_toolchain)
    }

    /// Ok when the pinned nightly (with rust-src) and bpf-linker are installed
    /// and agree on LLVM; otherwise one line naming what differs.
    pub fn check_installed(&self) -> Result<(), String> {
        let setup = "run `cargo xtask setup`";
        let nightly = &self.nightly;
        let version = stdout(Command::new("rustup").args(["run", nightly, "rustc", "-vV"]))
            .ok_or_else(|| format!("the kernel programs' toolchain {nightly} is not installed: {setup}"))?;
        let nightly_llvm = version.lines().find_map(|l| l.strip_prefix("LLVM version: ")).unwrap_or("unknown");
        if llvm_major(nightly_llvm) != Some(self.llvm_major) {
            return Err(format!(
                "{nightly} is built on LLVM {nightly_llvm}, but bpf-linker is pinned to LLVM {}: \
                 pin a nightly and bpf-linker on one LLVM major in Cargo.toml [workspace.metadata.ebpf-toolchain]",
                self.llvm_major
            ));
        }
        let components =
            stdout(Command::new("rustup").args(["component", "list", "--installed", "--toolchain", nightly]));
        if !components.is_some_and(|list| list.lines().any(|l| l.starts_with("rust-src"))) {
            return Err(format!("{nightly} has no rust-src (the kernel programs build core from source): {setup}"));
        }
        let linker = stdout(Command::new("bpf-linker").arg("--version"))
            .ok_or_else(|| format!("bpf-linker is not installed: {setup}"))?;
        if linker.split_whitespace().nth(1) != Some(self.bpf_linker.as_str()) {
            return Err(format!("found {}, pinned bpf-linker {}: {setup}", linker.trim(), self.bpf_linker));
        }
        match bpf_linker_llvm_major() {
            Some(major) if major != self.llvm_major => Err(format!(
                "bpf-linker links LLVM {major}, but {nightly} is built on LLVM {nightly_llvm}: \
                 it would fail with \"Invalid record\"; {setup}"
            )),
            _ => Ok(()),
        }
    }
}

fn stdout(command: &mut Command) -> Option<String> {
    let out = command.output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn llvm_major(version: &str) -> Option<u32> {
    version.split('.').next()?.trim().parse().ok()
}

/// The LLVM a dynamically linked bpf-linker loads (libLLVM.so.22.1); None
/// when it is linked statically and cannot say.
pub fn bpf_linker_llvm_major() -> Option<u32> {
    let path = stdout(Command::new("sh").args(["-c", "command -v bpf-linker"]))?;
    let libraries = stdout(Command::new("ldd").arg(path.trim()))?;
    libraries.split_whitespace().find_map(|word| {
        let rest = word.strip_prefix("libLLVM.so.").or_else(|| word.strip_prefix("libLLVM-"))?;
        llvm_major(rest.trim_end_matches(".so"))
    })
}
