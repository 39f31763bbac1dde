package tui

import (
	"errors"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/relais/relais/appliance/control"
)

// The console polls: the status every tick, and what the current screen
// shows. A request still out is not asked again, so a slow daemon gets at
// most one request of each kind at a time.

type tickMsg time.Time

func tick(d time.Duration) tea.Cmd {
	return tea.Tick(d, func(t time.Time) tea.Msg { return tickMsg(t) })
}

// once starts a request unless the same kind is still out.
func (m *Model) once(kind string, cmd tea.Cmd) tea.Cmd {
	if m.busy[kind] {
		return nil
	}
	m.busy[kind] = true
	return cmd
}

// refresh asks for what the current screen shows.
func (m *Model) refresh() tea.Cmd {
	cmds := []tea.Cmd{m.once("status", m.fetchStatus())}
	if !m.haveConfig && m.form == nil {
		// Until relaisd has answered once, whatever the screen: the
		// first-start wizard is offered from the configuration.
		cmds = append(cmds, m.once("config", m.fetchConfig()))
	}
	m.offerWizard()
	switch m.screen {
	case dashboardScreen, studiesScreen:
		cmds = append(cmds, m.once("studies", m.fetchStudies()))
		if uid := m.studies.open; uid != "" && m.screen == studiesScreen {
			cmds = append(cmds, m.once("timeline", m.fetchTimeline(uid)))
		}
	case eventsScreen:
		cmds = append(cmds, m.once("events", m.fetchEvents()))
	case setupScreen, actionsScreen:
		if m.screen == actionsScreen {
			cmds = append(cmds, m.once("parked", m.fetchParked()))
		}
		if m.form == nil {
			cmds = append(cmds, m.once("config", m.fetchConfig()))
		}
		if m.form == nil && m.screen == setupScreen {
			cmds = append(cmds, m.once("settings", m.fetchSettings()), m.once("keys", m.fetchConsoleKeys()))
		}
	}
	return tea.Batch(cmds...)
}

// answer takes a reply from the daemon.
func (m *Model) answer(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case statusMsg:
		m.busy["status"] = false
		if msg.err != nil {
			if m.down == nil {
				m.downSince = time.Now()
			}
			m.down = msg.err
			return nil
		}
		m.down = nil
		m.status, m.haveStatus = msg.st, true
		m.rates.update(msg.st.Destinations, time.Now())
	case studiesMsg:
		m.busy["studies"] = false
		if msg.err == nil {
			m.studies.list = msg.studies
		}
	case eventsMsg:
		m.busy["events"] = false
		if msg.err == nil {
			m.events.all = msg.events
		}
	case timelineMsg:
		m.busy["timeline"] = false
		if msg.err == nil && msg.study.StudyInstanceUID == m.studies.open {
			m.studies.detail, m.studies.timeline = msg.study, msg.timeline
		}
	case configMsg:
		m.busy["config"] = false
		if msg.err == nil {
			m.cfg, m.haveConfig = msg.cfg, true
			m.offerWizard()
		}
		return m.wizardConfigRead()
	case settingsMsg:
		m.busy["settings"] = false
		m.setup.tunnel, m.setup.network, m.setup.settingsErr = msg.tunnel, msg.network, msg.err
		m.setup.haveSettings = true
	case doneMsg:
		if msg.err != nil {
			m.notice = m.failure("failed: ", msg.err)
		} else {
			m.notice = m.st.ok.Render("done: ") + msg.what
		}
		cmds := []tea.Cmd{m.refresh()}
		if msg.reload {
			cmds = append(cmds, m.fetchConfig())
		}
		if m.setup.wizard > 0 {
			if msg.err == nil || errors.Is(msg.err, ErrNotAvailable) {
				cmds = append(cmds, m.wizardStepDone(msg))
			} else {
				m.setup.wizard = 0
				m.notice += "\nThe wizard stopped here: press w on Setup to run it again."
			}
		}
		return tea.Batch(cmds...)
	case keysMsg:
		m.takeKeys(msg)
	case parkedMsg:
		m.busy["parked"] = false
		if msg.err == nil {
			m.actions.parked = msg.parked
		}
	case echoMsg:
		m.notice = m.echoResult(msg)
		if m.setup.wizard > 0 {
			m.notice = m.wizardSummary("Setup wizard done:") + "\n" + m.notice
			m.setup.wizard = 0
		}
	}
	return nil
}

// rates measures each destination's throughput from its byte counter.
type rates map[string]*rate

type rate struct {
	bytes  int64
	at     time.Time
	perSec float64
}

func (r rates) update(ds []control.DestinationStatus, now time.Time) {
	for _, d := range ds {
		x := r[d.Name]
		if x == nil {
			r[d.Name] = &rate{bytes: d.BytesSent, at: now}
			continue
		}
		if dt := now.Sub(x.at).Seconds(); dt > 0 {
			cur := float64(d.BytesSent-x.bytes) / dt
			x.perSec = 0.5*x.perSec + 0.5*cur
		}
		x.bytes, x.at = d.BytesSent, now
	}
}

func (r rates) of(name string) float64 {
	if x := r[name]; x != nil {
		return x.perSec
	}
	return 0
}
