// Package localcluster brings up a real single-node Kubernetes on this
// machine for kdap's e2e tests: etcd, containerd, kube-apiserver and kubelet,
// all on loopback, started as detached processes that outlive the caller.
// kube-apiserver and kubelet are built from a pinned wrapper module
// (test/cluster/kubernetes) and cached by version. Up is idempotent and
// recovers from a cluster whose processes were killed; Down removes every
// trace, including what the kubelet and containerd write outside the
// harness directory.
package localcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kdap/kdap/images/ocitar"
	"github.com/kdap/kdap/internal/lines"
)

// Config says where the cluster lives. Zero fields get defaults from Defaults.
type Config struct {
	Dir       string    // harness directory: state, logs, certificates, kubeconfig
	CacheDir  string    // built Kubernetes binaries, kept across up/down
	RepoDir   string    // the kdap repository (holds the wrapper module and pause source)
	ModuleDir string    // the Kubernetes wrapper module
	Out       io.Writer // progress lines
}

// Defaults fills the zero fields of cfg: Dir from $KDAP_CLUSTER_DIR or
// /var/lib/kdap-test-cluster, CacheDir from $XDG_CACHE_HOME or ~/.cache,
// RepoDir by walking up from the working directory.
func Defaults(cfg Config) (Config, error) {
	if cfg.Dir == "" {
		cfg.Dir = os.Getenv("KDAP_CLUSTER_DIR")
	}
	if cfg.Dir == "" {
		cfg.Dir = "/var/lib/kdap-test-cluster"
	}
	if cfg.CacheDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return cfg, err
		}
		cfg.CacheDir = filepath.Join(base, "kdap")
	}
	if cfg.RepoDir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return cfg, err
		}
		for d := wd; ; d = filepath.Dir(d) {
			if fileExists(filepath.Join(d, "test", "cluster", "kubernetes", "go.mod")) {
				cfg.RepoDir = d
				break
			}
			if d == filepath.Dir(d) {
				return cfg, fmt.Errorf("run this inside the kdap repository: no test/cluster/kubernetes/go.mod above %s", wd)
			}
		}
	}
	if cfg.ModuleDir == "" {
		cfg.ModuleDir = filepath.Join(cfg.RepoDir, "test", "cluster", "kubernetes")
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	for _, p := range []*string{&cfg.Dir, &cfg.CacheDir, &cfg.RepoDir, &cfg.ModuleDir} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return cfg, err
		}
		*p = abs
	}
	return cfg, nil
}

// Cluster is a handle on the test cluster described by a Config.
type Cluster struct {
	cfg    Config
	layout layout
	out    io.Writer
}

// New returns a handle; it does not start anything.
func New(cfg Config) (*Cluster, error) {
	cfg, err := Defaults(cfg)
	if err != nil {
		return nil, err
	}
	return &Cluster{cfg: cfg, layout: layout{dir: cfg.Dir}, out: cfg.Out}, nil
}

// Kubeconfig is the absolute path of the admin kubeconfig.
func (c *Cluster) Kubeconfig() string { return c.layout.kubeconfig() }

// NodeName is the name of the cluster's only node; pods set it as nodeName.
func (c *Cluster) NodeName() string { return nodeName }

// RESTConfig is a client configuration for the admin user.
func (c *Cluster) RESTConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig())
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 50, 100
	return cfg, nil
}

// Up starts the cluster, or returns at once if it is already up and healthy.
// A cluster left half-running or killed is cleaned up and started afresh.
func (c *Cluster) Up(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return errNotRoot
	}
	start := time.Now()
	if err := c.installPackages(ctx); err != nil {
		return err
	}
	apiserverBin, kubeletBin, err := c.buildKubernetes(ctx)
	if err != nil {
		return err
	}
	comps := c.components(apiserverBin, kubeletBin)
	health := c.healthy(ctx, comps)
	if health == nil {
		return nil
	}
	if c.anyPidFile(comps) {
		fmt.Fprintf(c.out, "cluster: the cluster in %s is not healthy (%v); cleaning it up and starting afresh\n", c.cfg.Dir, health)
		for i := len(comps) - 1; i >= 0; i-- {
			c.stop(comps[i], 10*time.Second)
		}
		c.cleanupLeftovers()
		c.removeState()
	}
	if err := checkPortsFree(ports); err != nil {
		return err
	}
	if err := c.saveRecord(); err != nil {
		return err
	}
	if err := writePKI(c.layout.path("pki")); err != nil {
		return err
	}
	if err := c.writeConfigs(); err != nil {
		return err
	}
	if err := c.writeKubeconfigs(); err != nil {
		return err
	}
	for _, d := range cgroupHierarchies() {
		os.MkdirAll(filepath.Join(d, cgroupRoot), 0o755)
	}
	for _, comp := range comps {
		fmt.Fprintf(c.out, "cluster: starting %s\n", comp.name)
		if err := c.start(ctx, comp, 90*time.Second); err != nil {
			return err
		}
		if comp.name == "containerd" {
			if err := c.loadPause(ctx); err != nil {
				return err
			}
		}
	}
	if err := c.waitNodeReady(ctx, 90*time.Second); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "cluster: node %s Ready after %s\n", nodeName, time.Since(start).Round(100*time.Millisecond))
	return nil
}

