package tui

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"charm.land/bubbles/v2/progress"
	tea "charm.land/bubbletea/v2"
	"github.com/relais/relais/appliance/control"
)

// healthLine is one word per part, coloured; or, when relaisd does not
// answer, a banner saying so.
func (m *Model) healthLine() string {
	if m.down != nil {
		since := time.Since(m.downSince).Round(time.Second)
		return m.st.banner.Render(fmt.Sprintf(" daemon not answering (%s) ", since)) + " " +
			m.st.dim.Render("retrying; what is shown is what it said last")
	}
	if !m.haveStatus {
		return ""
	}
	h := m.status.Health
	part := func(name, level string) string {
		word := map[string]string{control.LevelOK: "ok", control.LevelWarning: "warning", control.LevelAlarm: "ALARM"}[level]
		return m.st.level(level, "● "+name+" "+word)
	}
	return strings.Join([]string{part("receiving", h.Receiving), part("forwarding", h.Forwarding),
		part("tunnel", h.Tunnel), part("disk", h.Disk)}, "   ")
}

func (m *Model) dashboardView() string {
	s := m.status
	var b strings.Builder
	label := func(l string) string { return m.st.label.Render(pad(l, 12)) }

	fmt.Fprintf(&b, "%s%s\n", label("Send to"), sendTo(s))
	last := "nothing received yet"
	if s.Receiving.LastSender != "" {
		last = fmt.Sprintf("last from %s at %s", s.Receiving.LastSender, s.Receiving.LastAt.Local().Format("15:04:05"))
	}
	fmt.Fprintf(&b, "%s%d association(s) open · %s\n", label("Receiving"), s.Receiving.Associations, last)
	fmt.Fprintf(&b, "%s%d instance(s), %s since boot · %d stud(ies) today", label(""),
		s.Receiving.Instances, size(s.Receiving.Bytes), m.studiesToday())
	if s.Receiving.ResultsToday > 0 {
		fmt.Fprintf(&b, " · %d result(s) back", s.Receiving.ResultsToday)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "%s%d stud(ies), %d instance(s), %s\n", label("Stored"), s.Stored.Studies, s.Stored.Instances, size(s.Stored.Bytes))
	if s.Stored.Conflicts > 0 {
		fmt.Fprintf(&b, "%s%s\n", label(""), m.st.warning.Render(fmt.Sprintf("%d conflicting copy(ies) held for review: relais conflicts", s.Stored.Conflicts)))
	}

	if len(s.Destinations) == 0 {
		fmt.Fprintf(&b, "%s%s\n", label("Forwarding"), m.st.warning.Render("no destination: studies are held here (press s)"))
	}
	for _, d := range s.Destinations {
		b.WriteString(m.destinationView(d, label))
	}

	t := s.Tunnel
	tunnel := t.State
	if t.HandshakeAge != "" {
		tunnel += " · handshake " + t.HandshakeAge + " ago"
	}
	if t.Endpoint != "" {
		tunnel += " · " + t.Endpoint
	}
	if t.State != "not configured" {
		tunnel += fmt.Sprintf(" · rx %s tx %s", size(t.RxBytes), size(t.TxBytes))
	}
	fmt.Fprintf(&b, "%s%s\n", label("Tunnel"), m.st.level(s.Health.Tunnel, tunnel))

	disk := fmt.Sprintf("%.0f %% used · %s free · %s undelivered", s.Disk.UsedPercent, size(int64(s.Disk.Free)), size(s.Disk.Undelivered))
	if !s.Disk.SaveFailingSince.IsZero() {
		disk = "failing to save since " + s.Disk.SaveFailingSince.Local().Format("15:04") + " · " + disk
	}
	fmt.Fprintf(&b, "%s%s\n", label("Disk"), m.st.level(s.Health.Disk, disk))
	if m.haveConfig {
		r := m.cfg.Retention
		fmt.Fprintf(&b, "%sdelivered studies kept %d days, purged above %d %% of the disk\n", label(""), r.MaxAgeDays, r.HighWatermarkPercent)
	}
	version := "relaisd " + s.Version
	if s.Image != "" {
		version += " · image " + s.Image
	}
	fmt.Fprintf(&b, "%s%s\n", label("Version"), version)
	if s.Update != nil {
		level, text := s.Update.Summary()
		fmt.Fprintf(&b, "%s%s\n", label("Update"), m.st.level(level, text))
	}

	if len(s.Alarms) == 0 {
		fmt.Fprintf(&b, "\n%s\n", m.st.ok.Render("No alarms."))
		return b.String()
	}
	return m.alarmsView(b.String())
}

