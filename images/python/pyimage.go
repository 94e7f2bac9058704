// Package pyimage writes kdap's Python debugger image — the agent, gdb and
// Debian's debugpy on a Debian root file system made by debootstrap — as a
// docker-archive tarball, without a container engine. images/python/Dockerfile
// builds the same image for users with a registry. The tests also take
// Python-only images (no shell, no pip) from the same root file system.
package pyimage

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/kdap/kdap/images/ocitar"
	"github.com/kdap/kdap/internal/lines"
	"github.com/kdap/kdap/runtimes"
)

// The Debian release and debugpy the image is built from (keep the
// Dockerfile in step).
const (
	Suite          = "bookworm"
	DebugpyVersion = "1.6.6+ds-1"
	// Pythons are the CPython versions that debugpy 1.6.6 supports.
	Pythons = "3.7-3.11"
	// DebugpyDir holds the debugpy package in the image, links resolved.
	DebugpyDir = "/kdap/python"
)

// mirror is the Debian mirror debootstrap fetches from: $KDAP_DEBIAN_MIRROR,
// else Debian's own.
func mirror() string {
	if m := os.Getenv("KDAP_DEBIAN_MIRROR"); m != "" {
		return m
	}
	return "http://deb.debian.org/debian"
}

// packages are installed on debootstrap's minbase. libboost-regex1.74.0 is
// named because --include does not resolve the virtual package gdb's
// libsource-highlight4v5 depends on.
var packages = []string{"python3", "gdb", "python3-debugpy", "libboost-regex1.74.0"}

// Rootfs returns a Debian root file system with python3, gdb and debugpy,
// made by debootstrap (root, Debian's debootstrap package and the Debian
// mirror needed) the first time and cached under the user's cache
// directory. Progress goes to log.
func Rootfs(ctx context.Context, log io.Writer) (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	key := sha256.Sum256([]byte(Suite + " " + strings.Join(packages, ",")))
	dir := filepath.Join(cache, "kdap", "python-rootfs", Suite+"-"+hex.EncodeToString(key[:])[:12])
	if _, err := os.Stat(filepath.Join(dir, "usr", "bin", "gdb")); err == nil {
		return dir, checkDebugpy(dir)
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", fmt.Errorf("building the Python images needs debootstrap: apt-get install debootstrap")
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("building the Python images runs debootstrap, which needs root")
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	fmt.Fprintf(log, "pyimage: debootstrap %s with %s into %s (≈ 1 min, once)\n", Suite, strings.Join(packages, ","), dir)
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "--include="+strings.Join(packages, ","), Suite, tmp, mirror())
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("debootstrap %s: %w\n%s", Suite, err, lines.Last(string(out), 15))
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return dir, checkDebugpy(dir)
}

// checkDebugpy fails if the root file system's debugpy is not the pinned one.
func checkDebugpy(rootfs string) error {
	pkgs, err := readStatus(rootfs)
	if err != nil {
		return err
	}
	if v := pkgs["python3-debugpy"].version; v != DebugpyVersion {
		return fmt.Errorf("the Debian root file system at %s has python3-debugpy %q, not the pinned %s: update pyimage.DebugpyVersion, Pythons and the Dockerfile together", rootfs, v, DebugpyVersion)
	}
	return nil
}

// Write writes the Python debugger image as ref to file: the root file
// system without documentation and package lists, debugpy with its links
// resolved at DebugpyDir, and the agent built from repoDir.
func Write(ctx context.Context, repoDir, rootfs, file, ref string) error {
	agent, err := ocitar.BuildGo(ctx, ocitar.GoBuild{Dir: repoDir, Package: "./cmd/kdap-agent", Flags: []string{"-trimpath", "-ldflags=-s -w"}})
	if err != nil {
		return err
	}
	skip := map[string]bool{
		"usr/share/doc": true, "usr/share/man": true, "usr/share/info": true, "usr/share/locale": true,
		"var/cache/apt": true, "var/lib/apt/lists": true, "dev": true, "proc": true, "sys": true,
	}
	files := []ocitar.File{{Path: "/kdap-agent", Mode: 0o755, Data: agent}}
	for _, lib := range runtimes.DebugpyLibs { // for targets without a C++ runtime
		data, err := os.ReadFile(filepath.Join(rootfs, "usr/lib/x86_64-linux-gnu", lib))
		if err != nil {
			return err
		}
		files = append(files, ocitar.File{Path: path.Join(DebugpyDir, "lib", lib), Mode: 0o644, Data: data})
	}
	return ocitar.Write(file, ocitar.Image{
		Ref:   ref,
		Files: files,
		Trees: []ocitar.Tree{
			{Source: rootfs, Dest: "/", Keep: func(rel string) bool { return !skip[rel] }},
			{Source: filepath.Join(rootfs, "usr/lib/python3/dist-packages"), Dest: DebugpyDir, FollowLinks: true, Keep: debugpyFiles},
		},
		Entrypoint: []string{"/kdap-agent"},
		Env: []string{
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			runtimes.DebugpyDirEnv + "=" + DebugpyDir,
			runtimes.DebugpyPythonsEnv + "=" + Pythons,
		},
	})
}

