package tui

import (
	"strings"

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/relais/relais/appliance/control"
)

// Colours are the 16 ANSI ones only: the Linux console (TERM=linux) has no
// others, and every terminal maps them to its own theme.
var (
	green  = lipgloss.Color("2")
	amber  = lipgloss.Color("3")
	red    = lipgloss.Color("1")
	cyan   = lipgloss.Color("6")
	dimmed = lipgloss.Color("8")
)

// styles are the console's few looks, built once per model.
type styles struct {
	title, tab, activeTab, label, dim, key, selected, banner, ok, warning, alarm lipgloss.Style
}

func newStyles() styles {
	s := lipgloss.NewStyle()
	return styles{
		title:     s.Bold(true),
		tab:       s.Foreground(dimmed),
		activeTab: s.Bold(true).Reverse(true),
		label:     s.Bold(true).Foreground(cyan),
		dim:       s.Foreground(dimmed),
		key:       s.Bold(true),
		selected:  s.Reverse(true),
		banner:    s.Bold(true).Foreground(lipgloss.Color("15")).Background(red),
		ok:        s.Foreground(green),
		warning:   s.Foreground(amber),
		alarm:     s.Bold(true).Foreground(red),
	}
}

// level colours a text by a health level (ok, warning, alarm).
func (s styles) level(level, text string) string {
	switch level {
	case control.LevelOK:
		return s.ok.Render(text)
	case control.LevelWarning:
		return s.warning.Render(text)
	case control.LevelAlarm:
		return s.alarm.Render(text)
	}
	return s.dim.Render(text)
}

// fit cuts or pads text to exactly h lines of at most w cells.
func fit(text string, w, h int) string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) > h {
		lines = lines[:h]
	}
	for i, l := range lines {
		lines[i] = ansi.Truncate(l, w, "…")
	}
	for len(lines) < h {
		lines = append(lines, "")
	}
	return strings.Join(lines, "\n")
}

// pad right-pads plain text to n cells, or cuts it with an ellipsis.
func pad(text string, n int) string {
	w := ansi.StringWidth(text)
	if w > n {
		return ansi.Truncate(text, n, "…")
	}
	return text + strings.Repeat(" ", n-w)
}
