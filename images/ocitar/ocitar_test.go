package ocitar

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestWriteReadsBackAsTheSameImage(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "img.tar")
	img := Image{
		Ref:        "kdap.test/example:1",
		Files:      []File{{Path: "/bin/app", Mode: 0o755, Data: []byte("binary")}, {Path: "/etc/app.conf", Mode: 0o644, Data: []byte("x=1")}},
		Entrypoint: []string{"/bin/app", "--flag"},
		Env:        []string{"A=b"},
		User:       "65532:65532",
		WorkingDir: "/",
	}
	if err := Write(file, img); err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(img.Ref)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tarball.ImageFromPath(file, &tag)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	cf, err := got.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture == "" {
		t.Errorf("platform %s/%s, want linux/GOARCH", cf.OS, cf.Architecture)
	}
	if diff := cmp.Diff(img.Entrypoint, cf.Config.Entrypoint); diff != "" {
		t.Errorf("entrypoint (-want +got):\n%s", diff)
	}
	if cf.Config.User != img.User || cf.Config.WorkingDir != "/" || !cmp.Equal(cf.Config.Env, img.Env) {
		t.Errorf("config = %+v", cf.Config)
	}
	layers, err := got.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d, %v; want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	type entry struct {
		Name string
		Mode int64
		Data string
	}
	var entries []entry
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		entries = append(entries, entry{hdr.Name, hdr.Mode, string(data)})
	}
	want := []entry{
		{"bin/", 0o755, ""}, {"etc/", 0o755, ""},
		{"bin/app", 0o755, "binary"}, {"etc/app.conf", 0o644, "x=1"},
	}
	if diff := cmp.Diff(want, entries); diff != "" {
		t.Errorf("layer entries (-want +got):\n%s", diff)
	}
}

func TestWriteIsReproducible(t *testing.T) {
	dir := t.TempDir()
	img := Image{Ref: "kdap.test/r:1", Files: []File{{Path: "/a/b/c", Mode: 0o600, Data: []byte("c")}, {Path: "/a/z", Mode: 0o600}}}
	var tars [2][]byte
	for i := range tars {
		file := filepath.Join(dir, "t.tar")
		if err := Write(file, img); err != nil {
			t.Fatal(err)
		}
		tars[i], _ = os.ReadFile(file)
	}
	if !bytes.Equal(tars[0], tars[1]) {
		t.Error("two writes of the same image differ")
	}
}

func TestWriteRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		img  Image
	}{
		{"relative path", Image{Ref: "kdap.test/x:1", Files: []File{{Path: "app"}}}},
		{"bad reference", Image{Ref: "Not A Ref"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, "x.tar")
			if err := Write(file, tc.img); err == nil {
				t.Error("Write succeeded")
			}
			if _, err := os.Stat(file); err == nil {
				t.Error("a tarball was left behind")
			}
		})
	}
}
