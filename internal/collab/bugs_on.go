//go:build simbugs

package collab

// With the simbugs tag, the injected bugs of bugs_off.go are switches the
// simulator's TestSimFindsBugs turns on, one at a time. Never build the
// product with this tag.
var (
	injectBroadcastEarly bool
	injectWrongSide      bool
)
