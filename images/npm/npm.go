// Package npm fetches packages from the npm registry for kdap's images —
// pinned by version and integrity, with `npm pack` so the user's registry
// and proxy settings apply — and caches them unpacked.
package npm

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
)

// Package is an npm package pinned by version and integrity (the
// registry's sha512, as package-lock.json records it).
type Package struct {
	Name, Version, Integrity string
}

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
	fmt.Fprintf(log, "npm: npm pack %s@%s (once)\n", pkg.Name, pkg.Version)
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
