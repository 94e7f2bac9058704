// Package statedir names kdap's state directory on this machine:
// $XDG_STATE_HOME/kdap, by default ~/.local/state/kdap (its local log, its
// key).
package statedir

import (
	"os"
	"path/filepath"
)

// Dir is kdap's state directory (not made here).
func Dir() string {
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "kdap")
}
