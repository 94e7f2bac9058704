package dap

// Ids of the error responses kdap itself sends (body.error.id). Responses
// relayed from the debugger keep the debugger's own ids, so kdap's are in
// a range none of them uses: Delve's are 2000–5000, 7777, 8888 and 9999
// (4000 is DebuggeeIsRunning), js-debug's 9222 on, java-debug's below 2000.
const (
	// ErrIDAttachFailed: the target could not be reached or the debugger
	// could not be started; the message names the fix.
	ErrIDAttachFailed = 6000 + iota
	// ErrIDNotAttached: a request other than initialize/attach/disconnect
	// arrived before the debugger was attached.
	ErrIDNotAttached
	// ErrIDLaunchUnsupported: kdap only attaches to running processes.
	ErrIDLaunchUnsupported
	// ErrIDDebuggerLost: the connection to the debugger ended.
	ErrIDDebuggerLost
	// ErrIDAlreadyAttaching: a second attach in the same session.
	ErrIDAlreadyAttaching
	// ErrIDTerminateRefused: a terminate request without --allow-terminate.
	ErrIDTerminateRefused
	// ErrIDParentSession: a request to a parent session that only starts
	// child sessions (one per process or pod) and debugs nothing itself.
	ErrIDParentSession
	// ErrIDSnapshotOnly: a pause request in snapshot mode, which never
	// holds the target.
	ErrIDSnapshotOnly
	// ErrIDInternal: kdap failed while handling the request (a bug); the
	// session goes on.
	ErrIDInternal
)
