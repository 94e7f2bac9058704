package dap

// Ids of the error responses kdap itself sends (body.error.id). Responses
// relayed from the debugger keep the debugger's own ids.
const (
	// ErrIDAttachFailed: the target could not be reached or the debugger
	// could not be started; the message names the fix.
	ErrIDAttachFailed = 4000 + iota
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
)

// ErrIDParentSession: a request to a parent session that only starts child
// sessions (one per process or pod) and debugs nothing itself.
const ErrIDParentSession = ErrIDTerminateRefused + 1

// ErrIDSnapshotOnly: a pause request in snapshot mode, which never holds
// the target.
const ErrIDSnapshotOnly = ErrIDParentSession + 1
