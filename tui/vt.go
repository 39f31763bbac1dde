package tui

import "fmt"

// On the box the console takes over a Linux virtual console (tty1 to
// tty63); init owns /dev/console, so tty2 is usual.

// CheckVT checks a virtual console's number.
func CheckVT(n int) error {
	if n < 1 || n > 63 {
		return fmt.Errorf("virtual console %d: want 1 to 63 (tty1 to tty63; tty2 on gokrazy)", n)
	}
	return nil
}
