package supervise

import "syscall"

// Each child gets its own process group, so a terminal's Ctrl-C (SIGINT to the
// foreground group) reaches only the parent, which then stops the children in
// order, instead of every process at once. Pdeathsig stops a child whose parent
// died without stopping it (SIGKILL, OOM): otherwise it would keep consuming
// as an orphan. (Pdeathsig fires when the parent's *thread* that started the
// child exits; the Go runtime only ends threads of goroutines that exit while
// locked with runtime.LockOSThread, which this package never does.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
