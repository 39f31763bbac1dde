package tui

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/x/ansi"
)

// cursorList shows rows in h lines with the cursor's highlighted: when they
// do not all fit, a window of them that holds the cursor, and dim lines
// (counted in h) saying how many are above and below. The cursor's row is
// shown reversed, without colours of its own.
func (m *Model) cursorList(rows []string, cursor, h int) string {
	if len(rows) == 0 {
		return ""
	}
	h = max(h, 1)
	first, last := window(len(rows), cursor, h)
	var b strings.Builder
	if first > 0 && h >= 3 {
		b.WriteString(m.st.dim.Render(fmt.Sprintf("  ↑ %d more above", first)) + "\n")
	}
	for i := first; i < last; i++ {
		if i == cursor {
			b.WriteString(m.st.selected.Render("› "+ansi.Strip(rows[i])) + "\n")
		} else {
			b.WriteString("  " + rows[i] + "\n")
		}
	}
	if last < len(rows) && h >= 3 {
		b.WriteString(m.st.dim.Render(fmt.Sprintf("  ↓ %d more below · ↑/↓ to scroll", len(rows)-last)) + "\n")
	}
	return b.String()
}

// window is the rows [first, last) of n shown in h lines, the cursor among
// them. From 3 lines on, it leaves a line above and one below the rows for
// saying what is hidden there; under 3, rows only. Away from both ends the
// cursor is on the window's last row, as when it moves down.
func window(n, cursor, h int) (first, last int) {
	switch {
	case n <= h:
		return 0, n
	case h < 3:
		first = max(cursor-h+1, 0)
		return first, first + h
	case cursor < h-1: // at the top: nothing above
		return 0, h - 1
	case cursor >= n-h+1: // at the bottom: nothing below
		return n - h + 1, n
	}
	return cursor - h + 3, cursor + 1
}

// moveCursor moves a cursor over n rows by a key; ok is false for other keys.
func moveCursor(cursor, n int, key string) (int, bool) {
	switch key {
	case "up", "k":
		cursor--
	case "down", "j":
		cursor++
	case "pgup":
		cursor -= 10
	case "pgdown":
		cursor += 10
	case "home", "g":
		cursor = 0
	case "end", "G":
		cursor = n - 1
	default:
		return cursor, false
	}
	return max(min(cursor, n-1), 0), true
}
