package localcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// Fixed loopback ports of the test cluster, chosen away from the defaults of
// a real etcd/apiserver/kubelet so the harness can run beside them.
const (
	etcdClientPort    = 12379
	etcdPeerPort      = 12380
	apiserverPort     = 16443
	kubeletPort       = 11250
	kubeletHealthPort = 11248

	nodeName     = "localhost"
	serviceCIDR  = "10.96.0.0/24"
	serviceIP    = "10.96.0.1"
	podCIDR      = "10.244.0.0/24"
	bridgeName   = "kdap0"
	cniNetwork   = "kdap-test"
	cgroupRoot   = "kdap-test-cluster"
	pauseImage   = "kdap.test/pause:1"
	componentEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// ports maps every port the cluster binds to the component that binds it.
var ports = map[int]string{
	etcdClientPort:    "etcd",
	etcdPeerPort:      "etcd (peer)",
	apiserverPort:     "kube-apiserver",
	kubeletPort:       "kubelet",
	kubeletHealthPort: "kubelet (healthz)",
}

// component is one long-running process of the cluster.
type component struct {
	name  string
	bin   string
	args  []string
	ready func(ctx context.Context) error // nil error once it serves
}

// layout names the files and directories under the harness directory.
type layout struct{ dir string }

func (l layout) path(elem ...string) string {
	return filepath.Join(append([]string{l.dir}, elem...)...)
}
func (l layout) pki(name string) string     { return l.path("pki", name) }
func (l layout) pidFile(name string) string { return l.path("run", name+".pid") }
func (l layout) logFile(name string) string { return l.path("logs", name+".log") }
func (l layout) containerdSock() string     { return l.path("run", "containerd.sock") }
func (l layout) kubeconfig() string         { return l.path("admin.kubeconfig") }

func (c *Cluster) components(apiserverBin, kubeletBin string) []component {
	l := c.layout
	return []component{
		{
			name: "containerd",
			bin:  "/usr/bin/containerd",
			args: []string{"--config", l.path("containerd", "config.toml")},
			ready: func(ctx context.Context) error {
				conn, err := net.Dial("unix", l.containerdSock())
				if err == nil {
					conn.Close()
				}
				return err
			},
		},
		{
			name: "etcd",
			bin:  "/usr/bin/etcd",
			args: []string{
				"--name=kdap", "--data-dir=" + l.path("etcd"),
				fmt.Sprintf("--listen-client-urls=http://127.0.0.1:%d", etcdClientPort),
				fmt.Sprintf("--advertise-client-urls=http://127.0.0.1:%d", etcdClientPort),
				fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", etcdPeerPort),
				fmt.Sprintf("--initial-advertise-peer-urls=http://127.0.0.1:%d", etcdPeerPort),
				fmt.Sprintf("--initial-cluster=kdap=http://127.0.0.1:%d", etcdPeerPort),
			},
			ready: func(ctx context.Context) error {
				return httpOK(ctx, http.DefaultClient, fmt.Sprintf("http://127.0.0.1:%d/health", etcdClientPort), `"health":"true"`)
			},
		},
		{
			name: "kube-apiserver",
			bin:  apiserverBin,
			args: []string{
				fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", etcdClientPort),
				"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
				fmt.Sprintf("--secure-port=%d", apiserverPort),
				"--authorization-mode=Node,RBAC",
				"--client-ca-file=" + l.pki("ca.crt"),
				"--tls-cert-file=" + l.pki("apiserver.crt"), "--tls-private-key-file=" + l.pki("apiserver.key"),
				"--kubelet-client-certificate=" + l.pki("apiserver-kubelet-client.crt"),
				"--kubelet-client-key=" + l.pki("apiserver-kubelet-client.key"),
				"--kubelet-certificate-authority=" + l.pki("ca.crt"),
				"--kubelet-preferred-address-types=Hostname,InternalIP",
				"--service-account-issuer=https://kubernetes.default.svc",
				"--service-account-key-file=" + l.pki("sa.pub"),
				"--service-account-signing-key-file=" + l.pki("sa.key"),
				"--service-cluster-ip-range=" + serviceCIDR,
				"--disable-admission-plugins=ServiceAccount",
				"--endpoint-reconciler-type=none",
				"--allow-privileged=true",
				"--profiling=false",
			},
			ready: func(ctx context.Context) error {
				client, err := c.adminHTTPClient()
				if err != nil {
					return err
				}
				return httpOK(ctx, client, fmt.Sprintf("https://127.0.0.1:%d/readyz", apiserverPort), "ok")
			},
		},
		{
			name: "kubelet",
			bin:  kubeletBin,
			args: []string{
				"--config=" + l.path("kubelet", "config.yaml"),
				"--kubeconfig=" + l.path("kubelet", "kubeconfig"),
				"--hostname-override=" + nodeName,
				"--root-dir=" + l.path("kubelet", "root"),
				"--cert-dir=" + l.path("kubelet", "pki"),
				"--v=1",
			},
			ready: func(ctx context.Context) error {
				return httpOK(ctx, http.DefaultClient, fmt.Sprintf("http://127.0.0.1:%d/healthz", kubeletHealthPort), "ok")
			},
		},
	}
}

// writeConfigs writes containerd's, the CNI's and the kubelet's configuration.
func (c *Cluster) writeConfigs() error {
	l := c.layout
	files := map[string]string{
		l.path("containerd", "config.toml"): fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[7]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[8]q
`, l.path("containerd", "root"), l.path("containerd", "state"), l.containerdSock(), l.containerdSock()+".ttrpc",
			l.path("containerd", "opt"), pauseImage, l.path("runc"), l.path("cni", "net.d")),

		l.path("cni", "net.d", "10-kdap.conflist"): fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [{
    "type": "bridge",
    "bridge": %q,
    "isGateway": false,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "dataDir": %q}
  }]
}
`, cniNetwork, bridgeName, podCIDR, l.path("cni", "ipam")),

		l.path("kubelet", "config.yaml"): fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: %q}
authorization: {mode: AlwaysAllow}
tlsCertFile: %q
tlsPrivateKeyFile: %q
containerRuntimeEndpoint: unix://%s
cgroupDriver: cgroupfs
cgroupRoot: /%s
failSwapOn: false
failCgroupV1: false
makeIPTablesUtilChains: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
podLogsDir: %q
volumePluginDir: %q
serializeImagePulls: false
`, kubeletPort, kubeletHealthPort, l.pki("ca.crt"), l.pki("kubelet.crt"), l.pki("kubelet.key"),
			l.containerdSock(), cgroupRoot, l.path("pod-logs"), l.path("volume-plugins")),
	}
	for file, content := range files {
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
			return err
		}
	}
	for _, d := range []string{"run", "logs", "etcd", "runc", "cni/ipam", "pod-logs", "volume-plugins", "kubelet/root", "kubelet/pki"} {
		if err := os.MkdirAll(l.path(d), 0o755); err != nil {
			return err
		}
	}
	return os.Chmod(l.path("etcd"), 0o700)
}

// adminHTTPClient is an HTTP client that presents the admin certificate.
func (c *Cluster) adminHTTPClient() (*http.Client, error) {
	cert, err := tls.LoadX509KeyPair(c.layout.pki("admin.crt"), c.layout.pki("admin.key"))
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(c.layout.pki("ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{cert}, RootCAs: pool,
	}}}, nil
}

// httpOK fails unless GET url answers 200 with a body containing want.
func httpOK(ctx context.Context, client *http.Client, url, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
