package agent

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// The pod's listening TCP sockets, and which process holds them: the Node.js
// inspector's port, a JVM's JDWP listener.

// portOwner finds which process listens on TCP port in the pod (by
// socket inode, among the processes the agent may inspect); -1 when the
// listener belongs to a process the agent may not inspect.
func portOwner(port int) (pid int, found bool) {
	inodes := map[string]bool{}
	for ino, p := range listeningSockets() {
		if p == port {
			inodes[ino] = true
		}
	}
	if len(inodes) == 0 {
		return 0, false
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		for ino := range socketInodes(p) {
			if inodes[ino] {
				return p, true
			}
		}
	}
	return -1, true
}

// listenersOf maps the listening sockets pid holds (inode) to their port.
func listenersOf(pid int) map[string]int {
	out := map[string]int{}
	all := listeningSockets()
	for ino := range socketInodes(pid) {
		if p, ok := all[ino]; ok {
			out[ino] = p
		}
	}
	return out
}

// socketInodes are the inodes of the sockets pid has open.
func socketInodes(pid int) map[string]bool {
	out := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return out
	}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err != nil {
			continue
		}
		if ino, ok := strings.CutPrefix(link, "socket:["); ok {
			out[strings.TrimSuffix(ino, "]")] = true
		}
	}
	return out
}

// listeningSockets maps the inode of every listening TCP socket of the
// pod's network namespace to its port (/proc/net/tcp and tcp6).
func listeningSockets() map[string]int {
	out := map[string]int{}
	for ino, l := range listeners() {
		out[ino] = l.port
	}
	return out
}

// listener is a listening TCP socket.
type listener struct {
	port     int
	loopback bool // bound to 127.0.0.1 or ::1 only
}

// listeners maps the inode of every listening TCP socket of the pod's
// network namespace to its port and whether only the loopback reaches it.
func listeners() map[string]listener {
	out := map[string]listener{}
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) <= 9 || f[3] != "0A" { // 0A: LISTEN
				continue
			}
			if i := strings.LastIndexByte(f[1], ':'); i >= 0 {
				if p, err := strconv.ParseUint(f[1][i+1:], 16, 16); err == nil {
					out[f[9]] = listener{port: int(p), loopback: isLoopbackHex(f[1][:i])}
				}
			}
		}
	}
	return out
}

// isLoopbackHex reports whether a /proc/net/tcp{,6} address (hex, host
// byte order by 32-bit word) is 127.x.x.x or ::1.
func isLoopbackHex(addr string) bool {
	switch len(addr) {
	case 8: // IPv4, little-endian: 0100007F is 127.0.0.1
		return strings.HasSuffix(addr, "7F")
	case 32:
		return addr == "00000000000000000000000001000000" || // ::1
			strings.HasPrefix(addr, "0000000000000000FFFF0000") && strings.HasSuffix(addr, "7F") // ::ffff:127.x
	}
	return false
}
