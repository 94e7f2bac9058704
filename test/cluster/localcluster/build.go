package localcluster

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/kdap/kdap/internal/lines"
)

// kubernetesVersion reads the pinned version from the wrapper module's go.mod.
func kubernetesVersion(moduleDir string) (string, error) {
	f, err := os.Open(filepath.Join(moduleDir, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("kubernetes wrapper module: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 3 && fields[0] == "require" && fields[1] == "k8s.io/kubernetes" {
			return fields[2], nil
		}
	}
	return "", fmt.Errorf("no `require k8s.io/kubernetes vX.Y.Z` line in %s/go.mod", moduleDir)
}

// buildKubernetes returns the paths of kube-apiserver and kubelet for the
// pinned version, building them into the cache the first time. The cache key
// is the version plus a hash of the wrapper's go.mod and go.sum.
func (c *Cluster) buildKubernetes(ctx context.Context) (apiserver, kubelet string, err error) {
	version, err := kubernetesVersion(c.cfg.ModuleDir)
	if err != nil {
		return "", "", err
	}
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(c.cfg.ModuleDir, f))
		if err != nil {
			return "", "", fmt.Errorf("kubernetes wrapper module: %w", err)
		}
		h.Write(b)
	}
	dir := filepath.Join(c.cfg.CacheDir, "kubernetes", version+"-"+hex.EncodeToString(h.Sum(nil))[:12])
	apiserver, kubelet = filepath.Join(dir, "kube-apiserver"), filepath.Join(dir, "kubelet")
	if fileExists(apiserver) && fileExists(kubelet) {
		return apiserver, kubelet, nil
	}
	fmt.Fprintf(c.out, "cluster: building kube-apiserver and kubelet %s into %s (first time only; ≈5 min on 2 cores, ≈3 GB of Go build cache)\n", version, dir)
	start := time.Now()
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", "", err
	}
	minor := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	ldflags := fmt.Sprintf("-s -w -X k8s.io/component-base/version.gitVersion=%s -X k8s.io/component-base/version.gitMajor=%s -X k8s.io/component-base/version.gitMinor=%s -X k8s.io/component-base/version.gitTreeState=clean",
		version, minor[0], minor[1])
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", tmp+"/",
		"k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes/cmd/kubelet")
	cmd.Dir = c.cfg.ModuleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=readonly")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("building Kubernetes %s failed: %w\n%s", version, err, lines.Last(string(out), 20))
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return "", "", err
	}
	fmt.Fprintf(c.out, "cluster: built Kubernetes %s in %s\n", version, time.Since(start).Round(time.Second))
	return apiserver, kubelet, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}
