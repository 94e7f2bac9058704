package localcluster

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// checkPortsFree fails with the first port that cannot be bound on
// 127.0.0.1, naming the process that holds it when /proc tells.
func checkPortsFree(ports map[int]string) error {
	for port, user := range ports {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			l.Close()
			continue
		}
		holder := "another process"
		if pid, comm, ok := portOwner(port); ok {
			holder = fmt.Sprintf("pid %d (%s)", pid, comm)
		}
		return fmt.Errorf("port 127.0.0.1:%d, needed by %s, is already in use by %s: stop it, or if it is a test cluster started from another directory run `go run ./test/cluster down` there", port, user, holder)
	}
	return nil
}

// portOwner finds the process listening on a TCP port through
// /proc/net/tcp{,6} and the socket inodes in /proc/*/fd.
func portOwner(port int) (pid int, comm string, ok bool) {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" { // 0A = LISTEN
				continue
			}
			i := strings.LastIndexByte(fields[1], ':')
			p, err := strconv.ParseInt(fields[1][i+1:], 16, 32)
			if err == nil && int(p) == port {
				inodes["socket:["+fields[9]+"]"] = true
			}
		}
		fh.Close()
	}
	if len(inodes) == 0 {
		return 0, "", false
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range procs {
		link, err := os.Readlink(fd)
		if err != nil || !inodes[link] {
			continue
		}
		pidDir := filepath.Dir(filepath.Dir(fd))
		pid, _ = strconv.Atoi(filepath.Base(pidDir))
		b, _ := os.ReadFile(filepath.Join(pidDir, "comm"))
		return pid, strings.TrimSpace(string(b)), true
	}
	return 0, "", false
}
