// Package pyimage writes kdap's Python debugger image — the agent, gdb from
// Debian trixie's root file system (debian.Trixie: a gdb that can write
// registers on every x86 CPU) and debugpy from bookworm's (debian.Bookworm:
// the pinned debugpy, whose attach library needs no newer glibc than
// bookworm's in the target) — as a docker-archive tarball, without a
// container engine. images/python/Dockerfile builds the same image for users
// with a registry.
package pyimage

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/kdap/kdap/images/debian"
	"github.com/kdap/kdap/images/ocitar"
	"github.com/kdap/kdap/runtimes"
)

// The debugpy the image is built from (keep the Dockerfile in step).
const (
	DebugpyVersion = "1.6.6+ds-1"
	// Pythons are the CPython versions that debugpy 1.6.6 supports.
	Pythons = "3.7-3.11"
	// DebugpyDir holds the debugpy package in the image, links resolved.
	DebugpyDir = "/kdap/python"
)

// Write writes the Python debugger image as ref to file: gdbRootfs (gdb's
// root file system) without documentation and package lists, rootfs's
// debugpy with its links resolved at DebugpyDir, and the agent built from
// repoDir.
func Write(ctx context.Context, repoDir, rootfs, gdbRootfs, file, ref string) error {
	return WriteArch(ctx, repoDir, rootfs, gdbRootfs, file, ref, "")
}

// MinGDB is the oldest gdb major version the image may carry (see
// debian.Trixie).
const MinGDB = 14

// Arches are the architectures the image is built for.
var Arches = []string{"amd64", "arm64"}

// WriteArch is Write for arch (a GOARCH; "" for this machine's), from that
// architecture's root file systems (debian.RootfsFor).
func WriteArch(ctx context.Context, repoDir, rootfs, gdbRootfs, file, ref, arch string) error {
	if err := checkDebugpy(rootfs); err != nil {
		return err
	}
	if err := checkGDB(gdbRootfs); err != nil {
		return err
	}
	agent, err := ocitar.BuildGo(ctx, ocitar.GoBuild{Dir: repoDir, Package: "./cmd/kdap-agent", Flags: []string{"-trimpath", "-ldflags=-s -w"}, Arch: arch})
	if err != nil {
		return err
	}
	skip := map[string]bool{
		"usr/share/doc": true, "usr/share/man": true, "usr/share/info": true, "usr/share/locale": true,
		"var/cache/apt": true, "var/lib/apt/lists": true, "dev": true, "proc": true, "sys": true,
		"debootstrap": true, // a foreign root file system's second stage, never run
	}
	files := []ocitar.File{{Path: "/kdap-agent", Mode: 0o755, Data: agent}}
	for _, lib := range runtimes.DebugpyLibs { // for targets without a C++ runtime
		data, err := os.ReadFile(filepath.Join(rootfs, "usr/lib", debian.Triplet(arch), lib))
		if err != nil {
			return err
		}
		files = append(files, ocitar.File{Path: path.Join(DebugpyDir, "lib", lib), Mode: 0o644, Data: data})
	}
	return ocitar.Write(file, ocitar.Image{
		Ref:   ref,
		Arch:  arch,
		Files: files,
		Trees: []ocitar.Tree{
			{Source: gdbRootfs, Dest: "/", Keep: func(rel string) bool { return !skip[rel] }},
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

// checkDebugpy fails if the root file system's debugpy is not the pinned one.
func checkDebugpy(rootfs string) error {
	v, err := debian.Version(rootfs, "python3-debugpy")
	if err != nil {
		return err
	}
	if v != DebugpyVersion {
		return fmt.Errorf("the Debian root file system at %s has python3-debugpy %q, not the pinned %s: update pyimage.DebugpyVersion, Pythons and the Dockerfile together", rootfs, v, DebugpyVersion)
	}
	return nil
}

// checkGDB fails if the gdb root file system's gdb is older than MinGDB.
func checkGDB(rootfs string) error {
	v, err := debian.Version(rootfs, "gdb")
	if err != nil {
		return err
	}
	var major int
	if _, err := fmt.Sscanf(v, "%d", &major); err != nil || major < MinGDB {
		return fmt.Errorf("the Debian root file system at %s has gdb %q; the image needs gdb %d or later (older ones cannot write registers on CPUs with AMX)", rootfs, v, MinGDB)
	}
	return nil
}

// debugpyFiles selects, in Debian's dist-packages, debugpy (its vendored
// pydevd is links to Debian's pydevd, followed) and what Debian's pydevd
// imports from other packages: bytecode, and typing_extensions for it
// before Python 3.10.
func debugpyFiles(rel string) bool {
	top, _, _ := strings.Cut(rel, "/")
	return (top == "debugpy" || top == "bytecode" || top == "typing_extensions.py") && path.Base(rel) != "__pycache__"
}
