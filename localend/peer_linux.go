package localend

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

func peerUsersKnown() bool { return true }

// peerUser is the user owning the client end of a loopback TCP connection:
// the row of /proc/net/tcp (or tcp6) whose local address is the client's
// and whose remote address is this end's.
func peerUser(c net.Conn) (int, error) {
	client, ok1 := c.RemoteAddr().(*net.TCPAddr)
	server, ok2 := c.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return 0, errUnknownPeer
	}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 8 || !samePort(f[1], client.Port) || !samePort(f[2], server.Port) {
				continue
			}
			uid, err := strconv.Atoi(f[7])
			if err != nil {
				return 0, fmt.Errorf("%s: uid %q", table, f[7])
			}
			return uid, nil
		}
	}
	return 0, errUnknownPeer
}

// samePort says a /proc/net/tcp address (hex IP:hex port) has port.
func samePort(addr string, port int) bool {
	i := strings.LastIndexByte(addr, ':')
	p, err := strconv.ParseUint(addr[i+1:], 16, 16)
	return i >= 0 && err == nil && int(p) == port
}

// listenPrivate creates the socket under umask 0177, so that its mode is
// 0600 from the start.
func listenPrivate(path string) (net.Listener, error) {
	old := syscall.Umask(0o177)
	defer syscall.Umask(old)
	return net.Listen("unix", path)
}
