package tui

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/charmbracelet/x/ansi"
	"github.com/relais/relais/appliance/control"
)

// A page covers the current screen until esc: the details of an alarm or
// an event (its full text, wrapped, and the technical cause below), or the
// keys of the screen. It is a snapshot of what was selected.
type page struct {
	title string
	body  string // wrapped to the width when shown
}

// pageKeys close a page; the screen keys (1-5, tab) and quit work as usual.
var pageKeys = []string{"esc", "backspace", "enter", "?", "h"}

func (m *Model) pageView() (string, string) {
	body := m.st.title.Render(m.page.title) + "\n\n" + ansi.Wrap(m.page.body, m.width, " ")
	return body, "esc back · q quit"
}

// explained is a text from the daemon laid out for a page: the sentence,
// then the cause under its heading.
func (m *Model) explained(text string) string {
	sentence, cause := plainText(text)
	if cause == "" {
		return sentence
	}
	return sentence + "\n\n" + m.st.label.Render("Technical cause") + "\n" + m.st.dim.Render(cause)
}

// alarmPage shows one alarm in full, with the key that fixes it.
func (m *Model) alarmPage(a control.Alarm) *page {
	body := m.explained(a.Message)
	if fix := alarmFix(a.Key); fix != "" {
		body = fmt.Sprintf("%s\n\nPress %s %s (from the dashboard).", body, m.st.key.Render(a.Key), fix)
	}
	title := map[string]string{control.LevelAlarm: "Alarm", control.LevelWarning: "Warning"}[a.Level]
	return &page{title: m.st.level(a.Level, title), body: body}
}

// eventPage shows one event: when, what kind, how serious, its full text
// and cause, and its attributes.
func (m *Model) eventPage(e control.Event) *page {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %s  %s\n\n", e.Time.Local().Format("2006-01-02 15:04:05"), e.Kind, m.severity(e.Severity, e.Severity))
	b.WriteString(m.explained(e.Message))
	if len(e.Attrs) > 0 {
		b.WriteString("\n\n" + m.st.label.Render("Attributes"))
		for _, k := range slices.Sorted(maps.Keys(e.Attrs)) {
			fmt.Fprintf(&b, "\n%s %s", pad(k, 12), e.Attrs[k])
		}
	}
	return &page{title: "Event", body: b.String()}
}

// globalKeys work on every screen outside forms.
var globalKeys = [][2]string{
	{"1-5, F1-F5", "go to a screen (Dashboard, Studies, Events, Setup, Actions)"},
	{"tab, shift+tab", "next, previous screen"},
	{"? or h", "this list of keys; esc closes it"},
	{"q, ctrl+c", "quit the console (relaisd goes on)"},
}

// helpItems splits a screen's help ("↑/↓ choose · enter open · q quit")
// into its keys and what they do, without the global ones.
func helpItems(help string) [][2]string {
	var out [][2]string
	for _, it := range strings.Split(help, " · ") {
		key, what, _ := strings.Cut(it, " ")
		if key == "q" || key == "?" || strings.HasPrefix(key, "1-5") {
			continue
		}
		out = append(out, [2]string{key, what})
	}
	return out
}

// keysPage lists the current screen's keys (from its help line, which
// names them all) and the global ones.
func (m *Model) keysPage(help string) *page {
	var b strings.Builder
	row := func(k [2]string) { fmt.Fprintf(&b, "  %s %s\n", m.st.key.Render(pad(k[0], 16)), k[1]) }
	b.WriteString(m.st.label.Render("On this screen") + "\n")
	for _, k := range helpItems(help) {
		row(k)
	}
	b.WriteString("\n" + m.st.label.Render("Everywhere") + "\n")
	for _, k := range globalKeys {
		row(k)
	}
	return &page{title: "Keys: " + screenNames[m.screen], body: b.String()}
}

// footer is a screen's help cut to the width: "? keys · q quit" and as many
// of the screen's own keys, first first, as fit. Forms and typing have
// their own help (? is a character there), kept as it is.
func footer(help string, width int) string {
	if !strings.HasSuffix(help, "q quit") {
		return help
	}
	tail := "? keys · q quit"
	items := helpItems(help)
	// esc (back, clear) is how one gets out: it stays.
	if i := slices.IndexFunc(items, func(k [2]string) bool { return k[0] == "esc" }); i >= 0 {
		tail = "esc " + items[i][1] + " · " + tail
		items = slices.Delete(items, i, i+1)
	}
	out := ""
	for _, k := range items {
		next := k[0] + " " + k[1] + " · "
		if ansi.StringWidth(out+next+tail) > width {
			break
		}
		out += next
	}
	return out + tail
}
