package localcluster

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// record is what the machine looked like before the first `up`, kept in the
// harness directory so `down` can put it back even after a crash.
type record struct {
	Sysctls map[string]string `json:"sysctls"`
	Absent  []string          `json:"absent"` // paths outside the harness dir that did not exist
}

// kubeletSysctls are the kernel settings the kubelet changes at start.
var kubeletSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

// outsidePaths are written by the kubelet, containerd or the CNI plugins no
// matter where their own directories are.
var outsidePaths = []string{
	"/var/lib/kubelet", "/var/lib/cni", "/run/containerd", "/run/netns",
	"/var/log/pods", "/var/log/containers",
}

func (c *Cluster) recordFile() string { return c.layout.path("record.json") }

// saveRecord writes the machine's state before the first start; a record from
// an earlier start that was never torn down is kept as it is.
func (c *Cluster) saveRecord() error {
	if _, err := os.Stat(c.recordFile()); err == nil {
		return nil
	}
	r := record{Sysctls: map[string]string{}}
	for _, s := range kubeletSysctls {
		if b, err := os.ReadFile("/proc/sys/" + s); err == nil {
			r.Sysctls[s] = strings.TrimSpace(string(b))
		}
	}
	for _, p := range outsidePaths {
		if _, err := os.Lstat(p); os.IsNotExist(err) {
			r.Absent = append(r.Absent, p)
		}
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	if err := os.MkdirAll(c.layout.dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(c.recordFile(), b, 0o644)
}

func (c *Cluster) loadRecord() (*record, error) {
	b, err := os.ReadFile(c.recordFile())
	if err != nil {
		return nil, err
	}
	var r record
	return &r, json.Unmarshal(b, &r)
}

// cleanupLeftovers removes what the processes of a stopped (or killed)
// cluster leave behind: container processes and shims, mounts, network
// namespaces, cgroups, the CNI bridge and state outside the harness
// directory. Every step only touches what is identifiably this cluster's.
func (c *Cluster) cleanupLeftovers() {
	killed := c.killContainers()
	if killed > 0 {
		fmt.Fprintf(c.out, "cluster: killed %d leftover container processes and shims\n", killed)
	}
	c.unmountAll()
	removeUnusedNetns()
	removeCgroups()
	if _, err := os.Stat("/sys/class/net/" + bridgeName); err == nil {
		exec.Command("ip", "link", "delete", bridgeName).Run()
	}
	results, _ := filepath.Glob("/var/lib/cni/results/" + cniNetwork + "-*")
	for _, f := range results {
		os.Remove(f)
	}
	if r, err := c.loadRecord(); err == nil {
		for _, p := range r.Absent {
			c.unmountUnder(p)
			os.RemoveAll(p)
		}
	}
}

// restoreSysctls puts back the kernel settings recorded before the first up.
func (c *Cluster) restoreSysctls() {
	r, err := c.loadRecord()
	if err != nil {
		return
	}
	for s, v := range r.Sysctls {
		cur, _ := os.ReadFile("/proc/sys/" + s)
		if strings.TrimSpace(string(cur)) != v {
			if err := os.WriteFile("/proc/sys/"+s, []byte(v), 0o644); err != nil {
				fmt.Fprintf(c.out, "cluster: could not restore %s=%s: %v\n", strings.ReplaceAll(s, "/", "."), v, err)
			}
		}
	}
}

// killContainers SIGKILLs every process in the cluster's cgroups and every
// containerd shim that talks to this cluster's containerd socket.
func (c *Cluster) killContainers() int {
	pids := map[int]bool{}
	for _, root := range cgroupRoots() {
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					pids[pid] = true
				}
			}
			return nil
		})
	}
	sock := c.layout.containerdSock()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		for i := range args[:len(args)-1] {
			if args[i] == "-address" && args[i+1] == sock {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
				pids[pid] = true
			}
		}
	}
	for pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for pid := range pids {
		waitGone(pid, 5*time.Second)
	}
	return len(pids)
}

// cgroupRoots are the cluster's cgroup directories in every hierarchy.
func cgroupRoots() []string {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + cgroupRoot)
	if _, err := os.Stat("/sys/fs/cgroup/" + cgroupRoot); err == nil {
		roots = append(roots, "/sys/fs/cgroup/"+cgroupRoot)
	}
	return roots
}

// removeCgroups removes the cluster's cgroup trees, deepest first, retrying
// while the kernel finishes reaping killed processes.
func removeCgroups() {
	for attempt := 0; attempt < 50; attempt++ {
		var dirs []string
		for _, root := range cgroupRoots() {
			filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
		}
		if len(dirs) == 0 {
			return
		}
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			syscall.Rmdir(d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mountPoints lists the mount points in /proc/self/mountinfo.
func mountPoints() []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var mps []string
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 4 {
			mps = append(mps, unescapeMount(fields[4]))
		}
	}
	return mps
}

// unescapeMount undoes the octal escapes (\040 for space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				out.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		out.WriteByte(s[i])
	}
	return out.String()
}

// unmountUnder detaches every mount at or below dir, deepest first.
func (c *Cluster) unmountUnder(dir string) int {
	var under []string
	for _, mp := range mountPoints() {
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			under = append(under, mp)
		}
	}
	sort.Slice(under, func(i, j int) bool { return len(under[i]) > len(under[j]) })
	for _, mp := range under {
		syscall.Unmount(mp, syscall.MNT_DETACH)
	}
	return len(under)
}

// unmountAll detaches every mount inside the harness directory.
func (c *Cluster) unmountAll() {
	if n := c.unmountUnder(c.layout.dir); n > 0 {
		fmt.Fprintf(c.out, "cluster: unmounted %d leftover mounts\n", n)
	}
}

// removeUnusedNetns removes CNI network namespaces (cni-*) that no process
// is in any more: those a killed containerd could not delete.
func removeUnusedNetns() {
	files, _ := filepath.Glob("/run/netns/cni-*")
	if len(files) == 0 {
		return
	}
	inUse := map[uint64]bool{}
	links, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	for _, l := range links {
		var st syscall.Stat_t
		if syscall.Stat(l, &st) == nil {
			inUse[st.Ino] = true
		}
	}
	for _, f := range files {
		var st syscall.Stat_t
		if syscall.Stat(f, &st) == nil && inUse[st.Ino] && st.Dev != 0 && isNsfs(f) {
			continue
		}
		syscall.Unmount(f, syscall.MNT_DETACH)
		os.Remove(f)
	}
}

// isNsfs reports whether path is a mounted namespace file (not a plain file).
func isNsfs(path string) bool {
	var fs syscall.Statfs_t
	const nsfsMagic = 0x6e736673
	return syscall.Statfs(path, &fs) == nil && fs.Type == nsfsMagic
}
