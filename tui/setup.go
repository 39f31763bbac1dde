package tui

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	tea "charm.land/bubbletea/v2"
	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
)

// The Setup screen: a menu of sections; each opens a form (node,
// retention, network), a list of forms (modalities, destinations) or the
// tunnel's page. Every change is validated field by field, confirmed, then
// applied live by relaisd.

const (
	nodeSection = iota
	modalitiesSection
	destinationsSection
	tunnelSection
	networkSection
	retentionSection
	consoleKeysSection
	wizardSection
	sectionCount
)

var sectionNames = [sectionCount]string{"This node", "Modalities", "Destinations", "Tunnel", "Network", "Retention", "Console keys", "Wizard"}

type setupView struct {
	cursor int
	open   int // the section shown (modalities, destinations, tunnel, console keys), -1 for the menu
	item   int // cursor in the open section's list
	wizard int // the wizard's step, 0 when it is not running
	// outcomes say how each of the wizard's steps ended ("" not reached);
	// wizardNext: the next step waits for the configuration to be read.
	outcomes   []string
	wizardNext bool

	tunnel       TunnelSettings
	network      NetworkSettings
	settingsErr  error
	haveSettings bool

	keys     control.ConsoleKeys
	keysErr  error
	haveKeys bool
}

type settingsMsg struct {
	tunnel  TunnelSettings
	network NetworkSettings
	err     error
}

// fetchSettings reads the tunnel's and the network's settings.
func (m *Model) fetchSettings() tea.Cmd {
	return m.call(func(ctx context.Context) tea.Msg {
		t, err := m.settings.Tunnel(ctx)
		n, err2 := m.settings.Network(ctx)
		return settingsMsg{t, n, errors.Join(err, err2)}
	})
}

func (m *Model) summary(section int) string {
	c := m.cfg
	switch section {
	case nodeSection:
		s := fmt.Sprintf("AE title %s, DICOM port %d", c.AETitle, c.Port)
		if st := m.status; m.haveStatus && (st.AETitle != c.AETitle || st.Port != c.Port) {
			s += fmt.Sprintf(" (relaisd's flags: %s, %d)", st.AETitle, st.Port)
		}
		return s
	case modalitiesSection:
		var names []string
		for _, x := range c.Modalities {
			names = append(names, x.AETitle)
		}
		s := "none allowed yet"
		if len(names) > 0 {
			s = fmt.Sprintf("%d allowed: %s", len(names), strings.Join(names, ", "))
		}
		if c.Learning {
			s += " (learning: any caller let in)"
		}
		return s
	case destinationsSection:
		var ds []string
		for _, d := range c.Destinations {
			ds = append(ds, fmt.Sprintf("%s (%s at %s)", d.Name, d.AETitle, d.Addr()))
		}
		if len(ds) == 0 {
			return "none: studies are held here"
		}
		return strings.Join(ds, ", ")
	case tunnelSection:
		return m.status.Tunnel.State
	case networkSection:
		if errors.Is(m.setup.settingsErr, ErrNotAvailable) {
			return "not yet available on this box"
		}
		if m.setup.network.Mode == "" || m.setup.network.Mode == "dhcp" {
			return "dhcp (the network gives the address)"
		}
		return m.setup.network.Mode + " " + m.setup.network.Address
	case retentionSection:
		r := c.Retention
		return fmt.Sprintf("%d days; purge above %d %% down to %d %%", r.MaxAgeDays, r.HighWatermarkPercent, r.LowWatermarkPercent)
	case consoleKeysSection:
		return m.keysSummary()
	case wizardSection:
		return "walk through all of this in order, then echo the reading center"
	}
	return ""
}

func (m *Model) setupView() (string, string) {
	if !m.haveConfig {
		return "waiting for relaisd's configuration…", "q quit"
	}
	switch m.setup.open {
	case modalitiesSection, destinationsSection:
		return m.itemsView()
	case tunnelSection:
		if m.setup.wizard > 0 {
			return m.tunnelView(), "p paste · i import a file · e edit · n skip · esc stop the wizard"
		}
		return m.tunnelView(), "p paste a wg-quick file · i import one · e edit · esc back · q quit"
	case consoleKeysSection:
		return m.consoleKeysView()
	}
	rows := make([]string, sectionCount)
	for i := range rows {
		rows[i] = pad(sectionNames[i], 14) + m.summary(i)
	}
	return m.cursorList(rows, m.setup.cursor, m.bodyLines()), "↑/↓ choose · enter open · w wizard · 1-5/tab screens · q quit"
}

func (m *Model) setupKey(key string) tea.Cmd {
	if !m.haveConfig {
		return nil
	}
	switch m.setup.open {
	case modalitiesSection, destinationsSection:
		return m.itemsKey(key)
	case tunnelSection:
		switch key {
		case "e":
			return m.tunnelForm()
		case "i":
			return m.importForm()
		case "p":
			return m.pasteForm()
		case "n", "enter":
			if m.setup.wizard > 0 {
				return m.skipWizardStep()
			}
		case "esc", "backspace":
			if m.setup.wizard > 0 {
				m.askStopWizard()
				return nil
			}
			m.setup.open, m.notice = -1, ""
		}
		return nil
	case consoleKeysSection:
		return m.consoleKeysKey(key)
	}
	if c, ok := moveCursor(m.setup.cursor, sectionCount, key); ok {
		m.setup.cursor = c
		return nil
	}
	switch key {
	case "enter":
		m.notice = ""
		return m.openSection(m.setup.cursor)
	case "w":
		return m.startWizard()
	}
	return nil
}

