package cache

import "syscall"

// sysIdentity returns the inode and change time of a stat result: unlike
// the modification time, the change time cannot be set back by a user, so
// a file edited and touched back still reads as changed.
func sysIdentity(sys any) (ino, ctimeNanos int64) {
	st, ok := sys.(*syscall.Stat_t)
	if !ok {
		return 0, 0
	}
	return int64(st.Ino), st.Ctim.Nano()
}
