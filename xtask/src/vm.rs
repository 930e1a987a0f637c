//! `cargo xtask vm`: runs a command under a stock Debian kernel in QEMU (KVM
//! when the host has it, else emulated), because the host kernel refuses
//! fentry and has no kprobes. The guest sees the host's filesystem (read-only,
//! the workspace read-write), so built test binaries and the host's tools run
//! there as they are.
use std::{
    collections::{HashMap, HashSet},
    fmt, fs,
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, ValueEnum};

use crate::{
    setup,
    shell::{as_root, output, run, workspace_root},
};

/// QEMU; a static busybox for the initramfs (and the guest's PID 1 after it
/// chroots); depmod, as the kernel .deb has no modules.dep.
const PACKAGES: &[&str] = &["qemu-system-x86", "busybox-static", "kmod"];
const BUSYBOX: &str = "/bin/busybox";
/// What the guest needs to mount the host over virtio 9p and overlay /root;
/// their dependencies come from modules.dep, built-in ones are skipped.
const MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p", "overlay"];
const INIT: &str = include_str!("vm_init.sh");
/// Lines the guest's init prints around the command.
const START: &str = "XTASK-VM-START";
const EXIT: &str = "XTASK-VM-EXIT=";
/// virtfs options of both shares: the host's root (read-only) and the workspace.
/// multidevs=remap keeps inode numbers unique across the host's mounts.
const SHARE: &str = "security_model=none,multidevs=remap";
/// Host variables the guest command gets, besides --env.
const PASSED_ENV: &[&str] = &["PATH", "RUST_BACKTRACE", "RUST_LOG"];
/// Seconds before QEMU is killed, unless told otherwise.
pub(crate) const TIMEOUT: u64 = 600;
/// Where, in a kernel's cache directory, its whole module tree stays (one
/// `<release>` directory, with modules.dep): the guest's /lib/modules.
const MODULE_TREE: &str = "lib-modules";

#[derive(Args)]
pub struct Options {
    /// Debian kernel series to boot.
    #[arg(long)]
    pub(crate) kernel: Series,
    /// Seconds before QEMU is killed.
    #[arg(long, default_value_t = TIMEOUT)]
    pub(crate) timeout: u64,
    /// KEY=VALUE for the command's environment (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub(crate) env: Vec<String>,
    /// The command to run as root in the guest, after `--`.
    #[arg(last = true, required = true)]
    pub(crate) command: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Series {
    #[value(name = "6.1")]
    V6_1,
    #[value(name = "6.12")]
    V6_12,
}

impl Series {
    /// The ABI or patch number of one of this series' signed amd64 image
    /// packages (linux-image-6.1.0-56-amd64, linux-image-6.12.117+deb12-amd64).
    fn number(self, package: &str) -> Option<u32> {
        let (prefix, suffix) = match self {
            Series::V6_1 => ("linux-image-6.1.0-", "-amd64"),
            Series::V6_12 => ("linux-image-6.12.", "+deb12-amd64"),
        };
        package.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok()
    }

    fn newest<'a>(self, packages: impl Iterator<Item = &'a str>) -> Option<String> {
        packages.filter_map(|p| Some((self.number(p)?, p))).max().map(|(_, p)| p.to_owned())
    }
}

/// As on the command line: 6.1, 6.12.
impl fmt::Display for Series {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Series::V6_1 => "6.1",
            Series::V6_12 => "6.12",
        })
    }
}

/// Boots the kernel, runs the command and returns its exit status.
pub fn run_command(options: &Options) -> Result<u8> {
    setup::packages(PACKAGES)?;
    let dir = workspace_root().join("target/vm");
    let package = kernel_package(options.kernel, &dir)?;
    let (vmlinuz, initramfs) = kernel(&package, &dir.join(&package))?;
    let script = dir.join(format!("run-{}.sh", std::process::id()));
    fs::write(&script, run_script(options)?).with_context(|| format!("cannot write {}", script.display()))?;
    let status = boot(&vmlinuz, &initramfs, &dir.join(&package).join(MODULE_TREE), &script, options.timeout);
    let _ = fs::remove_file(&script);
    status
}

