package tui

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
)

// Every call to relaisd runs in a tea.Cmd under a deadline, so a slow or
// stuck daemon never freezes the screen: the call fails and the console says
// "daemon not answering".

// Messages carrying the daemon's answers.
type (
	statusMsg struct {
		st  control.Status
		err error
	}
	studiesMsg struct {
		studies []control.Study
		err     error
	}
	eventsMsg struct {
		events []control.Event
		err    error
	}
	configMsg struct {
		cfg config.Config
		err error
	}
	timelineMsg struct {
		study    control.Study
		timeline []control.Event
		err      error
	}
	// doneMsg ends an action: what was done, in words, or why it failed.
	doneMsg struct {
		what string
		err  error
		// reload asks for the configuration again (it changed).
		reload bool
	}
	echoMsg struct {
		res control.EchoResult
		err error
	}
	parkedMsg struct {
		parked []control.ParkedInstance
		err    error
	}
)

// call runs fn under the model's deadline.
func (m *Model) call(fn func(ctx context.Context) tea.Msg) tea.Cmd {
	timeout := m.opts.Timeout
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return fn(ctx)
	}
}

func (m *Model) fetchStatus() tea.Cmd {
	return m.call(func(ctx context.Context) tea.Msg {
		st, err := m.api.Status(ctx)
		return statusMsg{st, err}
	})
}

func (m *Model) fetchStudies() tea.Cmd {
	return m.call(func(ctx context.Context) tea.Msg {
		s, err := m.api.Studies(ctx, 50)
		return studiesMsg{s, err}
	})
}

func (m *Model) fetchEvents() tea.Cmd {
	return m.call(func(ctx context.Context) tea.Msg {
		e, err := m.api.Events(ctx, control.EventQuery{Limit: 300})
		return eventsMsg{e, err}
	})
}

func (m *Model) fetchConfig() tea.Cmd {
	return m.call(func(ctx context.Context) tea.Msg {
		c, err := m.api.Config(ctx)
		return configMsg{c, err}
	})
}

func (m *Model) fetchParked() tea.Cmd {
	return m.call(func(ctx context.Context) tea.Msg {
		p, err := m.api.Parked(ctx, 50)
		return parkedMsg{p, err}
	})
}

func (m *Model) fetchTimeline(uid string) tea.Cmd {
	return m.call(func(ctx context.Context) tea.Msg {
		s, tl, err := m.api.Study(ctx, uid)
		return timelineMsg{s, tl, err}
	})
}

// act runs an action and reports it with what (in words) on success.
func (m *Model) act(what string, reload bool, fn func(ctx context.Context) error) tea.Cmd {
	return m.call(func(ctx context.Context) tea.Msg {
		return doneMsg{what: what, err: fn(ctx), reload: reload}
	})
}

// echo C-ECHOes a destination or a modality; the daemon's own deadline is
// 15 s, so this call gets more than the usual one.
func (m *Model) echo(req control.EchoRequest) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), m.opts.Timeout+20*time.Second)
		defer cancel()
		res, err := m.api.Echo(ctx, req)
		return echoMsg{res, err}
	}
}

// notAnswering reports whether err means the daemon could not be reached
// in time (as opposed to a refusal it answered with).
func notAnswering(err error) bool {
	var ce *control.Error
	if errors.As(err, &ce) {
		return false
	}
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) || strings.Contains(err.Error(), "not answering")
}
