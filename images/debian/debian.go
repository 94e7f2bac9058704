// Package debian makes the Debian root file system kdap's images take
// files from — made once by debootstrap and cached — and tells which files
// installed packages own, so an image can hold just what a program needs
// (no shell, no package manager).
package debian

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

	"github.com/kdap/kdap/internal/lines"
)

// System is a Debian root file system: a release with packages installed
// on debootstrap's minbase.
type System struct {
	Suite    string
	Packages []string
	Check    string // a file (relative) that is there once it is complete
}

// Bookworm is the root file system kdap's images take files from: Python,
// gdb and debugpy; the C and C++ runtime libraries come with them; gunicorn
// for the tests' pre-fork Python service.
// libboost-regex1.74.0 is named because --include does not resolve the
// virtual package gdb's libsource-highlight4v5 depends on.
var Bookworm = System{
	Suite:    "bookworm",
	Packages: []string{"python3", "gdb", "python3-debugpy", "libboost-regex1.74.0", "gunicorn"},
	Check:    "usr/bin/gdb",
}

// Trixie is the root file system of kdap's Python debugger image: gdb 16.
// Bookworm's gdb 13 cannot write a thread's registers on CPUs with AMX
// (Sapphire Rapids and later) under Linux ≥ 5.16 — PTRACE_SETREGSET of the
// XSAVE area fails with "Couldn't write extended state status: Bad
// address" — so every call it makes into a target leaves the target with
// half-restored registers (measured: the target died); gdb 14 learnt the
// AMX state.
var Trixie = System{
	Suite:    "trixie",
	Packages: []string{"gdb"},
	Check:    "usr/bin/gdb",
}

// mirror is the Debian mirror debootstrap fetches from: $KDAP_DEBIAN_MIRROR,
// else Debian's own.
func mirror() string {
	if m := os.Getenv("KDAP_DEBIAN_MIRROR"); m != "" {
		return m
	}
	return "http://deb.debian.org/debian"
}

// Rootfs returns Bookworm's root file system.
func Rootfs(ctx context.Context, log io.Writer) (string, error) { return Bookworm.Rootfs(ctx, log) }

// Rootfs returns the root file system, made by debootstrap (root, Debian's
// debootstrap package and the Debian mirror needed) the first time and
// cached under the user's cache directory. Progress goes to log.
func (s System) Rootfs(ctx context.Context, log io.Writer) (string, error) {
	dir, tmp, err := s.cacheDir("", "")
	if err != nil || tmp == "" {
		return dir, err
	}
	fmt.Fprintf(log, "debian: debootstrap %s with %s into %s (≈ 1–2 min, once)\n", s.Suite, strings.Join(s.Packages, ","), dir)
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "--include="+strings.Join(s.Packages, ","), s.Suite, tmp, mirror())
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("debootstrap %s: %w\n%s", s.Suite, err, lines.Last(string(out), 15))
	}
	if _, err := os.Stat(filepath.Join(tmp, s.Check)); err != nil {
		return "", fmt.Errorf("debootstrap %s did not install %s", s.Suite, s.Check)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return dir, nil
}

// cacheDir is where the root file system (of arch, when it is another
// machine's) is cached, and, when it is not there yet, the temporary
// directory to make it in, once debootstrap and root are known to be there.
func (s System) cacheDir(arch, archName string) (dir, tmp string, err error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", "", err
	}
	name, key := s.Suite+"-", s.Suite+" "+strings.Join(s.Packages, ",")
	if arch != "" {
		name, key = s.Suite+"-"+arch+"-", key+" "+arch
	}
	sum := sha256.Sum256([]byte(key))
	dir = filepath.Join(cache, "kdap", "debian-rootfs", name+hex.EncodeToString(sum[:])[:12])
	if _, err := os.Stat(filepath.Join(dir, s.Check)); err == nil {
		return dir, "", nil
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", "", fmt.Errorf("building kdap's %simages from Debian needs debootstrap: apt-get install debootstrap", archName)
	}
	if os.Geteuid() != 0 {
		return "", "", fmt.Errorf("building kdap's images from Debian runs debootstrap, which needs root")
	}
	tmp = dir + ".tmp"
	os.RemoveAll(tmp)
	return dir, tmp, os.MkdirAll(filepath.Dir(dir), 0o755)
}

// Version is the installed version of package in rootfs ("" if absent).
func Version(rootfs, pkg string) (string, error) {
	pkgs, err := readStatus(rootfs)
	if err != nil {
		return "", err
	}
	return pkgs[pkg].version, nil
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
	for top := range merged { // /lib64/ld-linux-x86-64.so.2 is found through them
		files[top] = true
	}
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