/// The newest image package of the series that apt knows, after an update if
/// it knows none; else the newest already in `cache`.
fn kernel_package(series: Series, cache: &Path) -> Result<String> {
    let known = || {
        let list = output(Command::new("apt-cache").args(["search", "--names-only", "^linux-image-6\\.1"]));
        series.newest(list.unwrap_or_default().lines().filter_map(|l| l.split(' ').next()))
    };
    if let Some(package) = known() {
        return Ok(package);
    }
    run(as_root("apt-get")?.arg("update"))?;
    if let Some(package) = known() {
        return Ok(package);
    }
    let cached: Vec<String> = fs::read_dir(cache)
        .map(|entries| entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    series.newest(cached.iter().map(String::as_str)).context("apt knows no kernel package of that series")
}

/// vmlinuz and an initramfs for `package`, cached in `dir` with its module
/// tree: downloaded once, the initramfs rebuilt only when vm_init.sh changed.
fn kernel(package: &str, dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let vmlinuz = dir.join("vmlinuz");
    if !vmlinuz.exists() || !dir.join(MODULE_TREE).exists() {
        fetch(package, dir).with_context(|| format!("cannot prepare {package}"))?;
    }
    let initramfs = dir.join("initramfs.cpio");
    let stamp = dir.join("init.sh");
    if !initramfs.exists() || fs::read_to_string(&stamp).ok().as_deref() != Some(INIT) {
        write_initramfs(&dir.join("modules"), &initramfs)?;
        fs::write(&stamp, INIT)?;
    }
    Ok((vmlinuz, initramfs))
}

/// Downloads and unpacks the package, keeping vmlinuz, the module tree with
/// its modules.dep, and the modules the initramfs loads, numbered in load order
/// and decompressed (for busybox insmod). vmlinuz comes last: it marks the end.
fn fetch(package: &str, dir: &Path) -> Result<()> {
    let download = fresh_dir(&dir.join("download"))?;
    run(Command::new("apt-get").current_dir(&download).args(["download", package]))?;
    let deb = only_entry(&download)?;
    let tree = download.join("tree");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
    let release = only_entry(&tree.join("lib/modules"))?;
    let release = release.file_name().and_then(|r| r.to_str()).context("odd lib/modules entry")?;
    run(Command::new("depmod").arg("-b").arg(&tree).arg(release))?;
    let module_tree = dir.join(MODULE_TREE);
    if module_tree.exists() {
        fs::remove_dir_all(&module_tree)?;
    }
    fs::rename(tree.join("lib/modules"), &module_tree)?;
    let modules_dir = module_tree.join(release);
    let modules = fresh_dir(&dir.join("modules"))?;
    for (i, path) in load_order(&modules_dir)?.iter().enumerate() {
        let module = modules.join(format!("{i:02}-{}.ko", module_name(path)));
        fs::write(&module, decompress(&modules_dir.join(path))?)?;
    }
    fs::copy(tree.join(format!("boot/vmlinuz-{release}")), dir.join("vmlinuz.tmp"))?;
    fs::rename(dir.join("vmlinuz.tmp"), dir.join("vmlinuz"))?;
    Ok(fs::remove_dir_all(&download)?)
}

/// An empty `dir`: what an interrupted run left there goes.
fn fresh_dir(dir: &Path) -> Result<PathBuf> {
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    fs::create_dir_all(dir)?;
    Ok(dir.to_owned())
}

fn only_entry(dir: &Path) -> Result<PathBuf> {
    let entries: Vec<PathBuf> = fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    match <[PathBuf; 1]>::try_from(entries) {
        Ok([entry]) => Ok(entry),
        Err(_) => bail!("expected exactly one entry in {}", dir.display()),
    }
}

/// MODULES and their dependencies as modules.dep paths, dependencies first.
fn load_order(modules_dir: &Path) -> Result<Vec<String>> {
    let dep = fs::read_to_string(modules_dir.join("modules.dep"))?;
    let builtin = fs::read_to_string(modules_dir.join("modules.builtin"))?;
    let builtin: HashSet<String> = builtin.lines().map(module_name).collect();
    let deps: HashMap<&str, Vec<&str>> = dep
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(path, deps)| (path, deps.split_whitespace().collect()))
        .collect();
    let mut order = Vec::new();
    for &wanted in MODULES.iter().filter(|m| !builtin.contains(**m)) {
        let path = deps.keys().find(|p| module_name(p) == wanted).with_context(|| format!("no module {wanted}"))?;
        visit(path, &deps, &mut order);
    }
    Ok(order.into_iter().map(str::to_owned).collect())
}

