// Package lines has the one text helper several packages share: the tail
// of a command's output for an error message.
package lines

import "strings"

// Last is the last n lines of s, without trailing blank space.
func Last(s string, n int) string {
	all := strings.Split(strings.TrimRight(s, " \t\r\n"), "\n")
	if len(all) > n {
		all = all[len(all)-n:]
	}
	return strings.Join(all, "\n")
}
