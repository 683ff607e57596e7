//go:build windows

package bulkimport

import "syscall"

const detachedProcess = 0x00000008 // DETACHED_PROCESS

// DetachedProcAttr is how `import --detach` starts its child: without a
// console, in a process group of its own.
func DetachedProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{CreationFlags: syscall.CREATE_NEW_PROCESS_GROUP | detachedProcess}
}