func (m *Model) openSection(section int) tea.Cmd {
	switch section {
	case nodeSection:
		return m.nodeForm()
	case modalitiesSection, destinationsSection:
		m.setup.open, m.setup.item = section, 0
	case tunnelSection:
		m.setup.open = section
		return m.once("settings", m.fetchSettings())
	case networkSection:
		return m.networkForm()
	case retentionSection:
		return m.retentionForm()
	case consoleKeysSection:
		m.setup.open, m.setup.item = section, 0
		return m.once("keys", m.fetchConsoleKeys())
	case wizardSection:
		return m.startWizard()
	}
	return nil
}

// items are the open list section's rows.
func (m *Model) items() []string {
	var rows []string
	if m.setup.open == modalitiesSection {
		for _, x := range m.cfg.Modalities {
			rows = append(rows, fmt.Sprintf("%s %s %s", pad(x.AETitle, 16), pad(orAny(x.Address), 18), portOrNone(x.Port)))
		}
		return append(rows, "+ add a modality")
	}
	for _, d := range m.cfg.Destinations {
		commit := "no commitment"
		if d.Commitment {
			commit = "storage commitment"
		}
		state := ""
		if d.Paused {
			state = " (paused)"
		}
		rows = append(rows, fmt.Sprintf("%s %s %s %s%s", pad(d.Name, 10), pad(d.AETitle, 16), pad(d.Addr(), 22), commit, state))
	}
	return append(rows, "+ add a destination")
}

func (m *Model) itemsView() (string, string) {
	rows := m.items()
	m.setup.item = min(m.setup.item, len(rows)-1)
	title := sectionNames[m.setup.open]
	if m.setup.open == modalitiesSection {
		learning := "off"
		if m.cfg.Learning {
			learning = "on: any caller is let in and recorded"
		}
		title += " allowed to send · learning mode " + learning
	}
	help := "↑/↓ choose · enter edit/add · x remove · esc back · q quit"
	if m.setup.open == modalitiesSection {
		help = "↑/↓ choose · enter edit/add · x remove · l learning on/off · esc back · q quit"
	}
	return m.st.title.Render(title) + "\n" + m.cursorList(rows, m.setup.item, m.bodyLines()-1), help
}

// listKey moves the open list's cursor over n rows, or closes the list
// (esc); handled is false for other keys, i is the cursor's row.
func (m *Model) listKey(n int, key string) (i int, handled bool) {
	if c, ok := moveCursor(m.setup.item, n, key); ok {
		m.setup.item = c
		return c, true
	}
	if key == "esc" || key == "backspace" {
		m.setup.open = -1
		return m.setup.item, true
	}
	return m.setup.item, false
}

func (m *Model) itemsKey(key string) tea.Cmd {
	rows := m.items()
	i, handled := m.listKey(len(rows), key)
	if handled {
		return nil
	}
	modalities := m.setup.open == modalitiesSection
	switch key {
	case "enter":
		if modalities {
			return m.modalityForm(i)
		}
		return m.destinationForm(i)
	case "l":
		if !modalities {
			return nil // learning is about callers, not destinations
		}
		on := !m.cfg.Learning
		word := map[bool]string{true: "on", false: "off"}[on]
		m.ask("Turn learning mode "+word+"?", m.apply("learning mode "+word, func(c *config.Config) { c.Learning = on }), nil)
	case "x":
		if i >= len(rows)-1 {
			return nil
		}
		if modalities {
			ae := m.cfg.Modalities[i].AETitle
			m.ask("Remove modality "+ae+"? It will be refused.", m.apply(ae+" removed", func(c *config.Config) {
				c.Modalities = slices.Delete(c.Modalities, i, i+1)
			}), nil)
		} else {
			name := m.cfg.Destinations[i].Name
			m.ask("Remove destination "+name+"? Its queue is kept until it comes back.", m.apply(name+" removed", func(c *config.Config) {
				c.Destinations = slices.Delete(c.Destinations, i, i+1)
			}), nil)
		}
	}
	return nil
}

// apply changes a copy of the configuration and has relaisd validate, save
// and apply it.
func (m *Model) apply(what string, change func(*config.Config)) tea.Cmd {
	c := m.cfg
	c.Modalities = slices.Clone(c.Modalities)
	c.Destinations = slices.Clone(c.Destinations)
	c.Urgent = slices.Clone(c.Urgent)
	change(&c)
	return m.act(what+": saved and applied", true, func(ctx context.Context) error { return m.api.SetConfig(ctx, c) })
}

func orAny(addr string) string {
	if addr == "" {
		return "from anywhere"
	}
	return "from " + addr
}

func portOrNone(p int) string {
	if p == 0 {
		return "no port (cannot be echoed)"
	}
	return fmt.Sprintf("port %d", p)
}
