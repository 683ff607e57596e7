//go:build unix

package bulkimport

import "syscall"

// DetachedProcAttr is how `import --detach` starts its child: in a session
// of its own, so that it has no controlling terminal and outlives a closed
// one.
func DetachedProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true}
}