// debugpyFiles selects, in Debian's dist-packages, debugpy (its vendored
// pydevd is links to Debian's pydevd, followed) and what Debian's pydevd
// imports from other packages: bytecode, and typing_extensions for it
// before Python 3.10.
func debugpyFiles(rel string) bool {
	top, _, _ := strings.Cut(rel, "/")
	return (top == "debugpy" || top == "bytecode" || top == "typing_extensions.py") && path.Base(rel) != "__pycache__"
}

// pkg is one installed Debian package.
type pkg struct {
	version string
	depends []string // first alternative of each Depends and Pre-Depends
}

// readStatus parses the installed packages from var/lib/dpkg/status.
func readStatus(rootfs string) (map[string]pkg, error) {
	f, err := os.Open(filepath.Join(rootfs, "var/lib/dpkg/status"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]pkg{}
	var name string
	var cur pkg
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	flush := func() {
		if name != "" {
			out[name] = cur
		}
		name, cur = "", pkg{}
	}
	for sc.Scan() {
		line := sc.Text()
		key, value, _ := strings.Cut(line, ": ")
		switch key {
		case "":
			if line == "" {
				flush()
			}
		case "Package":
			name = value
		case "Version":
			cur.version = value
		case "Depends", "Pre-Depends":
			for _, dep := range strings.Split(value, ",") {
				first, _, _ := strings.Cut(dep, "|")
				first = strings.TrimSpace(first)
				if i := strings.IndexAny(first, " ("); i >= 0 {
					first = first[:i]
				}
				first, _, _ = strings.Cut(first, ":")
				cur.depends = append(cur.depends, first)
			}
		}
	}
	flush()
	return out, sc.Err()
}

// PackageFiles lists the paths (relative, slash-separated, with their
// parent directories) that the Debian packages roots and everything they
// depend on install in rootfs, leaving out the packages in exclude and what
// only they pull in.
func PackageFiles(rootfs string, roots, exclude []string) (map[string]bool, error) {
	pkgs, err := readStatus(rootfs)
	if err != nil {
		return nil, err
	}
	skip := map[string]bool{}
	for _, e := range exclude {
		skip[e] = true
	}
	seen := map[string]bool{}
	queue := append([]string(nil), roots...)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] || skip[p] {
			continue
		}
		if _, ok := pkgs[p]; !ok {
			continue // virtual or not installed
		}
		seen[p] = true
		queue = append(queue, pkgs[p].depends...)
	}
	merged := map[string]bool{}
	for _, top := range []string{"bin", "sbin", "lib", "lib32", "lib64", "libx32"} {
		if fi, err := os.Lstat(filepath.Join(rootfs, top)); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			merged[top] = true
		}
	}
	files := map[string]bool{}
	for p := range seen {
		list := filepath.Join(rootfs, "var/lib/dpkg/info", p+".list")
		if _, err := os.Stat(list); err != nil {
			list = filepath.Join(rootfs, "var/lib/dpkg/info", p+":amd64.list")
		}
		b, err := os.ReadFile(list)
		if err != nil {
			return nil, fmt.Errorf("files of %s: %w", p, err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			l = strings.TrimPrefix(strings.TrimSpace(l), "/")
			if l == "" || l == "." {
				continue
			}
			if top, _, _ := strings.Cut(l, "/"); merged[top] { // merged /usr: lib/x → usr/lib/x
				files[top] = true
				l = "usr/" + l
			}
			for d := l; d != "." && d != "/"; d = path.Dir(d) {
				files[d] = true
			}
		}
	}
	return files, nil
}
