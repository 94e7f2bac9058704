// Package ocitar writes container images as docker-archive tarballs without a
// container engine or registry: a few files (usually one static binary) and
// directory trees of this machine (a debootstrapped root file system) become
// a single-layer image that `ctr images import` or `docker load` accept.
package ocitar

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// File is one regular file of an image's only layer.
type File struct {
	Path string // absolute path inside the image, e.g. /app
	Mode int64  // permission bits, e.g. 0o755
	Data []byte
}

// Dir is an empty directory of an image's only layer.
type Dir struct {
	Path string // absolute path inside the image, e.g. /tmp
	Mode int64  // permission bits, e.g. 0o1777
}

// Tree is a directory of this machine copied into the layer, streamed from
// disk: regular files, directories and symbolic links (devices, sockets and
// pipes are left out); owners become root.
type Tree struct {
	Source string // directory on this machine
	Dest   string // where it goes in the image, e.g. / or /kdap/python
	// Keep selects entries by their slash-separated path relative to
	// Source; a directory not kept is skipped whole. Nil keeps everything.
	Keep func(rel string) bool
	// FollowLinks copies what symbolic links point to instead of the links.
	FollowLinks bool
	// KeepTimes keeps each entry's modification time instead of the epoch,
	// as an image built by a container engine does (a pyc is valid only
	// for its source's time).
	KeepTimes bool
}

// Image describes an image built from files and trees (no base image).
type Image struct {
	Ref        string // e.g. kdap.test/pause:1
	Files      []File
	Dirs       []Dir
	Trees      []Tree
	Entrypoint []string
	Env        []string
	User       string // uid[:gid]; empty means root
	WorkingDir string
	Arch       string // GOARCH its binaries are built for; empty: this machine's
}

// epoch is the timestamp of every layer entry, so the same files always give
// the same layer digest.
var epoch = time.Unix(0, 0).UTC()

// Write writes img as a docker-archive tarball to file, atomically.
func Write(file string, img Image) error {
	ref, err := name.ParseReference(img.Ref)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", img.Ref, err)
	}
	image, layerFile, err := Build(filepath.Dir(file), img)
	if err != nil {
		return err
	}
	defer os.Remove(layerFile)
	tmp := file + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, image); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", file, err)
	}
	return os.Rename(tmp, file)
}

// Build makes img as an image whose one layer is read from layerFile,
// written in dir; the caller removes layerFile once done with the image
// (written to a tarball, pushed to a registry).
func Build(dir string, img Image) (image v1.Image, layerFile string, err error) {
	f, err := os.CreateTemp(dir, ".layer-*.tar")
	if err != nil {
		return nil, "", err
	}
	defer func() {
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	err = writeLayer(f, img)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, "", fmt.Errorf("layer of %s: %w", img.Ref, err)
	}
	layer, err := tarball.LayerFromFile(f.Name(), tarball.WithCompressionLevel(gzip.BestSpeed))
	if err != nil {
		return nil, "", fmt.Errorf("layer of %s: %w", img.Ref, err)
	}
	image, err = mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, "", err
	}
	cf, err := image.ConfigFile()
	if err != nil {
		return nil, "", err
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = img.Arch
	if cf.Architecture == "" {
		cf.Architecture = runtime.GOARCH
	}
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Entrypoint = img.Entrypoint
	cf.Config.Env = img.Env
	cf.Config.User = img.User
	cf.Config.WorkingDir = img.WorkingDir
	image, err = mutate.ConfigFile(image, cf)
	return image, f.Name(), err
}

// writeLayer writes the uncompressed layer: every parent directory of every
// file (mode 0755), then the files in a stable order, then the trees.
func writeLayer(w io.Writer, img Image) error {
	dirs := map[string]bool{}
	for _, f := range img.Files {
		if !path.IsAbs(f.Path) {
			return fmt.Errorf("image file path %q is not absolute", f.Path)
		}
		for d := path.Dir(f.Path); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	sortedDirs := make([]string, 0, len(dirs))
	for d := range dirs {
		sortedDirs = append(sortedDirs, d)
	}
	sort.Strings(sortedDirs)
	sorted := append([]File(nil), img.Files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })

	tw := tar.NewWriter(w)
	for _, d := range sortedDirs {
		hdr := &tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, ModTime: epoch}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
	}
	for _, d := range img.Dirs {
		if !path.IsAbs(d.Path) || dirs[d.Path] {
			return fmt.Errorf("image directory %q is not absolute or holds files", d.Path)
		}
		hdr := &tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d.Path, "/") + "/", Mode: d.Mode, ModTime: epoch}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
	}
	for _, f := range sorted {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.Path, "/"), Mode: f.Mode, Size: int64(len(f.Data)), ModTime: epoch}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return err
		}
	}
	for _, t := range img.Trees {
		if err := writeTree(tw, t, t.Source, ""); err != nil {
			return fmt.Errorf("%s: %w", t.Source, err)
		}
	}
	return tw.Close()
}

// writeTree writes the entries under dir (rel from t.Source), sorted by name.
func writeTree(tw *tar.Writer, t Tree, dir, rel string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		r := path.Join(rel, e.Name())
		if t.Keep != nil && !t.Keep(r) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		stat := os.Lstat
		if t.FollowLinks {
			stat = os.Stat
		}
		info, err := stat(p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(path.Join(t.Dest, r), "/")
		hdr := &tar.Header{Name: name, Mode: int64(info.Mode().Perm()), ModTime: epoch}
		if t.KeepTimes {
			hdr.ModTime = info.ModTime().UTC().Truncate(time.Second)
		}
		if info.Mode()&os.ModeSticky != 0 {
			hdr.Mode |= 0o1000
		}
		switch {
		case info.IsDir():
			hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if err := writeTree(tw, t, p, r); err != nil {
				return err
			}
		case info.Mode()&os.ModeSymlink != 0:
			if hdr.Linkname, err = os.Readlink(p); err != nil {
				return err
			}
			hdr.Typeflag = tar.TypeSymlink
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
		case info.Mode().IsRegular():
			hdr.Typeflag, hdr.Size = tar.TypeReg, info.Size()
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// GoBuild describes a static build of one Go main package.
type GoBuild struct {
	Dir     string   // directory to run the build in (inside the package's module)
	Package string   // import path or ./relative path of the main package
	Flags   []string // extra `go build` flags, e.g. -gcflags=all=-N -l
	Arch    string   // GOARCH; empty: this machine's
}

// BuildGo builds a static (CGO_ENABLED=0) Linux binary and returns its bytes.
func BuildGo(ctx context.Context, b GoBuild) ([]byte, error) {
	out, err := os.MkdirTemp("", "ocitar-build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(out)
	bin := filepath.Join(out, "bin")
	args := append([]string{"build", "-o", bin}, b.Flags...)
	args = append(args, b.Package)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = b.Dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b.Arch != "" {
		cmd.Env = append(cmd.Env, "GOARCH="+b.Arch)
	}
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s: %w\n%s", b.Package, err, msg)
	}
	return os.ReadFile(bin)
}
