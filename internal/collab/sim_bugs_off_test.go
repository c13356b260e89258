//go:build !simbugs

package collab

// setCoreBugs turns on the core's injected bugs; without the simbugs tag
// there are none to turn on.
func setCoreBugs(b simBugs) (restore func()) {
	if b.BroadcastEarly || b.WrongSide {
		panic("the core's injected bugs need -tags simbugs")
	}
	return func() {}
}
