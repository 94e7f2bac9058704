#!/usr/bin/env bash
# Prints what a test cluster could leave behind on this machine, one sorted
# block per kind: run it before `up` and after `down` and diff the two.
# Nothing here changes the machine.
set -u
echo "## processes (cluster components, shims, pause)"
ps -eo stat=,comm= | awk '$1 !~ /^Z/ {print $2}' | grep -E '^(etcd|containerd|containerd-shim|kube-apiserver|kubelet|pause|runc)' | sort | uniq -c
echo "## mounts (kubelet, containerd, netns, harness)"
grep -E 'kubelet|containerd|netns|kdap' /proc/self/mountinfo | awk '{print $5}' | sort
echo "## network namespaces"
ls /var/run/netns 2>/dev/null | sort
echo "## links"
ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort
echo "## sysctls the kubelet sets"
for s in vm/overcommit_memory kernel/panic kernel/panic_on_oops; do echo "$s=$(cat /proc/sys/$s)"; done
echo "## top-level cgroups"
find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -type d 2>/dev/null | sort
echo "## iptables chains"
for t in filter nat mangle; do iptables-save -t "$t" 2>/dev/null | grep '^:' | awk -v t="$t" '{print t" "$1}'; done | sort
echo "## paths written outside the harness directory"
for p in /var/lib/kubelet /var/lib/cni /run/containerd /var/log/pods /var/log/containers /etc/cni/net.d; do
  [ -e "$p" ] && find "$p" | sort
done
exit 0
