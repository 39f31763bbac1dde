package tui

import (
	"context"
	"errors"
	"fmt"
	"strings"

	tea "charm.land/bubbletea/v2"
	"github.com/relais/relais/appliance/control"
)

// actionsView lists what can be done now: echoes, retry, pause and resume,
// parked instances to retry or abandon, callers to allow or deny.
type actionsView struct {
	cursor int
	parked []control.ParkedInstance
}

type action struct {
	label string
	run   func() tea.Cmd
}

func (m *Model) actionList() []action {
	var out []action
	for _, d := range m.status.Destinations {
		name := d.Name
		out = append(out, action{fmt.Sprintf("Echo %s (%s at %s)", name, d.AETitle, d.Address), func() tea.Cmd { return m.echoDestination(name) }})
	}
	for _, mod := range m.cfg.Modalities {
		if mod.Port == 0 {
			continue
		}
		ae := mod.AETitle
		out = append(out, action{fmt.Sprintf("Echo modality %s (%s port %d)", ae, mod.Address, mod.Port), func() tea.Cmd {
			m.notice = "echoing " + ae + "…"
			return m.echo(control.EchoRequest{Modality: ae})
		}})
	}
	for _, d := range m.status.Destinations {
		name := d.Name
		out = append(out, action{fmt.Sprintf("Retry now: %s (%d waiting, %d failed, %d parked)", name, d.QueueDepth, d.Failed, d.Parked), func() tea.Cmd { return m.retry(name) }})
		if d.State == control.DestPaused {
			out = append(out, action{"Resume " + name, func() tea.Cmd { return m.askPause(name, false) }})
		} else {
			out = append(out, action{"Pause " + name, func() tea.Cmd { return m.askPause(name, true) }})
		}
	}
	for _, p := range m.actions.parked {
		out = append(out, m.parkedActions(p)...)
	}
	for _, c := range m.status.Callers {
		if c.Learned {
			continue
		}
		ae, addr := c.AETitle, c.Address
		who := fmt.Sprintf("%s (%s, %d attempt(s))", ae, addr, c.Attempts)
		out = append(out, action{"Allow caller " + who, func() tea.Cmd { return m.approve(ae, addr) }})
		out = append(out, action{"Deny caller " + who, func() tea.Cmd {
			m.ask(fmt.Sprintf("Forget %s (%s)? It stays refused.", ae, addr), m.deny(ae, addr), nil)
			return nil
		}})
	}
	return out
}

func (m *Model) actionsView() (string, string) {
	list := m.actionList()
	if len(list) == 0 {
		return "Nothing to do: no destination, no modality with a port, no caller waiting.", "1-5/tab screens · q quit"
	}
	m.actions.cursor = min(m.actions.cursor, len(list)-1)
	rows := make([]string, len(list))
	for i, a := range list {
		rows[i] = a.label
	}
	return m.cursorList(rows, m.actions.cursor, m.bodyLines()-1), "↑/↓ choose · enter do it · 1-5/tab screens · q quit"
}

func (m *Model) actionsKey(s string) tea.Cmd {
	list := m.actionList()
	if c, ok := moveCursor(m.actions.cursor, len(list), s); ok {
		m.actions.cursor = c
		return nil
	}
	if s == "enter" && m.actions.cursor < len(list) {
		return list[m.actions.cursor].run()
	}
	return nil
}

// parkedActions offers retrying a parked instance, or abandoning it after
// a confirmation that says what that means.
func (m *Model) parkedActions(p control.ParkedInstance) []action {
	who := fmt.Sprintf("%s, %s (%s)", strings.ReplaceAll(p.PatientName, "^", " "), p.StudyDescription, p.TransferSyntax)
	req := control.InstanceRequest{Destination: p.Destination, SOPInstanceUID: p.SOPInstanceUID, By: "console"}
	return []action{
		{fmt.Sprintf("Retry parked at %s: %s — %s", p.Destination, who, p.Reason), func() tea.Cmd {
			return m.act("retrying the parked instance now", false, func(ctx context.Context) error {
				_, err := m.api.RetryInstance(ctx, req)
				return err
			})
		}},
		{fmt.Sprintf("Abandon parked at %s: %s", p.Destination, who), func() tea.Cmd {
			r := req
			r.Reason = "abandoned on the console"
			m.ask(fmt.Sprintf("Give up sending this instance of %s to %s? It is recorded, and may then be purged.", who, p.Destination),
				m.act("instance abandoned", false, func(ctx context.Context) error { return m.api.Abandon(ctx, r) }), nil)
			return nil
		}},
	}
}

func (m *Model) retry(dest string) tea.Cmd {
	return m.act("retrying "+dest+" now", false, func(ctx context.Context) error { return m.api.Retry(ctx, dest) })
}

func (m *Model) approve(ae, addr string) tea.Cmd {
	return m.act(fmt.Sprintf("%s (%s) may send now", ae, addr), true, func(ctx context.Context) error { return m.api.Approve(ctx, ae, addr) })
}

func (m *Model) deny(ae, addr string) tea.Cmd {
	return m.act(fmt.Sprintf("%s (%s) forgotten; it stays refused", ae, addr), false, func(ctx context.Context) error { return m.api.Deny(ctx, ae, addr) })
}

// askPause asks before pausing or resuming a destination.
func (m *Model) askPause(dest string, pause bool) tea.Cmd {
	if pause {
		m.ask("Pause "+dest+"? Studies wait here until it is resumed.",
			m.act(dest+" paused", true, func(ctx context.Context) error { return m.api.Pause(ctx, dest) }), nil)
	} else {
		m.ask("Resume "+dest+"?", m.act(dest+" resumed", true, func(ctx context.Context) error { return m.api.Resume(ctx, dest) }), nil)
	}
	return nil
}

func (m *Model) echoDestination(dest string) tea.Cmd {
	m.notice = "echoing " + dest + "…"
	return m.echo(control.EchoRequest{Destination: dest})
}

// echoResult says how an echo went, round-trip time included.
func (m *Model) echoResult(msg echoMsg) string {
	switch {
	case msg.err != nil:
		return m.failure("echo failed: ", msg.err)
	case msg.res.OK:
		return m.st.ok.Render(fmt.Sprintf("echo %s: answered in %.1f ms", msg.res.Target, msg.res.RTTms))
	}
	why := msg.res.Error
	if why == "" {
		why = "it answered " + msg.res.Status
	}
	return m.failure(fmt.Sprintf("echo %s: ", msg.res.Target), errors.New(why))
}
