//go:build !linux

package supervise

import "syscall"

// Only Linux is supported for production (TensorFlow's C library); elsewhere
// children share the parent's process group.
func sysProcAttr() *syscall.SysProcAttr { return nil }
