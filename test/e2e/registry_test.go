//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// registry is Debian's docker-registry (CNCF distribution) serving on a
// loopback port for one test, its storage in the test's temporary
// directory. The test node's containerd pulls from it over plain HTTP, as
// it does from any loopback registry.
type registry struct {
	Host string // 127.0.0.1:PORT
	cmd  *exec.Cmd
}

// registryBinary is where test/install-deps.sh unpacks Debian's package.
func registryBinary() (string, error) {
	home, _ := os.UserHomeDir()
	bin := filepath.Join(home, ".cache", "kdap", "docker-registry", "usr", "bin", "docker-registry")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("no docker-registry at %s: run test/install-deps.sh (it unpacks Debian's docker-registry there)", bin)
	}
	return bin, nil
}

// launchRegistry runs a registry with its storage in dir until Stop; its
// log goes to log.
func launchRegistry(dir string, log io.Writer) (*registry, error) {
	bin, err := registryBinary()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &registry{Host: ln.Addr().String()}
	ln.Close()
	config := filepath.Join(dir, "config.yml")
	os.WriteFile(config, []byte(fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
http:
  addr: %s
`, filepath.Join(dir, "storage"), r.Host)), 0o644)
	r.cmd = exec.Command(bin, "serve", config)
	r.cmd.Stdout, r.cmd.Stderr = log, log
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // it ends with the tests, even a timed-out run
	if err := r.cmd.Start(); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get("http://" + r.Host + "/v2/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r, nil
			}
		}
		if time.Now().After(deadline) {
			r.Stop()
			return nil, fmt.Errorf("docker-registry did not answer at %s within 30 s", r.Host)
		}
	}
}

// startRegistry runs a registry of the test's own until it ends (or Stop),
// and removes from the node what was pulled from it.
func startRegistry(t *testing.T) *registry {
	t.Helper()
	r, err := launchRegistry(t.TempDir(), &testWriter{t: t, prefix: "registry: "})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	t.Cleanup(func() { // after the test's pods are gone
		if err := env.cluster.RemoveImages(context.Background(), r.Host+"/"); err != nil {
			t.Errorf("removing the images pulled from %s: %v", r.Host, err)
		}
	})
	return r
}

// Stop ends the registry (the images pulled stay on the node).
func (r *registry) Stop() {
	if r.cmd.ProcessState == nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
	}
}

// pushTarball pushes the docker-archive tarball's image as ref, labelled
// so that its image ID is not that of the fixture imported from the same
// tarball (containerd's CRI keeps one record per ID: a second name pulled
// for it made the kubelet lose the first).
func (r *registry) pushTarball(t *testing.T, tar, ref string) {
	t.Helper()
	img, err := tarball.ImageFromPath(tar, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	config := cf.Config
	config.Labels = map[string]string{"test.kdap/pushed-as": ref}
	if img, err = mutate.Config(img, config); err != nil {
		t.Fatal(err)
	}
	dst, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(dst, img, remote.WithContext(context.Background())); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}
