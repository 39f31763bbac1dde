package tui

import (
	"fmt"
	"strings"

	tea "charm.land/bubbletea/v2"
	"github.com/relais/relais/appliance/control"
)

// eventKinds are the store's event kinds, in the order f cycles them.
var eventKinds = []string{"", "association", "store", "reject", "forward", "retry", "commit", "purge", "config", "console"}

// eventsView is the event log, newest first, filtered by kind and text.
type eventsView struct {
	all    []control.Event
	kind   int    // index in eventKinds; 0 is every kind
	search string // shown events contain it (case-insensitive)
	typing bool   // the search is being typed
	cursor int
}

func (v *eventsView) shown() []control.Event {
	var out []control.Event
	kind := eventKinds[v.kind]
	for _, e := range v.all {
		if kind != "" && e.Kind != kind {
			continue
		}
		if v.search != "" && !strings.Contains(strings.ToLower(e.Kind+" "+e.Message), strings.ToLower(v.search)) {
			continue
		}
		out = append(out, e)
	}
	return out
}

func (m *Model) eventsView() (string, string) {
	v := &m.events
	kind := eventKinds[v.kind]
	if kind == "" {
		kind = "all"
	}
	search := v.search
	if v.typing {
		search += "█"
	}
	head := fmt.Sprintf("kind: %s · search: %s", m.st.key.Render(kind), m.st.key.Render(search))
	help := "↑/↓ choose · enter details · f kind · / search · esc clear · q quit"
	if v.typing {
		help = "type to search · enter done · esc clear"
	}
	evs := v.shown()
	if len(evs) == 0 {
		return head + "\n\nNo event matches.", help
	}
	v.cursor = min(v.cursor, len(evs)-1)
	rows := make([]string, len(evs))
	for i, e := range evs {
		sentence, _ := plainText(e.Message) // the cause is in its details
		rows[i] = fmt.Sprintf("%s %s %s %s", e.Time.Local().Format("01-02 15:04:05"), m.severity(e.Severity, pad(e.Severity, 7)), pad(e.Kind, 11), sentence)
	}
	return head + "\n" + m.cursorList(rows, v.cursor, m.bodyLines()-2), help
}

func (m *Model) eventsKey(k tea.KeyPressMsg) tea.Cmd {
	v := &m.events
	s := k.String()
	if v.typing {
		switch {
		case s == "enter":
			v.typing = false
		case s == "esc":
			v.typing, v.search = false, ""
		case s == "backspace":
			if r := []rune(v.search); len(r) > 0 {
				v.search = string(r[:len(r)-1])
			}
		case k.Text != "":
			v.search += k.Text
		}
		v.cursor = 0
		return nil
	}
	if c, ok := moveCursor(v.cursor, len(v.shown()), s); ok {
		v.cursor = c
		return nil
	}
	switch s {
	case "enter":
		if evs := v.shown(); v.cursor < len(evs) {
			m.page = m.eventPage(evs[v.cursor])
		}
	case "f":
		v.kind = (v.kind + 1) % len(eventKinds)
		v.cursor = 0
	case "/":
		v.typing = true
	case "esc":
		v.kind, v.search, v.cursor = 0, "", 0
	}
	return nil
}

// severity colours text by an event's severity.
func (m *Model) severity(sev, text string) string {
	switch sev {
	case "warning":
		return m.st.warning.Render(text)
	case "error":
		return m.st.alarm.Render(text)
	}
	return text
}
