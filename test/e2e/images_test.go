//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"io"
	"os"
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
// cluster: kdap's own command (make images) builds the Go debugger image
// for linux/amd64 and linux/arm64 and pushes it to a real registry
// (Debian's docker-registry); the index holds both platforms, each with
// binaries of its architecture; kdap, pointed at that registry by
// --image-repository alone, has the node pull the image and debugs
// through it.
func TestDebuggerImagesFromARegistry(t *testing.T) {
	reg := startRegistry(t)
	repository := reg.Host + "/kdap"
	start := time.Now()
	publish := exec.Command("go", "run", "./images/publish", "--runtimes", "go", repository)
	publish.Dir = env.repo
	publish.Stderr = &testWriter{t: t, prefix: "publish: "}
	out, err := publish.Output()
	if err != nil {
		t.Fatalf("go run ./images/publish: %v", err)
	}
	t.Logf("published in %s: %s", time.Since(start).Round(time.Second), out)
	ref := runtimes.Go.ImageIn(repository)
	if !strings.HasPrefix(string(out), ref+"@sha256:") {
		t.Fatalf("publish printed %q, want %s@sha256:…", out, ref)
	}

	// The index: both platforms, each image's binaries built for its own.
	r, _ := name.ParseReference(ref)
	idx, err := remote.Index(r)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	var platforms []string
	for _, d := range m.Manifests {
		platforms = append(platforms, d.Platform.OS+"/"+d.Platform.Architecture)
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		for _, bin := range []string{"kdap-agent", "dlv"} {
			if got, want := elfMachine(t, img, bin), machines[d.Platform.Architecture]; got != want {
				t.Errorf("%s image: /%s is for %v, want %v", d.Platform.Architecture, bin, got, want)
			}
		}
	}
	slices.Sort(platforms)
	if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("the index holds %v, want linux/amd64 and linux/arm64", platforms)
	}

	// A debug session through the pulled image, named by the repository.
	ns := newNamespace(t, nil)
	createPod(t, ns, "gohttp", fixtures.GoHTTPImage)
	svc := serviceForward(t, ns, "gohttp")
	cmd, addr, _ := startKdapAttach(t, "pod/gohttp", "-n", ns, "--runtime", "go", "--image-repository", repository)
	conn, _, _, reply := delveStop(t, addr, svc, "registry")
	conn.Close()
	expectReply(t, reply, "hello, registry", 30*time.Second)
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()

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

// elfMachine is the architecture of the ELF file /bin in img's layers.
func elfMachine(t *testing.T, img v1.Image, bin string) elf.Machine {
	t.Helper()
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
			if h.Name == bin {
				head := make([]byte, 20) // e_ident, e_type, e_machine
				io.ReadFull(tr, head)
				rc.Close()
				if !bytes.HasPrefix(head, []byte(elf.ELFMAG)) {
					t.Fatalf("/%s is not an ELF file", bin)
				}
				return elf.Machine(binary.LittleEndian.Uint16(head[18:]))
			}
		}
		rc.Close()
	}
	t.Fatalf("no /%s in the image", bin)
	return 0
}
