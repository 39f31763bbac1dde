package tui

import "strings"

// cursorList shows rows with the cursor's highlighted, scrolled so that it
// stays within h rows.
func (m *Model) cursorList(rows []string, cursor, h int) string {
	if len(rows) == 0 {
		return ""
	}
	h = max(h, 1)
	first := 0
	if cursor >= h {
		first = cursor - h + 1
	}
	var b strings.Builder
	for i := first; i < len(rows) && i < first+h; i++ {
		if i == cursor {
			b.WriteString(m.st.selected.Render("› "+rows[i]) + "\n")
		} else {
			b.WriteString("  " + rows[i] + "\n")
		}
	}
	return b.String()
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
