// Package pyimage writes kdap's Python debugger image — the agent, gdb from
// Debian trixie's root file system (debian.Trixie: a gdb that can write
// registers on every x86 CPU) and debugpy from bookworm's (debian.Bookworm:
// the pinned debugpy, whose attach library needs no newer glibc than
// bookworm's in the target) — as a docker-archive tarball, without a
// container engine. images/python/Dockerfile builds the same image for users
// with a registry.
package pyimage

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
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
	dist := filepath.Join(rootfs, "usr/lib/python3/dist-packages")
	pycs, err := precompiled(dist)
	if err != nil {
		return err
	}
	files = append(files, pycs...)
	inits, err := namespaceFiles(dist)
	if err != nil {
		return err
	}
	files = append(files, inits...)
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

// precompiled is the bytecode Debian compiled for the debugpy files the
// image keeps (debugpyFiles; CPython 3.11's, written by bookworm's
// postinst), as image files under DebugpyDir, each retimed to the image's
// timestamp of its source (see retimed). The agent copies the sources with
// their times, so a 3.11 target imports these rather than compiling ≈ 180
// modules on its first attach (measured: debugpy's start in a 3.11
// interpreter 533 → 300 ms). A root
// file system whose postinst never ran (a foreign architecture's) has
// none, and its targets compile as before.
func precompiled(distPackages string) ([]ocitar.File, error) {
	var files []ocitar.File
	var walk func(dir, rel string) error
	walk = func(dir, rel string) error {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			r, p := path.Join(rel, e.Name()), filepath.Join(dir, e.Name())
			info, err := os.Stat(p) // follows links, as the image's tree does
			if err != nil {
				return err
			}
			switch {
			case info.IsDir() && e.Name() == "__pycache__" && debugpyFiles(rel):
				pycs, err := retimedDir(p, r)
				if err != nil {
					return err
				}
				files = append(files, pycs...)
			case info.IsDir() && debugpyFiles(r):
				if err := walk(p, r); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return files, walk(distPackages, "")
}

// retimedDir is the pycs in cache (rel in the image's tree) that match
// their sources, retimed.
func retimedDir(cache, rel string) ([]ocitar.File, error) {
	entries, err := os.ReadDir(cache)
	if err != nil {
		return nil, err
	}
	var files []ocitar.File
	for _, e := range entries {
		module, _, ok := strings.Cut(e.Name(), ".")
		if !ok || !strings.HasSuffix(e.Name(), ".pyc") {
			continue
		}
		src, err := os.Stat(filepath.Join(filepath.Dir(cache), module+".py"))
		if err != nil || !debugpyFiles(path.Join(path.Dir(rel), module+".py")) {
			continue // a pyc without its source (as the image has it) is never imported from here
		}
		pyc, err := os.ReadFile(filepath.Join(cache, e.Name()))
		if err != nil {
			return nil, err
		}
		if pyc, ok := retimed(pyc, src.ModTime().Unix(), src.Size()); ok {
			files = append(files, ocitar.File{Path: path.Join(DebugpyDir, rel, e.Name()), Mode: 0o644, Data: pyc})
		}
	}
	return files, nil
}

// retimed is pyc with its source timestamp set to 0, the time of every
// file in the image, if pyc is a timestamp-checked pyc (PEP 552 flags 0)
// of a source of this mtime and size; ok is false otherwise. The header is
// magic, flags, the source's mtime and its size, 4 bytes each, little
// endian; CPython uses the pyc when mtime and size match the source's.
func retimed(pyc []byte, mtime, size int64) ([]byte, bool) {
	if len(pyc) < 16 || binary.LittleEndian.Uint32(pyc[4:]) != 0 ||
		binary.LittleEndian.Uint32(pyc[8:]) != uint32(mtime) || binary.LittleEndian.Uint32(pyc[12:]) != uint32(size) {
		return nil, false
	}
	out := bytes.Clone(pyc)
	binary.LittleEndian.PutUint32(out[8:], 0)
	return out, true
}

// namespaceInits are the __init__.py of pydevd's plugin namespace packages
// (under the image's debugpy tree). Each imports setuptools' pkg_resources
// to declare the namespace where the target has setuptools — ≈ 90 ms of
// the first attach in the target (measured with its bytecode; more
// without) — and falls back to pkgutil where it has not. The image's
// copies are that fallback alone (pkgutilNamespace): a plugin installed
// as a package of its own is found the same way.
var namespaceInits = []string{
	"debugpy/_vendored/pydevd/pydevd_plugins/__init__.py",
	"debugpy/_vendored/pydevd/pydevd_plugins/extensions/__init__.py",
	"debugpy/_vendored/pydevd/pydevd_plugins/extensions/types/__init__.py",
}

// pkgutilNamespace is what the image has for each of namespaceInits
// (keep the Dockerfile in step).
const pkgutilNamespace = "import pkgutil\n__path__ = pkgutil.extend_path(__path__, __name__)\n"

// namespaceFiles is namespaceInits as the image has them, once each is
// checked to be the pkg_resources declaration it replaces.
func namespaceFiles(distPackages string) ([]ocitar.File, error) {
	var files []ocitar.File
	for _, rel := range namespaceInits {
		b, err := os.ReadFile(filepath.Join(distPackages, rel))
		if err != nil {
			return nil, err
		}
		if !bytes.Contains(b, []byte("declare_namespace(__name__)")) || !bytes.Contains(b, []byte("pkgutil.extend_path(__path__, __name__)")) {
			return nil, fmt.Errorf("%s is not the namespace declaration the image replaces: review pyimage.namespaceInits for python3-debugpy %s", rel, DebugpyVersion)
		}
		files = append(files, ocitar.File{Path: path.Join(DebugpyDir, rel), Mode: 0o644, Data: []byte(pkgutilNamespace)})
	}
	return files, nil
}

// debugpyFiles selects, in Debian's dist-packages, debugpy (its vendored
// pydevd is links to Debian's pydevd, followed) and what Debian's pydevd
// imports from other packages: bytecode, and typing_extensions for it
// before Python 3.10; not namespaceInits, which the image has its own of.
func debugpyFiles(rel string) bool {
	top, _, _ := strings.Cut(rel, "/")
	return (top == "debugpy" || top == "bytecode" || top == "typing_extensions.py") && path.Base(rel) != "__pycache__" && !slices.Contains(namespaceInits, rel)
}