// alarmsView puts the alarms in the lines the status lines above leave:
// all of them, or a window of them that holds the cursor. When not one row
// fits, the title with the count still shows, over the status's last lines.
func (m *Model) alarmsView(above string) string {
	alarms := m.status.Alarms
	m.alarmCursor = min(m.alarmCursor, len(alarms)-1)
	title := m.st.title.Render(fmt.Sprintf("Alarms (%d)", len(alarms)))
	rows := m.bodyLines() - strings.Count(above, "\n") - 2 // a blank line and the title
	if rows < 1 {
		lines := strings.SplitAfter(above, "\n")
		above = strings.Join(lines[:min(m.bodyLines()-1, len(lines))], "")
		return above + title + m.st.dim.Render(fmt.Sprintf(" — enlarge the window, or enter reads alarm %d (↑/↓ choose)", m.alarmCursor+1)) + "\n"
	}
	list := make([]string, len(alarms))
	for i, a := range alarms {
		sentence, _ := control.SplitCause(a.Message) // the cause is in its details
		line := "! " + sentence
		if fix := alarmFix(a.Key); fix != "" {
			line += " — press " + a.Key + " " + fix
		}
		list[i] = m.st.level(a.Level, line)
	}
	return above + "\n" + title + "\n" + m.cursorList(list, m.alarmCursor, rows)
}

// destinationView is two or three lines about one destination.
func (m *Model) destinationView(d control.DestinationStatus, label func(string) string) string {
	var b strings.Builder
	state := string(d.State)
	level := control.LevelOK
	switch d.State {
	case control.DestRetrying:
		level = control.LevelAlarm
		state = "unreachable for " + d.FailingFor
	case control.DestStalled:
		level = control.LevelAlarm
		state = "stalled for " + d.StalledFor
	case control.DestPaused:
		level = control.LevelWarning
	}
	if d.Parked > 0 {
		level = control.LevelAlarm
		state += fmt.Sprintf(" · %d parked", d.Parked)
	}
	fmt.Fprintf(&b, "%s%s at %s · %s · %d sent since boot\n", label("→ "+d.Name), d.AETitle, d.Address, m.st.level(level, state), d.SentSince)
	queue := fmt.Sprintf("queue %d (%s)", d.QueueDepth, size(d.QueueBytes))
	if d.OldestWaiting != "" {
		queue += " · oldest waiting " + d.OldestWaiting
	}
	if r := m.rates.of(d.Name); r >= 1 {
		queue += fmt.Sprintf(" · %s/s", size(int64(r)))
		if d.QueueBytes > 0 {
			queue += ", " + eta(float64(d.QueueBytes)/r)
		}
	}
	fmt.Fprintf(&b, "%s%s\n", label(""), queue)
	if d.Sending != "" {
		done, total := m.progressOf(d.Sending, d.Name)
		bar := progress.New(progress.WithColors(cyan), progress.WithWidth(24), progress.WithoutPercentage())
		pct := 0.0
		if total > 0 {
			pct = float64(done) / float64(total)
		}
		fmt.Fprintf(&b, "%ssending %s %s %d/%d\n", label(""), m.studyName(d.Sending), bar.ViewAs(pct), done, total)
	}
	return b.String()
}

// progressOf counts a study's instances done at a destination, from the
// last list of studies.
func (m *Model) progressOf(uid, dest string) (done, total int) {
	i := slices.IndexFunc(m.studies.list, func(s control.Study) bool { return s.StudyInstanceUID == uid })
	if i < 0 {
		return 0, 0
	}
	for _, d := range m.studies.list[i].Destinations {
		if d.Name == dest {
			done = d.Delivered + d.Committed
			return done, done + d.Pending + d.InFlight + d.Failed
		}
	}
	return 0, 0
}

