//go:build !windows

package runtimes

import (
	"os"
	"syscall"
)

// readableBy reports whether uid:gid may read a file by its mode bits.
func readableBy(info os.FileInfo, uid, gid int) bool {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok || uid == 0 {
		return true
	}
	mode := info.Mode().Perm()
	switch {
	case int(st.Uid) == uid:
		return mode&0o400 != 0
	case int(st.Gid) == gid:
		return mode&0o040 != 0
	}
	return mode&0o004 != 0
}
