//go:build cgo

package zoo

func noCgo(error) bool { return false }