// studyName names a study for people: patient and description.
func (m *Model) studyName(uid string) string {
	for _, s := range m.studies.list {
		if s.StudyInstanceUID == uid {
			return pad(strings.ReplaceAll(s.PatientName, "^", " ")+" "+s.Description, 24)
		}
	}
	return pad(uid, 24)
}

func (m *Model) studiesToday() int {
	n := 0
	y, mo, d := time.Now().Date()
	for _, s := range m.studies.list {
		if sy, smo, sd := s.FirstReceived.Local().Date(); sy == y && smo == mo && sd == d {
			n++
		}
	}
	return n
}

// alarmFix says what an alarm's key does.
func alarmFix(key string) string {
	switch key {
	case "a":
		return "to allow"
	case "r":
		return "to retry now"
	case "p":
		return "to resume"
	case "s":
		return "to set up"
	}
	return ""
}

func (m *Model) dashboardKey(s string) tea.Cmd {
	if c, ok := moveCursor(m.alarmCursor, len(m.status.Alarms), s); ok {
		m.alarmCursor = c
		return nil
	}
	switch s {
	case "enter":
		if m.alarmCursor < len(m.status.Alarms) {
			m.page = m.alarmPage(m.status.Alarms[m.alarmCursor])
		}
	case "a":
		return m.askCaller()
	case "r":
		var cmds []tea.Cmd
		for _, d := range m.status.Destinations {
			if d.State == control.DestRetrying || d.Failed > 0 || d.Parked > 0 {
				cmds = append(cmds, m.retry(d.Name))
			}
		}
		if len(cmds) == 0 {
			m.notice = "nothing to retry"
		}
		return tea.Batch(cmds...)
	case "p":
		for _, d := range m.status.Destinations {
			if d.State == control.DestPaused {
				return m.askPause(d.Name, false)
			}
		}
		return m.show(actionsScreen)
	case "e":
		if len(m.status.Destinations) == 0 {
			m.notice = "no destination to echo: set one up first (s)"
			return nil
		}
		return m.echoDestination(m.status.Destinations[0].Name)
	case "s":
		return m.show(setupScreen)
	}
	return nil
}

// askCaller asks about the first unknown caller: allow or deny.
func (m *Model) askCaller() tea.Cmd {
	for _, c := range m.status.Callers {
		if !c.Learned {
			m.ask(fmt.Sprintf("Allow %s (%s) to send to this box?", c.AETitle, c.Address),
				m.approve(c.AETitle, c.Address), m.deny(c.AETitle, c.Address))
			return nil
		}
	}
	m.notice = "no unknown caller"
	return nil
}

// size writes a byte count for people.
func size(n int64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d B", n)
	case n < 1e6:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	case n < 1e9:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n < 1e12:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	}
	return fmt.Sprintf("%.1f TB", float64(n)/1e12)
}

// sendTo is what a modality must be told: our AE title, address(es), port.
func sendTo(s control.Status) string {
	if to := s.SendTo(); to != "" {
		return to
	}
	return fmt.Sprintf("%s port %d · the box has no network address yet (Setup → Network)", s.AETitle, s.Port)
}

// eta says roughly how long the rest takes, in seconds.
func eta(seconds float64) string {
	d := time.Duration(seconds * float64(time.Second))
	switch {
	case d < 10*time.Second:
		return "a few seconds left"
	case d.Round(10*time.Second) < time.Minute:
		return fmt.Sprintf("about %d s left", int(d.Round(10*time.Second).Seconds()))
	case d.Round(time.Minute) < time.Hour:
		return fmt.Sprintf("about %d min left", int(d.Round(time.Minute).Minutes()))
	case d < 48*time.Hour:
		d = d.Round(10 * time.Minute)
		return fmt.Sprintf("about %d h %02d min left", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("about %d days left", int(d.Hours()/24+0.5))
}
