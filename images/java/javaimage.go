// Package javaimage writes kdap's Java debugger image — the agent, kdap's
// Java debug server (server/: Microsoft's java-debug core behind a small
// DAP front end, without Eclipse JDT) and a Java runtime trimmed by jlink
// to what the server needs — as a docker-archive tarball, without a
// container engine. It is built with the machine's JDK 17 (Debian's
// openjdk-17-jdk-headless: javac and jlink) and libraries: java-debug core
// and three of its dependencies come from the npm registry (the only
// place that carries them), Gson and Commons Lang from Debian
// (libgoogle-gson-java, libcommons-lang3-java). images/java/Dockerfile
// builds the same image for users.
package javaimage

import (
	"archive/zip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"

	"github.com/kdap/kdap/images/debian"
	"github.com/kdap/kdap/images/npm"
	"github.com/kdap/kdap/images/ocitar"
	"github.com/kdap/kdap/runtimes"
)

// DebugCarrier is the npm package that carries java-debug 0.51.0 (EPL 1.0)
// as the Eclipse plugin com.microsoft.java.debug.plugin-0.51.0.jar, whose
// lib/ holds java-debug core, RxJava, Reactive Streams and Commons IO.
var DebugCarrier = npm.Package{Name: "coc-java-debug", Version: "1.0.0",
	Integrity: "sha512-qUA1pJwy0248o9cO1YLnLm7E11q0QeRs83dMFQPEzyz0vIvV/YF6oj6Ad0aMM8J0uomquGo93kBltFvwIbVzvw=="}

// JavaDebugVersion is the java-debug release DebugCarrier holds.
const JavaDebugVersion = "0.51.0"

const pluginJar = "package/server/com.microsoft.java.debug.plugin-0.51.0.jar"

// carriedJars are the jars taken from the plugin's lib/ (it also holds
// older versions of each).
var carriedJars = []string{"com.microsoft.java.debug.core-0.51.0.jar", "rxjava-2.2.21.jar", "reactive-streams-1.0.4.jar", "commons-io-2.11.0.jar"}

// JDK is the JDK the image is built with, and debianJars the Debian
// libraries it takes (Debian's own packages, on this machine).
var (
	JDK        = "/usr/lib/jvm/java-17-openjdk-amd64"
	debianJars = map[string]string{ // jar → Debian package
		"/usr/share/java/gson.jar":          "libgoogle-gson-java",
		"/usr/share/java/commons-lang3.jar": "libcommons-lang3-java",
	}
)

// Modules are the Java modules of the trimmed runtime: the debug server
// needs JDI and logging; jdeps also names java.desktop and java.sql, for
// parts of Commons Lang and Gson the server does not use.
var Modules = []string{"java.base", "java.logging", "jdk.jdi", "jdk.unsupported"}

// Paths in the image (runtimes.JavaBinDefault and JavaDebugCPDefault point
// here).
const (
	JREDir = "/kdap/jre"
	LibDir = "/kdap/java-debug"
)

// Libraries are the Debian packages whose files the runtime needs (Debian's
// libjvm links the C++ runtime).
var Libraries = []string{"libc6", "zlib1g", "libstdc++6", "libgcc-s1"}

// Build compiles the debug server and makes the runtime in workDir, and
// returns the runtime's directory and the server's class path directory.
func Build(ctx context.Context, repoDir, workDir string, log io.Writer) (jre, lib string, err error) {
	return BuildFrom(ctx, repoDir, workDir, "", log)
}

// BuildFrom is Build with the runtime linked from the JDK modules in jmods
// ("": the machine's JDK's): another architecture's JDK 17 modules make that
// architecture's runtime (jlink links across platforms).
func BuildFrom(ctx context.Context, repoDir, workDir, jmods string, log io.Writer) (jre, lib string, err error) {
	for _, tool := range []string{"javac", "jlink"} {
		if _, err := os.Stat(filepath.Join(JDK, "bin", tool)); err != nil {
			return "", "", fmt.Errorf("building the Java debugger image needs a JDK 17 at %s (%s): apt-get install openjdk-17-jdk-headless", JDK, tool)
		}
	}
	lib = filepath.Join(workDir, "lib")
	os.RemoveAll(workDir)
	if err := os.MkdirAll(lib, 0o755); err != nil {
		return "", "", err
	}
	carrier, err := npm.Fetch(ctx, DebugCarrier, log)
	if err != nil {
		return "", "", err
	}
	if err := extractLibs(filepath.Join(carrier, pluginJar), lib); err != nil {
		return "", "", fmt.Errorf("java-debug from %s@%s: %w", DebugCarrier.Name, DebugCarrier.Version, err)
	}
	for jar, pkg := range debianJars {
		b, err := os.ReadFile(jar)
		if err != nil {
			return "", "", fmt.Errorf("the Java debug server needs %s: apt-get install %s", jar, pkg)
		}
		if err := os.WriteFile(filepath.Join(lib, filepath.Base(jar)), b, 0o644); err != nil {
			return "", "", err
		}
	}
	classes := filepath.Join(workDir, "classes")
	srcs, err := filepath.Glob(filepath.Join(repoDir, "images", "java", "server", "src", "kdap", "javadebug", "*.java"))
	if err != nil || len(srcs) == 0 {
		return "", "", fmt.Errorf("no debug server sources in images/java/server/src")
	}
	javac := append([]string{"--release", "17", "-g", "-Xlint:-options", "-d", classes, "-cp", filepath.Join(lib, "*")}, srcs...)
	if err := run(ctx, filepath.Join(JDK, "bin", "javac"), javac...); err != nil {
		return "", "", err
	}
	if err := writeJar(classes, filepath.Join(lib, "kdap-java-debug.jar")); err != nil {
		return "", "", err
	}
	jre = filepath.Join(workDir, "jre")
	args := []string{"--add-modules", strings.Join(Modules, ","), "--strip-debug", "--no-man-pages", "--no-header-files", "--compress=2", "--output", jre}
	if jmods != "" {
		args = append([]string{"--module-path", jmods}, args...)
	}
	err = run(ctx, filepath.Join(JDK, "bin", "jlink"), args...)
	return jre, lib, err
}

