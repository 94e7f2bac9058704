package runtimes

import "os"

// readableBy is true on Windows, where kdap inspects no process (the agent
// runs in Linux pods).
func readableBy(info os.FileInfo, uid, gid int) bool { return true }
