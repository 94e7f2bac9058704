// Package ocitar writes container images as docker-archive tarballs without a
// container engine or registry: a few files (usually one static binary) become
// a single-layer image that `ctr images import` or `docker load` accept.
package ocitar

import (
	"archive/tar"
	"bytes"
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

// Image describes an image built from files alone (no base image).
type Image struct {
	Ref        string // e.g. kdap.test/pause:1
	Files      []File
	Entrypoint []string
	Env        []string
	User       string // uid[:gid]; empty means root
	WorkingDir string
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
	layerTar, err := layerTarball(img.Files)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return fmt.Errorf("layer of %s: %w", img.Ref, err)
	}
	image, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cf, err := image.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = runtime.GOARCH
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Entrypoint = img.Entrypoint
	cf.Config.Env = img.Env
	cf.Config.User = img.User
	cf.Config.WorkingDir = img.WorkingDir
	image, err = mutate.ConfigFile(image, cf)
	if err != nil {
		return err
	}
	tmp := file + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, image); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", file, err)
	}
	return os.Rename(tmp, file)
}

// layerTarball returns the uncompressed layer: every parent directory of
// every file (mode 0755), then the files, in a stable order.
func layerTarball(files []File) ([]byte, error) {
	dirs := map[string]bool{}
	for _, f := range files {
		if !path.IsAbs(f.Path) {
			return nil, fmt.Errorf("image file path %q is not absolute", f.Path)
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
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range sortedDirs {
		hdr := &tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, ModTime: epoch}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
	}
	for _, f := range sorted {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.Path, "/"), Mode: f.Mode, Size: int64(len(f.Data)), ModTime: epoch}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// GoBuild describes a static build of one Go main package.
type GoBuild struct {
	Dir     string   // directory to run the build in (inside the package's module)
	Package string   // import path or ./relative path of the main package
	Flags   []string // extra `go build` flags, e.g. -gcflags=all=-N -l
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
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s: %w\n%s", b.Package, err, msg)
	}
	return os.ReadFile(bin)
}
