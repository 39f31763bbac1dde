package tui

import (
	"context"
	"fmt"
	"os"
	"strings"

	tea "charm.land/bubbletea/v2"
	"charm.land/huh/v2"
	"github.com/relais/relais/appliance/consolekeys"
	"github.com/relais/relais/appliance/control"
)

// The Setup screen's Console keys: who may open this console over SSH (the
// regional team, through the tunnel). relaisd keeps the list; the console
// shows each key by its fingerprint, adds a pasted one, removes one.

type keysMsg struct {
	keys control.ConsoleKeys
	err  error
}

func (m *Model) fetchConsoleKeys() tea.Cmd {
	return m.call(func(ctx context.Context) tea.Msg {
		k, err := m.api.ConsoleKeys(ctx)
		return keysMsg{k, err}
	})
}

func (m *Model) takeKeys(msg keysMsg) {
	m.busy["keys"] = false
	m.setup.keys, m.setup.keysErr, m.setup.haveKeys = msg.keys, msg.err, true
}

// keysSummary is the Setup menu's line.
func (m *Model) keysSummary() string {
	s := m.setup
	switch {
	case !s.haveKeys:
		return "asking relaisd…"
	case s.keysErr != nil:
		return describe(s.keysErr)
	case len(s.keys.Keys) == 0:
		return "none: nobody can open the console over SSH"
	}
	n := fmt.Sprintf("%d key(s)", len(s.keys.Keys))
	if s.keys.From == control.ConsoleKeysImage {
		return n + " from the image, until the box has its own list"
	}
	return n + " allowed over SSH, through the tunnel"
}

// keyRows are the list's rows: the keys, then "add".
func (m *Model) keyRows() []string {
	var rows []string
	for _, k := range m.setup.keys.Keys {
		rows = append(rows, fmt.Sprintf("%s %s %s", k.Fingerprint, pad(strings.TrimPrefix(k.Type, "ssh-"), 7), k.Comment))
	}
	return append(rows, "+ add a key")
}

func (m *Model) consoleKeysView() (string, string) {
	k := m.setup.keys
	var b strings.Builder
	b.WriteString(m.st.title.Render("Console keys: who may open this console over SSH (through the tunnel)") + "\n")
	switch k.From {
	case control.ConsoleKeysBox:
		b.WriteString("The box's own list.\n")
	case control.ConsoleKeysImage:
		b.WriteString("The image's list (the site file's): a change makes it the box's own.\n")
	default:
		b.WriteString(m.st.warning.Render("No list: nobody can log in over SSH.") + "\n")
	}
	if k.Error != "" {
		b.WriteString(m.st.alarm.Render("The list has bad lines: ") + k.Error + "\n")
	}
	if k.HostKey != "" {
		b.WriteString("Host key " + m.st.key.Render(k.HostKey) + " (checked at the first login)\n")
	} else {
		b.WriteString(m.st.dim.Render("Host key: not made yet (relais-ssh makes it when it first starts)") + "\n")
	}
	rows := m.keyRows()
	m.setup.item = min(m.setup.item, len(rows)-1)
	list := m.cursorList(rows, m.setup.item, m.bodyLines()-strings.Count(b.String(), "\n"))
	return b.String() + list, "↑/↓ choose · enter add · x remove · esc back · q quit"
}

func (m *Model) consoleKeysKey(key string) tea.Cmd {
	i, handled := m.listKey(len(m.keyRows()), key)
	if handled {
		return nil
	}
	switch key {
	case "enter":
		return m.consoleKeyForm()
	case "x":
		if i >= len(m.setup.keys.Keys) {
			return nil
		}
		k := m.setup.keys.Keys[i]
		m.ask(fmt.Sprintf("Remove key %s (%s)? It can no longer open the console.", k.Fingerprint, orNotSet(k.Comment)),
			m.act("key "+k.Fingerprint+" removed", false, func(ctx context.Context) error {
				return m.api.RemoveConsoleKey(ctx, k.Fingerprint, m.who())
			}), nil)
	}
	return nil
}

// consoleKeyForm takes a public key: pasted (over SSH), or from a file.
func (m *Model) consoleKeyForm() tea.Cmd {
	var text string
	return m.confirmed("Allow a key on the console over SSH", []huh.Field{
		input("Public key", "paste its line (ssh-ed25519 AAAA… team@center), or give the path of a .pub file", &text, func(s string) error {
			_, err := readPublicKey(s)
			return err
		}),
	}, func() tea.Cmd {
		line, err := readPublicKey(text)
		if err != nil {
			return func() tea.Msg { return doneMsg{err: err} }
		}
		k, _ := consolekeys.ParseLine(line)
		return m.act("key "+k.Fingerprint()+" allowed", false, func(ctx context.Context) error {
			_, err := m.api.AddConsoleKey(ctx, line, m.who())
			return err
		})
	})
}

// readPublicKey is a pasted key line, or the key in the file at a path.
func readPublicKey(s string) (string, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "/") {
		b, err := os.ReadFile(s)
		if err != nil {
			return "", err
		}
		s = strings.TrimSpace(string(b))
	}
	_, err := consolekeys.ParseLine(s)
	return s, err
}

// who names this console in the log: "console (ssh team@10.8.0.1:50312)".
func (m *Model) who() string {
	if m.opts.Where == "" {
		return "console"
	}
	return "console (" + m.opts.Where + ")"
}