// healthy is nil when every component runs, the API is ready and the node
// is Ready.
func (c *Cluster) healthy(ctx context.Context, comps []component) error {
	for _, comp := range comps {
		if c.runningPID(comp) == 0 {
			return fmt.Errorf("%s is not running from %s", comp.name, comp.bin)
		}
		probeCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := comp.ready(probeCtx)
		cancel()
		if err != nil {
			return fmt.Errorf("%s is not ready: %w", comp.name, err)
		}
	}
	return c.nodeReady(ctx)
}

func (c *Cluster) anyPidFile(comps []component) bool {
	for _, comp := range comps {
		if _, err := os.Stat(c.layout.pidFile(comp.name)); err == nil {
			return true
		}
	}
	return false
}

// removeState deletes the harness directory except the record of the
// machine's original state.
func (c *Cluster) removeState() {
	entries, _ := os.ReadDir(c.layout.dir)
	for _, e := range entries {
		if e.Name() != "record.json" {
			os.RemoveAll(c.layout.path(e.Name()))
		}
	}
}

// Down deletes all pods through the API (when it answers), stops every
// component, removes leftovers, restores sysctls and deletes the harness
// directory. The build cache stays.
func (c *Cluster) Down(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return errNotRoot
	}
	if _, err := os.Stat(c.layout.dir); os.IsNotExist(err) {
		fmt.Fprintf(c.out, "cluster: nothing to do, %s does not exist\n", c.cfg.Dir)
		return nil
	}
	comps := c.components("", "")
	if ok := c.deleteAllPods(ctx); !ok {
		fmt.Fprintln(c.out, "cluster: API not reachable; stopping processes directly")
	}
	for i := len(comps) - 1; i >= 0; i-- {
		c.stop(comps[i], 10*time.Second)
	}
	c.cleanupLeftovers()
	c.restoreSysctls()
	if err := os.RemoveAll(c.layout.dir); err != nil {
		return fmt.Errorf("remove %s: %w", c.layout.dir, err)
	}
	fmt.Fprintln(c.out, "cluster: down")
	return nil
}

// deleteAllPods deletes every pod and waits (up to 60 s) until the kubelet
// has stopped them. It reports false if the API did not answer.
func (c *Cluster) deleteAllPods(ctx context.Context) bool {
	cs, err := c.clientset()
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return false
	}
	grace := int64(2)
	for _, p := range pods.Items {
		cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
	}
	if len(pods.Items) > 0 {
		fmt.Fprintf(c.out, "cluster: deleting %d pods\n", len(pods.Items))
	}
	for ctx.Err() == nil {
		left, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err != nil || len(left.Items) == 0 {
			return true
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Fprintln(c.out, "cluster: pods still terminating after 60s; stopping anyway")
	return true
}

// Status describes the cluster's components; the error is nil only when the
// cluster is up and healthy.
func (c *Cluster) Status(ctx context.Context) (string, error) {
	var b strings.Builder
	if version, err := kubernetesVersion(c.cfg.ModuleDir); err == nil {
		fmt.Fprintf(&b, "kubernetes %s, harness directory %s\n", version, c.cfg.Dir)
	}
	comps := c.components("", "") // binaries come from the running processes
	for i := range comps {
		if pid := recordedPID(c.layout.pidFile(comps[i].name), comps[i].name); pid != 0 {
			_, comps[i].bin = pidFromFile(c.layout.pidFile(comps[i].name))
			fmt.Fprintf(&b, "  %-15s running, pid %d, log %s\n", comps[i].name, pid, c.layout.logFile(comps[i].name))
		} else {
			fmt.Fprintf(&b, "  %-15s not running\n", comps[i].name)
		}
	}
	err := c.healthy(ctx, comps)
	if err == nil {
		fmt.Fprintf(&b, "node %s Ready\nKUBECONFIG=%s\n", nodeName, c.Kubeconfig())
	}
	return b.String(), err
}

// Load imports docker-archive or OCI tarballs into the node's containerd.
func (c *Cluster) Load(ctx context.Context, tarballs ...string) error {
	if os.Geteuid() != 0 {
		return errNotRoot
	}
	comp := c.components("", "")[0]
	if c.runningPID(comp) == 0 {
		return errors.New("the test cluster is not up: run `go run ./test/cluster up` first")
	}
	for _, t := range tarballs {
		if _, err := os.Stat(t); err != nil {
			return fmt.Errorf("image tarball: %w", err)
		}
		cmd := exec.CommandContext(ctx, "ctr", "--address", c.layout.containerdSock(), "--namespace", "k8s.io",
			"images", "import", "--platform", "linux/"+runtime.GOARCH, t)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("import %s into the node: %w\n%s", t, err, lines.Last(string(out), 10))
		}
	}
	return nil
}

