package localcluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/kdap/kdap/internal/lines"
)

// debianPackages maps each Debian package the node needs to a file it
// installs, which tells whether it is there.
var debianPackages = []struct{ name, file string }{
	{"containerd", "/usr/bin/containerd"},
	{"containerd", "/usr/bin/ctr"},
	{"runc", "/usr/sbin/runc"},
	{"containernetworking-plugins", "/usr/lib/cni/bridge"},
	{"etcd-server", "/usr/bin/etcd"},
	{"iptables", "/usr/sbin/iptables"},
	{"conntrack", "/usr/sbin/conntrack"},
	{"socat", "/usr/bin/socat"},
	{"iproute2", "/usr/sbin/ip"},
}

// installPackages installs the Debian packages that are missing.
func (c *Cluster) installPackages(ctx context.Context) error {
	var missing []string
	seen := map[string]bool{}
	for _, p := range debianPackages {
		if _, err := os.Stat(p.file); err != nil && !seen[p.name] {
			missing = append(missing, p.name)
			seen[p.name] = true
		}
	}
	if len(missing) == 0 {
		return nil
	}
	fmt.Fprintf(c.out, "cluster: installing Debian packages: %s\n", strings.Join(missing, " "))
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	update := exec.CommandContext(ctx, "apt-get", "update", "-qq")
	update.Env = env
	if out, err := update.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get update failed (%w): fix the apt sources, then install by hand: apt-get install %s\n%s",
			err, strings.Join(missing, " "), lines.Last(string(out), 10))
	}
	install := exec.CommandContext(ctx, "apt-get", append([]string{"install", "-y", "-qq", "--no-install-recommends"}, missing...)...)
	install.Env = env
	if out, err := install.CombinedOutput(); err != nil {
		return fmt.Errorf("could not install Debian packages %s (%w); try by hand: apt-get install %s\n%s",
			strings.Join(missing, ", "), err, strings.Join(missing, " "), lines.Last(string(out), 10))
	}
	return nil
}
