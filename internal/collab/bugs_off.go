//go:build !simbugs

package collab

// Known bugs the simulator must find (TestSimFindsBugs), built in only
// with the simbugs tag (bugs_on.go). Here they are constants, false: the
// compiler removes every branch on them, so the product has no such code
// path at all.
const (
	// injectBroadcastEarly: an op goes to the other clients when it is
	// accepted, before its commit is durable.
	injectBroadcastEarly = false
	// injectWrongSide: an op is transformed through history with the
	// wrong tie-break side.
	injectWrongSide = false
)
