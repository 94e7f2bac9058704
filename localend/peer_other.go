//go:build !linux

package localend

import (
	"net"
	"os"
)

// peerUsersKnown: only Linux tells kdap a TCP connection's user; elsewhere
// the loopback port takes every local user's connections (the README says
// so: use a Unix socket there).
func peerUsersKnown() bool { return false }

func peerUser(net.Conn) (int, error) { return 0, errUnknownPeer }

// listenPrivate listens and then makes the socket this user's alone.
func listenPrivate(path string) (net.Listener, error) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}
