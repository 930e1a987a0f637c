#!/bin/busybox sh
# PID 1 of `cargo xtask vm` (built into the initramfs by xtask/src/vm.rs). It
# mounts the host's root read-only over virtio 9p, with writable scratch
# directories and the workspace read-write at its host path, runs the script
# the host wrote ($xtask_run, from the kernel command line) in it, prints
# XTASK-VM-EXIT=<status> and powers off. No marker tells the host it failed.
/bin/busybox --install -s /bin
export PATH=/bin

die() {
	echo "xtask-vm: $*"
	poweroff -f
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Debian builds virtio-pci (6.1), 9p and overlayfs as modules; vm.rs numbered
# them so that the glob's order loads dependencies first.
for module in /modules/*.ko; do
	insmod "$module" || die "cannot load $module"
done

ninep=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o "$ninep,ro" hostroot /newroot || die "cannot mount the host's root"
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp || die "cannot mount /tmp"
mount -t tmpfs -o mode=1777 tmpfs /newroot/var/tmp || die "cannot mount /var/tmp"
# A tmpfs /run lets ip netns create and bind-mount /run/netns.
mount -t tmpfs -o mode=755 tmpfs /newroot/run || die "cannot mount /run"
# /root keeps the host's tools (rustup, pyenv) but takes writes, in memory.
mount -t tmpfs tmpfs /overlay && mkdir -p /overlay/root/upper /overlay/root/work || die "cannot make overlays"
mount -t overlay -o lowerdir=/newroot/root,upperdir=/overlay/root/upper,workdir=/overlay/root/work overlay /newroot/root ||
	die "cannot mount /root"
# A workspace under /tmp (a clone in CI, say) sits in the fresh tmpfs: make its mount point.
[ -d "/newroot$xtask_ws" ] || mkdir -p "/newroot$xtask_ws" || die "cannot make $xtask_ws"
mount -t 9p -o "$ninep,cache=mmap" workspace "/newroot$xtask_ws" || die "cannot mount $xtask_ws"
# /lib/modules is the booted kernel's whole module tree ($xtask_modules, in the
# workspace), for modprobe and the kernel's own loading (nft needs nf_tables),
# not the host's. The read-only host may lack the mount point: an overlay on
# /lib (usr/lib when merged) adds it.
lib=$(chroot /newroot /bin/busybox readlink -f /lib) || die "cannot resolve the host's /lib"
mkdir -p /overlay/lib/upper/modules /overlay/lib/work || die "cannot make the /lib overlay"
mount -t overlay -o "lowerdir=/newroot$lib,upperdir=/overlay/lib/upper,workdir=/overlay/lib/work" overlay "/newroot$lib" ||
	die "cannot mount $lib"
mount --bind "/newroot$xtask_modules" "/newroot$lib/modules" || die "cannot mount $lib/modules"

cd /newroot || die "no /newroot"
mount -t proc proc proc || die "cannot mount /proc"
mount -t sysfs sysfs sys || die "cannot mount /sys"
mount -t devtmpfs devtmpfs dev || die "cannot mount /dev"
mkdir -p dev/pts dev/shm
mount -t devpts -o ptmxmode=666 devpts dev/pts || die "cannot mount /dev/pts"
mount -t tmpfs -o mode=1777 tmpfs dev/shm || die "cannot mount /dev/shm"
ln -sf /proc/self/fd dev/fd
mount -t tracefs tracefs sys/kernel/tracing || die "cannot mount tracefs"
mount -t debugfs debugfs sys/kernel/debug || die "cannot mount debugfs"
mount -t bpf bpf sys/fs/bpf || die "cannot mount bpffs"
mount -t cgroup2 cgroup2 sys/fs/cgroup || die "cannot mount cgroup2"
ip link set lo up || die "cannot bring up lo"
hostname xtask-vm

echo XTASK-VM-START
# PID 1 shares its root with the kernel's threads, so it chroots itself (not a
# child): the helpers the kernel starts, /sbin/modprobe for request_module, then
# run in the host's root. The host has /bin/busybox: vm.rs copied it here.
exec chroot /newroot /bin/busybox sh -c '/bin/sh "$1" </dev/null; echo "XTASK-VM-EXIT=$?"; /bin/busybox poweroff -f' init "$xtask_run"
