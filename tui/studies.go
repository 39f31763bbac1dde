package tui

import (
	"context"
	"fmt"
	"strings"

	tea "charm.land/bubbletea/v2"
	"github.com/relais/relais/appliance/control"
)

// studiesView lists recent studies; enter opens one with its timeline.
type studiesView struct {
	list     []control.Study
	cursor   int
	open     string // the study shown in detail, "" for the list
	detail   control.Study
	timeline []control.Event
}

func (m *Model) studiesView() (string, string) {
	if m.studies.open != "" {
		return m.studyDetail(), "u urgent on/off · r retry · esc back · 1-5/tab screens · q quit"
	}
	help := "↑/↓ choose · enter timeline · u urgent on/off · r retry · 1-5 screens · q quit"
	if len(m.studies.list) == 0 {
		return "No study received yet.", help
	}
	m.studies.cursor = min(m.studies.cursor, len(m.studies.list)-1)
	head := fmt.Sprintf("  %-8s %-20s %-16s %-5s %5s %-10s %s", "RECEIVED", "PATIENT", "DESCRIPTION", "MOD", "INST", "STATE", "")
	rows := make([]string, len(m.studies.list))
	for i, s := range m.studies.list {
		urgent := ""
		if s.Urgent {
			urgent = "URGENT"
		}
		rows[i] = fmt.Sprintf("%-8s %s %s %s %5d %s %s", s.LastReceived.Local().Format("15:04:05"),
			pad(strings.ReplaceAll(s.PatientName, "^", " "), 20), pad(s.Description, 16), pad(strings.Join(s.Modalities, ","), 5),
			s.Instances, pad(string(s.State), 10), urgent)
	}
	return m.st.label.Render(head) + "\n" + m.cursorList(rows, m.studies.cursor, m.bodyLines()-2), help
}

// studyDetail is one study, where it stands at each destination, and its
// timeline from the event log.
func (m *Model) studyDetail() string {
	s := m.studies.detail
	if s.StudyInstanceUID != m.studies.open {
		return "loading " + m.studies.open + "…"
	}
	var b strings.Builder
	urgent := ""
	if s.Urgent {
		urgent = m.st.alarm.Render(" URGENT")
	}
	fmt.Fprintf(&b, "%s%s\n", m.st.title.Render(strings.ReplaceAll(s.PatientName, "^", " ")+" · "+s.Description), urgent)
	fmt.Fprintf(&b, "patient %s · date %s · accession %s · %s\n", s.PatientID, s.StudyDate, s.AccessionNumber, strings.Join(s.Modalities, ","))
	fmt.Fprintf(&b, "%d instance(s), %s · state %s\n", s.Instances, size(s.Bytes), s.State)
	fmt.Fprintf(&b, "study %s\n", s.StudyInstanceUID)
	for _, d := range s.Destinations {
		fmt.Fprintf(&b, "→ %s: %d waiting, %d sending, %d delivered, %d committed, %d failed", d.Name, d.Pending, d.InFlight, d.Delivered, d.Committed, d.Failed)
		if d.LastError != "" {
			why, _ := plainText(d.LastError)
			fmt.Fprintf(&b, " (%s)", why)
		}
		b.WriteString("\n")
	}
	if len(s.Destinations) == 0 {
		b.WriteString("→ held here: no destination takes it\n")
	}
	b.WriteString(m.st.label.Render("Timeline") + "\n")
	for _, e := range m.studies.timeline {
		fmt.Fprintf(&b, "%s  %s\n", e.Time.Local().Format("15:04:05"), e.Message)
	}
	return b.String()
}

// selectedStudy is the study under the cursor or the one open.
func (m *Model) selectedStudy() (control.Study, bool) {
	if m.studies.open != "" {
		return m.studies.detail, m.studies.detail.StudyInstanceUID == m.studies.open
	}
	if m.studies.cursor < len(m.studies.list) {
		return m.studies.list[m.studies.cursor], true
	}
	return control.Study{}, false
}

func (m *Model) studiesKey(key string) tea.Cmd {
	if c, ok := moveCursor(m.studies.cursor, len(m.studies.list), key); ok && m.studies.open == "" {
		m.studies.cursor = c
		return nil
	}
	s, ok := m.selectedStudy()
	switch key {
	case "enter":
		if ok && m.studies.open == "" {
			m.studies.open = s.StudyInstanceUID
			return m.once("timeline", m.fetchTimeline(s.StudyInstanceUID))
		}
	case "esc", "backspace":
		m.studies.open = ""
	case "u":
		if ok {
			urgent := !s.Urgent
			word := map[bool]string{true: "marked urgent", false: "no longer urgent"}[urgent]
			return m.act(patient(s)+" "+word, false, func(ctx context.Context) error { return m.api.MarkUrgent(ctx, s.StudyInstanceUID, urgent) })
		}
	case "r":
		if ok {
			return m.retryStudy(s)
		}
	}
	return nil
}

// retryStudy retries the destinations where the study failed, or all of
// its destinations when none failed.
func (m *Model) retryStudy(s control.Study) tea.Cmd {
	var cmds []tea.Cmd
	for _, d := range s.Destinations {
		if d.Failed > 0 {
			cmds = append(cmds, m.retry(d.Name))
		}
	}
	if len(cmds) == 0 {
		for _, d := range s.Destinations {
			cmds = append(cmds, m.retry(d.Name))
		}
	}
	if len(cmds) == 0 {
		m.notice = "no destination takes this study: nothing to retry"
	}
	return tea.Batch(cmds...)
}

func patient(s control.Study) string {
	return strings.ReplaceAll(s.PatientName, "^", " ") + " (" + s.Description + ")"
}
