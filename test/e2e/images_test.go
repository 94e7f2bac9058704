//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kdap/kdap/runtimes"
	"github.com/kdap/kdap/test/fixtures"
)

// TestDebuggerImagesFromARegistry is the path of a user with their own
// cluster: kdap's own command (make images) builds every runtime's
// debugger image for linux/amd64 and linux/arm64 and pushes them to a real
// registry (Debian's docker-registry). Each index holds both
// platforms; in each image the debugger's binaries are built for its
// platform, and every library they load and their ELF interpreter are in
// the image (nothing here runs arm64 code: that is what is checked). Then
// the node pulls the Go image and kdap debugs through it. (The rest of the
// suite pulls the debugger images from a registry too, pushed there the
// same way for this machine's architecture: see setUp.)
func TestDebuggerImagesFromARegistry(t *testing.T) {
	reg := startRegistry(t)
	repository := reg.Host + "/kdap"
	start := time.Now()
	// A tag of its own: the same images as the suite's registry's, under
	// another image ID (containerd's CRI keeps one name per ID well).
	const tag = "e2e-multiarch"
	publish := exec.Command("go", "run", "./images/publish", "--tag", tag, repository) // every runtime, both platforms
	publish.Dir = env.repo
	publish.Stderr = &testWriter{t: t, prefix: "publish: "}
	out, err := publish.Output()
	if err != nil {
		t.Fatalf("go run ./images/publish: %v", err)
	}
	t.Logf("published in %s:\n%s", time.Since(start).Round(time.Second), out)

	binaries := map[*runtimes.Runtime][]string{ // what each image runs, besides the agent
		runtimes.Go:     {"dlv"},
		runtimes.Python: {"usr/bin/gdb"}, // debugpy runs in the target's interpreter,
		runtimes.Node:   {"kdap/node/bin/node"},
		runtimes.Java:   {"kdap/jre/bin/java", "kdap/jre/lib/server/libjvm.so"},
	}
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	var idx v1.ImageIndex
	for _, rt := range runtimes.All {
		ref := fmt.Sprintf("%s/kdap-%s:%s", repository, rt.Name, tag)
		if !strings.Contains(string(out), ref+"@sha256:") {
			t.Errorf("publish printed no %s@sha256:…", ref)
			continue
		}
		r, _ := name.ParseReference(ref)
		i, err := remote.Index(r)
		if err != nil {
			t.Fatal(err)
		}
		if rt == runtimes.Go {
			idx = i
		}
		m, err := i.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		var platforms []string
		for _, d := range m.Manifests {
			arch := d.Platform.Architecture
			platforms = append(platforms, d.Platform.OS+"/"+arch)
			img, err := i.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			files := imageFiles(t, img, append([]string{"kdap-agent"}, binaries[rt]...))
			for _, bin := range append([]string{"kdap-agent"}, binaries[rt]...) {
				f, err := elf.NewFile(bytes.NewReader(files.data[bin]))
				if err != nil {
					t.Errorf("%s %s: /%s: %v", rt.Name, arch, bin, err)
					continue
				}
				if f.Machine != machines[arch] {
					t.Errorf("%s %s: /%s is for %v, want %v", rt.Name, arch, bin, f.Machine, machines[arch])
				}
				libs, _ := f.ImportedLibraries()
				for _, p := range f.Progs {
					if p.Type == elf.PT_INTERP {
						b := make([]byte, p.Filesz)
						p.ReadAt(b, 0)
						libs = append(libs, strings.TrimRight(string(b), "\x00"))
					}
				}
				for _, lib := range libs {
					if !files.has(lib) {
						t.Errorf("%s %s: /%s needs %s, which the image lacks", rt.Name, arch, bin, lib)
					}
				}
				t.Logf("%s %s: /%s is %v, its %d libraries in the image", rt.Name, arch, bin, f.Machine, len(libs))
				f.Close()
			}
		}
		slices.Sort(platforms)
		if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) {
			t.Errorf("%s: the index holds %v, want linux/amd64 and linux/arm64", ref, platforms)
		}
	}
	if t.Failed() {
		return
	}
	ref := fmt.Sprintf("%s/kdap-go:%s", repository, tag)

	// A debug session through the pulled image.
	ns := newNamespace(t, nil)
	createPod(t, ns, "gohttp", fixtures.GoHTTPImage)
	svc := serviceForward(t, ns, "gohttp")
	cmd, addr, _ := startKdapAttach(t, "pod/gohttp", "-n", ns, "--runtime", "go", "--image-go", ref)
	conn, _, _, reply := delveStop(t, addr, svc, "registry")
	conn.Close()
	expectReply(t, reply, "hello, registry", 30*time.Second)
	interrupt(t, cmd, "kdap attach")

	pod, err := env.clientset.CoreV1().Pods(ns).Get(context.Background(), "gohttp", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	digest, _ := idx.Digest()
	for _, st := range pod.Status.EphemeralContainerStatuses {
		if st.Image != ref || !strings.HasSuffix(st.ImageID, "@"+digest.String()) {
			t.Errorf("debugger container %s runs %s (%s), want %s pulled from the registry (@%s)", st.Name, st.Image, st.ImageID, ref, digest)
		}
		t.Logf("debugger container %s: %s (%s)", st.Name, st.Image, st.ImageID)
	}
}

// layerFiles are the paths of an image's files, and the bytes of some.
type layerFiles struct {
	paths map[string]bool
	data  map[string][]byte
}

// has reports whether the image holds lib: an absolute path (an ELF
// interpreter, through the merged-/usr links), or a library's file name
// in any directory.
func (l layerFiles) has(lib string) bool {
	if strings.HasPrefix(lib, "/") {
		p := strings.TrimPrefix(lib, "/")
		return l.paths[p] || l.paths["usr/"+p]
	}
	for p := range l.paths {
		if strings.HasSuffix(p, "/"+lib) {
			return true
		}
	}
	return false
}

// imageFiles reads img's layers: every path, and the bytes of read.
func imageFiles(t *testing.T, img v1.Image, read []string) layerFiles {
	t.Helper()
	out := layerFiles{paths: map[string]bool{}, data: map[string][]byte{}}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
			out.paths[name] = true
			if slices.Contains(read, name) {
				out.data[name], _ = io.ReadAll(tr)
			}
		}
		rc.Close()
	}
	for _, r := range read {
		if out.data[r] == nil {
			t.Fatalf("no /%s in the image", r)
		}
	}
	return out
}
