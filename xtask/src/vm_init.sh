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
mount -t tmpfs tmpfs /overlay && mkdir /overlay/upper /overlay/work || die "cannot make the /root overlay"
mount -t overlay -o lowerdir=/newroot/root,upperdir=/overlay/upper,workdir=/overlay/work overlay /newroot/root ||
	die "cannot mount /root"
mount -t 9p -o "$ninep,cache=mmap" workspace "/newroot$xtask_ws" || die "cannot mount $xtask_ws"

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
chroot /newroot /bin/sh "$xtask_run" </dev/null
echo "XTASK-VM-EXIT=$?"
poweroff -f
