package localcluster

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
