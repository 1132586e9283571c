package cache

import "syscall"

// mapPopulate maps every page of the file at once: one system call
// instead of a page fault per 64 KiB while the snapshot is checked.
const mapPopulate = syscall.MAP_POPULATE
