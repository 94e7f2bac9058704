package ocitar

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

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
		Dirs:       []Dir{{Path: "/tmp", Mode: 0o1777}},
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
	entries := layerEntries(t, file, img.Ref)
	want := []entry{
		{Name: "bin/", Mode: 0o755}, {Name: "etc/", Mode: 0o755},
		{Name: "tmp/", Mode: 0o1777},
		{Name: "bin/app", Mode: 0o755, Data: "binary"}, {Name: "etc/app.conf", Mode: 0o644, Data: "x=1"},
	}
	if diff := cmp.Diff(want, entries); diff != "" {
		t.Errorf("layer entries (-want +got):\n%s", diff)
	}
}

type entry struct {
	Name string
	Mode int64
	Data string
	Link string
	Time int64 // modification time, Unix seconds (the epoch: 0)
}

// layerEntries reads the only layer of the image in file.
func layerEntries(t *testing.T, file, ref string) []entry {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(file, &tag)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d, %v; want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
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
		entries = append(entries, entry{hdr.Name, hdr.Mode, string(data), hdr.Linkname, hdr.ModTime.Unix()})
	}
	return entries
}

// TestWriteTrees streams directories of this machine into the layer: a
// kept subset with its symlinks, and a tree whose links are followed.
func TestWriteTrees(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "usr/bin"), 0o755)
	os.MkdirAll(filepath.Join(src, "usr/share/doc"), 0o755)
	os.MkdirAll(filepath.Join(src, "tmp"), 0o755)
	os.Chmod(filepath.Join(src, "tmp"), 0o777|os.ModeSticky)
	os.WriteFile(filepath.Join(src, "usr/bin/tool"), []byte("elf"), 0o755)
	os.WriteFile(filepath.Join(src, "usr/share/doc/README"), []byte("docs"), 0o644)
	os.Symlink("usr/bin", filepath.Join(src, "bin"))
	file := filepath.Join(t.TempDir(), "img.tar")
	img := Image{Ref: "kdap.test/trees:1", Trees: []Tree{
		{Source: src, Dest: "/", Keep: func(rel string) bool { return rel != "usr/share/doc" }},
		{Source: filepath.Join(src, "bin"), Dest: "/opt/tools", FollowLinks: true},
	}}
	if err := Write(file, img); err != nil {
		t.Fatal(err)
	}
	want := []entry{
		{Name: "bin", Mode: 0o777, Link: "usr/bin"},
		{Name: "tmp/", Mode: 0o1777},
		{Name: "usr/", Mode: 0o755}, {Name: "usr/bin/", Mode: 0o755}, {Name: "usr/bin/tool", Mode: 0o755, Data: "elf"},
		{Name: "usr/share/", Mode: 0o755},
		{Name: "opt/tools/tool", Mode: 0o755, Data: "elf"},
	}
	if diff := cmp.Diff(want, layerEntries(t, file, img.Ref)); diff != "" {
		t.Errorf("layer entries (-want +got):\n%s", diff)
	}
}

// TestWriteKeepTimes: a tree keeps its files' times only when asked.
func TestWriteKeepTimes(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "m.py"), []byte("x"), 0o644)
	when := time.Unix(1676100000, 0)
	os.Chtimes(filepath.Join(src, "m.py"), when, when)
	file := filepath.Join(t.TempDir(), "img.tar")
	img := Image{Ref: "kdap.test/times:1", Trees: []Tree{
		{Source: src, Dest: "/kept", KeepTimes: true},
		{Source: src, Dest: "/epoch"},
	}}
	if err := Write(file, img); err != nil {
		t.Fatal(err)
	}
	want := []entry{
		{Name: "kept/m.py", Mode: 0o644, Data: "x", Time: when.Unix()},
		{Name: "epoch/m.py", Mode: 0o644, Data: "x"},
	}
	if diff := cmp.Diff(want, layerEntries(t, file, img.Ref)); diff != "" {
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
