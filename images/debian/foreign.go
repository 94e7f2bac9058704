package debian

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/kdap/kdap/internal/lines"
)

// Triplet is Debian's multiarch directory for a GOARCH (usr/lib/TRIPLET);
// "" is this machine's.
func Triplet(arch string) string {
	if arch == "" {
		arch = runtime.GOARCH
	}
	switch arch {
	case "arm64":
		return "aarch64-linux-gnu"
	case "amd64":
		return "x86_64-linux-gnu"
	}
	return arch + "-linux-gnu"
}

// RootfsFor is Rootfs for the architecture arch (a GOARCH). For this
// machine's it is Rootfs; for another one debootstrap --foreign downloads
// the packages and unpacks the base system without running anything, and
// kdap unpacks every package over it and records each in var/lib/dpkg
// (status and file list) as dpkg would, so PackageFiles and Version work
// on it. Nothing is configured — no maintainer script runs — which is all
// an image that takes files from it needs. Cached like Rootfs.
func (s System) RootfsFor(ctx context.Context, arch string, log io.Writer) (string, error) {
	if arch == "" || arch == runtime.GOARCH {
		return s.Rootfs(ctx, log)
	}
	dir, tmp, err := s.cacheDir(arch, arch+" ")
	if err != nil || tmp == "" {
		return dir, err
	}
	fmt.Fprintf(log, "debian: debootstrap --foreign --arch %s %s with %s into %s (≈ 1 min, once)\n", arch, s.Suite, strings.Join(s.Packages, ","), dir)
	cmd := exec.CommandContext(ctx, "debootstrap", "--foreign", "--arch="+arch, "--variant=minbase", "--include="+strings.Join(s.Packages, ","), s.Suite, tmp, mirror())
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("debootstrap --foreign --arch %s %s: %w\n%s", arch, s.Suite, err, lines.Last(string(out), 15))
	}
	debs, err := filepath.Glob(filepath.Join(tmp, "var/cache/apt/archives/*.deb"))
	if err != nil || len(debs) == 0 {
		return "", fmt.Errorf("debootstrap --foreign left no packages in %s (%v)", tmp, err)
	}
	if err := os.MkdirAll(filepath.Join(tmp, "var/lib/dpkg/info"), 0o755); err != nil {
		return "", err
	}
	var status bytes.Buffer
	for _, deb := range debs {
		control, err := unpack(ctx, deb, tmp)
		if err != nil {
			return "", fmt.Errorf("%s: %w", filepath.Base(deb), err)
		}
		status.WriteString(strings.TrimRight(control, "\n") + "\nStatus: install ok installed\n\n")
	}
	if err := os.WriteFile(filepath.Join(tmp, "var/lib/dpkg/status"), status.Bytes(), 0o644); err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(tmp, s.Check)); err != nil {
		return "", fmt.Errorf("the %s packages hold no %s", arch, s.Check)
	}
	return dir, os.Rename(tmp, dir)
}

// unpack unpacks a .deb's files into root (following root's merged-/usr
// links, as dpkg does), writes its file list to var/lib/dpkg/info/NAME.list
// and returns its control fields.
func unpack(ctx context.Context, deb, root string) (string, error) {
	control, err := exec.CommandContext(ctx, "dpkg-deb", "-f", deb).Output()
	if err != nil {
		return "", fmt.Errorf("dpkg-deb -f: %w", err)
	}
	var name string
	for _, l := range strings.Split(string(control), "\n") {
		if v, ok := strings.CutPrefix(l, "Package: "); ok {
			name = strings.TrimSpace(v)
		}
	}
	if name == "" {
		return "", errors.New("no Package field")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // on an error, dpkg-deb is not left writing to nobody
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", deb)
	data, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	fsys, err := os.OpenRoot(root) // nothing is written outside root, whatever its links say
	if err != nil {
		cancel()
		cmd.Wait()
		return "", err
	}
	defer fsys.Close()
	list := []string{"/."}
	tr := tar.NewReader(data)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			cancel()
			cmd.Wait()
			return "", err
		}
		rel := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if rel == "." || strings.HasPrefix(rel, "../") || throughAbsoluteLink(fsys, rel) {
			continue // var/run/… under var/run → /run: the host's, not the image's
		}
		list = append(list, "/"+rel)
		switch h.Typeflag {
		case tar.TypeDir:
			if target, lerr := fsys.Readlink(rel); lerr == nil && path.IsAbs(target) {
				fsys.Remove(rel) // debootstrap's proc → /proc, for a second stage that never runs
			}
			err = fsys.MkdirAll(rel, 0o755) // an existing merged-/usr link stays
		case tar.TypeSymlink:
			fsys.Remove(rel)
			err = fsys.Symlink(h.Linkname, rel)
		case tar.TypeLink:
			fsys.Remove(rel)
			err = fsys.Link(path.Clean(strings.TrimPrefix(h.Linkname, "./")), rel)
		case tar.TypeReg:
			var f *os.File
			fsys.Remove(rel)
			if f, err = fsys.OpenFile(rel, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode).Perm()); err == nil {
				_, err = io.Copy(f, tr)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
		}
		if err != nil {
			cancel()
			cmd.Wait()
			return "", fmt.Errorf("%s: %w", rel, err)
		}
	}
	if err := cmd.Wait(); err != nil {
		return "", fmt.Errorf("dpkg-deb --fsys-tarfile: %w", err)
	}
	return string(control), os.WriteFile(filepath.Join(root, "var/lib/dpkg/info", name+".list"), []byte(strings.Join(list, "\n")+"\n"), 0o644)
}

// throughAbsoluteLink reports whether a parent directory of rel in fsys is
// a symbolic link to an absolute path, which a file system of another
// machine cannot follow.
func throughAbsoluteLink(fsys *os.Root, rel string) bool {
	for d := path.Dir(rel); d != "." && d != "/"; d = path.Dir(d) {
		if target, err := fsys.Readlink(d); err == nil && path.IsAbs(target) {
			return true
		}
	}
	return false
}
