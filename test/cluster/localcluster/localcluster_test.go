package localcluster

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/var/lib/kubelet`:       "/var/lib/kubelet",
		`/mnt/with\040space`:     "/mnt/with space",
		`/a\011tab\134backslash`: "/a\ttab\\backslash",
		`/trailing\04`:           `/trailing\04`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestKubernetesVersionReadsTheWrapperModule(t *testing.T) {
	got, err := kubernetesVersion("../kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got, "v1.") {
		t.Errorf("version %q", got)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module x\n"), 0o644)
	if _, err := kubernetesVersion(dir); err == nil || !strings.Contains(err.Error(), "require k8s.io/kubernetes") {
		t.Errorf("go.mod without the require: err = %v", err)
	}
}

func TestCheckPortsFreeNamesTheHolder(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	err = checkPortsFree(map[int]string{port: "kube-apiserver"})
	if err == nil {
		t.Fatal("a taken port was reported free")
	}
	want := fmt.Sprintf("port 127.0.0.1:%d, needed by kube-apiserver, is already in use by pid %d (", port, os.Getpid())
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
	l.Close()
	if err := checkPortsFree(map[int]string{port: "kube-apiserver"}); err != nil {
		t.Errorf("free port reported taken: %v", err)
	}
}

func TestPKIVerifiesAndIssuesUsers(t *testing.T) {
	dir := t.TempDir()
	c := &Cluster{cfg: Config{Dir: dir}, layout: layout{dir: dir}}
	if err := writePKI(filepath.Join(dir, "pki")); err != nil {
		t.Fatal(err)
	}
	ca, _, err := loadCA(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := c.IssueUser("alice", "devs")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file, host string
	}{{"apiserver.crt", "127.0.0.1"}, {"kubelet.crt", "localhost"}} {
		if err := verifyPEM(ca, mustRead(t, filepath.Join(dir, "pki", tc.file)), tc.host); err != nil {
			t.Errorf("%s for %s: %v", tc.file, tc.host, err)
		}
	}
	if err := verifyPEM(ca, certPEM, ""); err != nil {
		t.Errorf("user certificate: %v", err)
	}
}

func mustRead(t *testing.T, f string) []byte {
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// verifyPEM checks a PEM certificate against ca, as a server for host or,
// when host is empty, as a client.
func verifyPEM(ca *x509.Certificate, certPEM []byte, host string) error {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return errors.New("not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	usage := x509.ExtKeyUsageServerAuth
	if host == "" {
		usage = x509.ExtKeyUsageClientAuth
	}
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: host, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}

func newTestCluster(t *testing.T) *Cluster {
	dir := t.TempDir()
	for _, d := range []string{"run", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &Cluster{cfg: Config{Dir: dir}, layout: layout{dir: dir}, out: io.Discard}
}

func TestStartReportsAComponentThatExitsWithItsLog(t *testing.T) {
	c := newTestCluster(t)
	comp := component{
		name:  "broken",
		bin:   "/bin/sh",
		args:  []string{"-c", "echo line one; echo 'fatal: cannot bind' >&2; exit 3"},
		ready: func(context.Context) error { return errors.New("not yet") },
	}
	err := c.start(context.Background(), comp, 30*time.Second)
	if err == nil {
		t.Fatal("start of a component that exits succeeded")
	}
	for _, want := range []string{"broken exited while starting", "exit status 3", "fatal: cannot bind", c.layout.logFile("broken")} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestStartWaitsForReadiness(t *testing.T) {
	c := newTestCluster(t)
	marker := filepath.Join(c.layout.dir, "ready")
	comp := component{
		name: "sleep", // stop recognises a component by its executable's name
		bin:  "/bin/sh",
		// The marker appears 0.3 s in, and only once the shell has become
		// sleep, so readiness implies the executable stop looks for.
		args: []string{"-c", "(sleep 0.3; until [ \"$(readlink /proc/$$/exe)\" = /usr/bin/sleep ]; do sleep 0.05; done; touch " + marker + ") & exec /usr/bin/sleep 30"},
		ready: func(context.Context) error {
			_, err := os.Stat(marker)
			return err
		},
	}
	if err := c.start(context.Background(), comp, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	comp.bin = "/usr/bin/sleep"
	pid := c.runningPID(comp)
	if pid == 0 {
		t.Fatal("the started component is not recognised as running")
	}
	c.stop(comp, 5*time.Second)
	if s := procState(pid); s != "" && s != "Z" {
		t.Errorf("pid %d still running (state %s) after stop", pid, s)
	}
	if _, err := os.Stat(c.layout.pidFile("sleep")); !os.IsNotExist(err) {
		t.Errorf("pid file left after stop: %v", err)
	}
}

func TestRunningPIDIgnoresAReusedPID(t *testing.T) {
	c := newTestCluster(t)
	// The pid file names a live process (this test) that is not etcd.
	os.WriteFile(c.layout.pidFile("etcd"), []byte(strconv.Itoa(os.Getpid())), 0o644)
	comp := component{name: "etcd", bin: "/usr/bin/etcd"} // this test binary is not called etcd
	if pid := c.runningPID(comp); pid != 0 {
		t.Fatalf("runningPID = %d for a process that is not etcd; stop would kill it", pid)
	}
	c.stop(comp, time.Second) // must not signal this process
}