func run(ctx context.Context, name string, args ...string) error {
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w\n%s", filepath.Base(name), err, out)
	}
	return nil
}

// extractLibs copies carriedJars from the plugin jar's lib/ into dir.
func extractLibs(plugin, dir string) error {
	zr, err := zip.OpenReader(plugin)
	if err != nil {
		return err
	}
	defer zr.Close()
	n := 0
	for _, f := range zr.File {
		if path.Dir(f.Name) != "lib" || !slices.Contains(carriedJars, path.Base(f.Name)) {
			continue
		}
		r, err := f.Open()
		if err != nil {
			return err
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, path.Base(f.Name)), b, 0o644); err != nil {
			return err
		}
		n++
	}
	if n != len(carriedJars) {
		return fmt.Errorf("%s does not hold all of lib/{%s}", plugin, strings.Join(carriedJars, ","))
	}
	return nil
}

// writeJar writes the classes under dir as a jar (a zip; no manifest is
// needed on a class path).
func writeJar(dir, jar string) error {
	var files []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	})
	sort.Strings(files)
	out, err := os.Create(jar)
	if err != nil {
		return err
	}
	zw := zip.NewWriter(out)
	for _, f := range files {
		rel, _ := filepath.Rel(dir, f)
		w, err := zw.Create(filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		w.Write(b)
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return out.Close()
}

// Write writes the Java debugger image as ref to file: the agent built from
// repoDir, the runtime and the debug server (Build, in workDir), and from
// the Debian root file system the C libraries the runtime needs and a /tmp.
func Write(ctx context.Context, repoDir, rootfs, workDir, file, ref string, log io.Writer) error {
	return WriteArch(ctx, repoDir, rootfs, workDir, file, ref, "", log)
}

// Arches are the architectures the image is built for.
var Arches = []string{"amd64", "arm64"}

// ForeignJDK is the Debian system whose JDK 17 modules link the runtime of
// another architecture (debian.RootfsFor), and whose files the image then
// takes.
var ForeignJDK = debian.System{Suite: "bookworm", Packages: []string{"openjdk-17-jdk-headless"}, Check: "usr/lib/jvm"}

// WriteArch is Write for arch (a GOARCH; "" for this machine's). For
// another architecture, rootfs is ForeignJDK's for it: the runtime is
// linked from its JDK's modules, the libraries taken from it.
func WriteArch(ctx context.Context, repoDir, rootfs, workDir, file, ref, arch string, log io.Writer) error {
	jmods := ""
	if arch != "" && arch != runtime.GOARCH {
		jmods = filepath.Join(rootfs, "usr/lib/jvm/java-17-openjdk-"+arch, "jmods")
		if _, err := os.Stat(filepath.Join(jmods, "java.base.jmod")); err != nil {
			return fmt.Errorf("no JDK 17 modules for %s at %s: rootfs must be javaimage.ForeignJDK's for %s", arch, jmods, arch)
		}
	}
	jre, lib, err := BuildFrom(ctx, repoDir, workDir, jmods, log)
	if err != nil {
		return err
	}
	agent, err := ocitar.BuildGo(ctx, ocitar.GoBuild{Dir: repoDir, Package: "./cmd/kdap-agent", Flags: []string{"-trimpath", "-ldflags=-s -w"}, Arch: arch})
	if err != nil {
		return err
	}
	libs, err := debian.PackageFiles(rootfs, Libraries, nil)
	if err != nil {
		return err
	}
	libs["tmp"] = true
	return ocitar.Write(file, ocitar.Image{
		Ref:   ref,
		Arch:  arch,
		Files: []ocitar.File{{Path: "/kdap-agent", Mode: 0o755, Data: agent}},
		Trees: []ocitar.Tree{
			{Source: rootfs, Dest: "/", Keep: func(rel string) bool { return libs[rel] && !strings.HasPrefix(rel, "usr/share") }},
			{Source: jre, Dest: JREDir, Keep: func(string) bool { return true }},
			{Source: lib, Dest: LibDir, Keep: func(string) bool { return true }},
		},
		Entrypoint: []string{"/kdap-agent"},
		Env: []string{
			runtimes.JavaBinEnv + "=" + JREDir + "/bin/java",
			runtimes.JavaDebugCPEnv + "=" + LibDir + "/*",
		},
	})
}