fn visit<'a>(path: &'a str, deps: &HashMap<&'a str, Vec<&'a str>>, order: &mut Vec<&'a str>) {
    if order.contains(&path) {
        return;
    }
    for &dep in deps.get(path).into_iter().flatten() {
        visit(dep, deps, order);
    }
    order.push(path);
}

/// kernel/fs/9p/9p.ko.xz -> 9p; the kernel treats - and _ alike.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

fn decompress(path: &Path) -> Result<Vec<u8>> {
    let tool = match path.extension().and_then(|e| e.to_str()) {
        Some("xz") => "xz",
        Some("zst") => "zstd",
        Some("gz") => "gzip",
        _ => return fs::read(path).with_context(|| format!("cannot read {}", path.display())),
    };
    let out = Command::new(tool).arg("-dc").arg(path).output().with_context(|| format!("cannot start {tool}"))?;
    if !out.status.success() {
        bail!("{tool} -dc {} failed ({})", path.display(), out.status);
    }
    Ok(out.stdout)
}

/// A newc cpio (what the kernel unpacks) of busybox, /init and the modules.
fn write_initramfs(modules: &Path, target: &Path) -> Result<()> {
    let mut cpio = Vec::new();
    for dir in ["bin", "dev", "proc", "sys", "newroot", "overlay", "modules"] {
        cpio_entry(&mut cpio, dir, 0o40755, &[]);
    }
    let busybox = fs::read(BUSYBOX).with_context(|| format!("cannot read {BUSYBOX}"))?;
    cpio_entry(&mut cpio, "bin/busybox", 0o100755, &busybox);
    cpio_entry(&mut cpio, "init", 0o100755, INIT.as_bytes());
    let mut files: Vec<PathBuf> = fs::read_dir(modules)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.sort();
    for file in files {
        let name = file.file_name().and_then(|n| n.to_str()).context("odd module file name")?;
        cpio_entry(&mut cpio, &format!("modules/{name}"), 0o100644, &fs::read(&file)?);
    }
    cpio_entry(&mut cpio, "TRAILER!!!", 0, &[]);
    let partial = target.with_extension("tmp");
    fs::write(&partial, cpio)?;
    Ok(fs::rename(&partial, target)?)
}

fn cpio_entry(cpio: &mut Vec<u8>, name: &str, mode: usize, data: &[u8]) {
    let nlink = if mode & 0o40000 != 0 { 2 } else { 1 };
    // ino, mode, uid, gid, nlink, mtime, size, dev and rdev major/minor, name size, check
    let fields = [cpio.len(), mode, 0, 0, nlink, 0, data.len(), 0, 0, 0, 0, name.len() + 1, 0];
    let header: String = fields.iter().map(|field| format!("{field:08x}")).collect();
    cpio.extend_from_slice(format!("070701{header}").as_bytes());
    cpio.extend_from_slice(name.as_bytes());
    cpio.push(0);
    cpio.resize(cpio.len().next_multiple_of(4), 0);
    cpio.extend_from_slice(data);
    cpio.resize(cpio.len().next_multiple_of(4), 0);
}

/// The guest's part of the command line: environment, directory, command.
fn run_script(options: &Options) -> Result<String> {
    let mut env: Vec<(String, String)> =
        PASSED_ENV.iter().filter_map(|k| Some((k.to_string(), std::env::var(k).ok()?))).collect();
    env.push(("HOME".into(), "/root".into()));
    for pair in &options.env {
        let (key, value) = pair.split_once('=').with_context(|| format!("--env {pair}: expected KEY=VALUE"))?;
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("--env {pair}: {key:?} is not a variable name");
        }
        env.push((key.into(), value.into()));
    }
    let cwd = std::env::current_dir()?.to_string_lossy().into_owned();
    let mut script: String = env.iter().map(|(k, v)| format!("export {k}={}\n", quote(v))).collect();
    script += &format!(
        "cd {0} 2>/dev/null || {{ echo 'xtask-vm: no '{0}' in the guest, running in /' >&2; cd /; }}\n",
        quote(&cwd)
    );
    script += &format!("exec {}\n", options.command.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" "));
    Ok(script)
}

fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Runs QEMU with the console on our stdout; the guest's exit status.
/// `module_tree` (in the workspace) becomes the guest's /lib/modules.
fn boot(vmlinuz: &Path, initramfs: &Path, module_tree: &Path, script: &Path, timeout: u64) -> Result<u8> {
    let workspace = workspace_root().to_string_lossy().into_owned();
    let (module_tree, script) = (module_tree.to_string_lossy(), script.to_string_lossy());
    if [&workspace, &*module_tree, &*script].iter().any(|p| p.contains(char::is_whitespace)) {
        bail!("the workspace path must have no spaces: it goes on the kernel command line");
    }
    let append =
        format!("console=ttyS0 quiet panic=-1 xtask_ws={workspace} xtask_modules={module_tree} xtask_run={script}");
    let share = format!("local,path={},mount_tag=workspace,{SHARE}", workspace.replace(',', ",,"));
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(accelerator()).args(["-m", "2048", "-smp", "2", "-nographic", "-no-reboot", "-nic", "none"]);
    qemu.arg("-kernel").arg(vmlinuz).arg("-initrd").arg(initramfs).args(["-append", &append]);
    qemu.args(["-virtfs", &format!("local,path=/,mount_tag=hostroot,readonly=on,{SHARE}"), "-virtfs", &share]);
    qemu.stdin(Stdio::null()).stdout(Stdio::piped());
    let mut child = qemu.spawn().context("cannot start qemu-system-x86_64")?;
    let stdout = child.stdout.take().context("no QEMU stdout")?;
    let console = thread::spawn(move || console(stdout));
    let killed = wait(&mut child, Duration::from_secs(timeout))?;
    let status = console.join().map_err(|_| anyhow!("the console reader panicked"))?;
    if killed {
        bail!("the guest did not finish within {timeout} s: killed QEMU");
    }
    status.context("the guest stopped without reporting the command's exit status (kernel panic or init failure)")
}

/// KVM when it is hardware VT. The kvm_pvm module (this workplace's machines)
/// runs only kernels built as PVM guests: a stock kernel hangs right after its
/// real-mode setup. Without such KVM, QEMU emulates the CPU (TCG): slower.
fn accelerator() -> [&'static str; 4] {
    let vt = ["kvm_intel", "kvm_amd"].iter().any(|m| Path::new("/sys/module").join(m).exists());
    if vt && fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok() {
        return ["-accel", "kvm", "-cpu", "host"];
    }
    eprintln!("xtask: no usable hardware KVM (kvm_intel or kvm_amd, /dev/kvm): emulating the CPU, slower");
    ["-accel", "tcg,thread=multi", "-cpu", "max"]
}

/// Waits for QEMU, killing it at the deadline; true if it had to.
fn wait(child: &mut Child, timeout: Duration) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    while child.try_wait()?.is_none() {
        if Instant::now() >= deadline {
            child.kill()?;
            child.wait()?;
            return Ok(true);
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(false)
}

/// Shows what the guest prints between the markers and returns the status in
/// the exit marker. The boot log goes to stderr only if the command never started.
fn console(stdout: impl Read) -> Option<u8> {
    let mut reader = BufReader::new(stdout);
    let (mut boot_log, mut line) = (String::new(), Vec::new());
    let (mut started, mut status) = (false, None);
    let mut out = std::io::stdout();
    while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
        let text = String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_owned();
        line.clear();
        if !started {
            started = text.ends_with(START);
            // Without SeaBIOS's terminal resets.
            boot_log.extend(text.chars().filter(|c| !c.is_control() || *c == '\t').chain(['\n']));
            continue;
        }
        if status.is_some() {
            continue;
        }
        // A command's last line may lack its newline: the marker then ends it.
        let marker = text.rsplit_once(EXIT).and_then(|(before, code)| Some((before, code.trim().parse().ok()?)));
        let (shown, code) = marker.map_or((text.as_str(), None), |(before, code)| (before, Some(code)));
        if code.is_none() || !shown.is_empty() {
            let _ = writeln!(out, "{shown}");
        }
        status = code;
    }
    if !started {
        eprint!("{boot_log}");
    }
    status
}