// RemoveImages removes from the node's containerd every image whose name
// starts with prefix (a registry's host/, once its test is over).
func (c *Cluster) RemoveImages(ctx context.Context, prefix string) error {
	ctr := func(args ...string) ([]byte, error) {
		return exec.CommandContext(ctx, "ctr", append([]string{"--address", c.layout.containerdSock(), "--namespace", "k8s.io", "images"}, args...)...).CombinedOutput()
	}
	out, err := ctr("ls", "-q")
	if err != nil {
		return fmt.Errorf("ctr images ls: %w\n%s", err, out)
	}
	var names []string
	for _, n := range strings.Fields(string(out)) {
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil
	}
	if out, err := ctr(append([]string{"rm"}, names...)...); err != nil {
		return fmt.Errorf("ctr images rm: %w\n%s", err, out)
	}
	return nil
}

// loadPause builds (once per harness directory) and imports the sandbox image.
func (c *Cluster) loadPause(ctx context.Context) error {
	tar := c.layout.path("images", "pause.tar")
	if !fileExists(tar) {
		bin, err := ocitar.BuildGo(ctx, ocitar.GoBuild{
			Dir: c.cfg.RepoDir, Package: "./test/cluster/pause", Flags: []string{"-trimpath", "-ldflags=-s -w"},
		})
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(tar), 0o755); err != nil {
			return err
		}
		if err := ocitar.Write(tar, ocitar.Image{
			Ref: pauseImage, Files: []ocitar.File{{Path: "/pause", Mode: 0o755, Data: bin}},
			Entrypoint: []string{"/pause"}, User: "65535:65535",
		}); err != nil {
			return err
		}
	}
	return c.Load(ctx, tar)
}

func (c *Cluster) clientset() (*kubernetes.Clientset, error) {
	cfg, err := c.RESTConfig()
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 5 * time.Second
	return kubernetes.NewForConfig(cfg)
}

// nodeReady is nil when the node reports Ready=True.
func (c *Cluster) nodeReady(ctx context.Context) error {
	cs, err := c.clientset()
	if err != nil {
		return err
	}
	node, err := cs.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			if cond.Status == corev1.ConditionTrue {
				return nil
			}
			return fmt.Errorf("node %s not Ready: %s: %s", nodeName, cond.Reason, cond.Message)
		}
	}
	return fmt.Errorf("node %s has no Ready condition yet", nodeName)
}

func (c *Cluster) waitNodeReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := c.nodeReady(ctx)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w (after %s); last lines of %s:\n%s", err, timeout, c.layout.logFile("kubelet"), tail(c.layout.logFile("kubelet"), 15))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// writeKubeconfigs writes the admin kubeconfig and the kubelet's.
func (c *Cluster) writeKubeconfigs() error {
	server := fmt.Sprintf("https://127.0.0.1:%d", apiserverPort)
	for file, stem := range map[string]string{
		c.layout.kubeconfig():                  "admin",
		c.layout.path("kubelet", "kubeconfig"): "kubelet-client",
	} {
		caPEM, err := os.ReadFile(c.layout.pki("ca.crt"))
		if err != nil {
			return err
		}
		certPEM, err := os.ReadFile(c.layout.pki(stem + ".crt"))
		if err != nil {
			return err
		}
		keyPEM, err := os.ReadFile(c.layout.pki(stem + ".key"))
		if err != nil {
			return err
		}
		if err := clientcmd.WriteToFile(*Kubeconfig(server, caPEM, stem, certPEM, keyPEM), file); err != nil {
			return err
		}
	}
	return nil
}

// Kubeconfig builds a one-context kubeconfig for a client certificate.
func Kubeconfig(server string, caPEM []byte, user string, certPEM, keyPEM []byte) *clientcmdapi.Config {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kdap-test"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	cfg.Contexts["kdap-test"] = &clientcmdapi.Context{Cluster: "kdap-test", AuthInfo: user}
	cfg.CurrentContext = "kdap-test"
	return cfg
}

// cgroupHierarchies are the mounted cgroup hierarchies: /sys/fs/cgroup
// itself on a pure cgroup v2 machine, else every v1 controller plus unified.
func cgroupHierarchies() []string {
	if fileExists("/sys/fs/cgroup/cgroup.controllers") {
		return []string{"/sys/fs/cgroup"}
	}
	var out []string
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, filepath.Join("/sys/fs/cgroup", e.Name()))
		}
	}
	return out
}
