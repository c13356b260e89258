// Package fdlimit raises the process's limit on open files: every
// connection, a server's or a load generator's, is one.
package fdlimit

import "syscall"

// Raise raises the soft limit on open files to the hard limit and returns
// the limit in force (1024 if it cannot be read).
func Raise() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 1024
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = raised.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			lim = raised
		}
	}
	return lim.Cur
}
