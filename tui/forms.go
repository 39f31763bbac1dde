package tui

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	tea "charm.land/bubbletea/v2"
	"charm.land/huh/v2"
	"github.com/relais/relais/appliance/config"
)

// confirmed follows a form's fields with a page asking "Apply now?": run
// happens only on yes.
func (m *Model) confirmed(title string, fields []huh.Field, run func() tea.Cmd) tea.Cmd {
	yes := true
	apply := huh.NewConfirm().Title("Apply now?").Description("relaisd checks it again, saves it and applies it at once").
		Affirmative("Apply").Negative("Not now").Value(&yes)
	return m.openForm(title, []*huh.Group{huh.NewGroup(fields...), huh.NewGroup(apply)}, func() tea.Cmd {
		if !yes {
			return func() tea.Msg { return doneMsg{what: "nothing was changed"} }
		}
		return run()
	})
}

func input(title, help string, value *string, check func(string) error) *huh.Input {
	return huh.NewInput().Title(title).Description(help).Value(value).Validate(check)
}

func (m *Model) nodeForm() tea.Cmd {
	ae, port := m.cfg.AETitle, strconv.Itoa(m.cfg.Port)
	return m.confirmed("This node", []huh.Field{
		input("AE title", "the called AE title modalities send to", &ae, checkAE),
		input("DICOM port", "104 is usual on a hospital network", &port, checkPort),
	}, func() tea.Cmd {
		return m.apply("this node", func(c *config.Config) { c.AETitle, c.Port = strings.TrimSpace(ae), atoi(port) })
	})
}

// modalityForm edits modality i, or adds one when i is past the end.
func (m *Model) modalityForm(i int) tea.Cmd {
	var x config.Modality
	if i < len(m.cfg.Modalities) {
		x = m.cfg.Modalities[i]
	}
	ae, addr, port := x.AETitle, x.Address, ""
	if x.Port != 0 {
		port = strconv.Itoa(x.Port)
	}
	return m.confirmed("Modality allowed to send", []huh.Field{
		input("AE title", "the modality's own (calling) AE title", &ae, checkAE),
		input("Address", "where it sends from: 10.1.2.3 or 10.1.2.0/24; empty for anywhere", &addr, checkAllowed),
		input("Its port", "its own DICOM port, to echo it; empty if unknown", &port, checkOptionalPort),
	}, func() tea.Cmd {
		mod := config.Modality{Name: x.Name, AETitle: strings.TrimSpace(ae), Address: strings.TrimSpace(addr), Port: atoi(port)}
		return m.apply("modality "+mod.AETitle, func(c *config.Config) {
			if i < len(c.Modalities) {
				c.Modalities[i] = mod
			} else {
				c.Modalities = append(c.Modalities, mod)
			}
		})
	})
}

// destinationForm edits destination i, or adds one when i is past the end.
func (m *Model) destinationForm(i int) tea.Cmd {
	d := config.Destination{Name: "center", Port: 104, Commitment: true}
	var others []string
	for j, o := range m.cfg.Destinations {
		if j == i {
			d = o
		} else {
			others = append(others, o.Name)
		}
	}
	name, ae, host, port, commit := d.Name, d.AETitle, d.Host, strconv.Itoa(d.Port), d.Commitment
	kind := "center"
	if len(d.Only.CallingAETitles) > 0 {
		kind = "local"
	}
	fields := []huh.Field{
		input("Name", "a short name for its queue, for example center", &name, checkName(others)),
		input("AE title", "the reading center PACS's AE title", &ae, checkAE),
		input("Address", "its host name or address, through the tunnel", &host, checkHost),
		input("Port", "its DICOM port", &port, checkPort),
		huh.NewConfirm().Title("Storage commitment").Description("ask it to confirm it holds each study before purging here").Value(&commit),
		huh.NewSelect[string]().Title("Kind").Inline(true).Value(&kind).Options(
			huh.NewOption("reading center (receives the images)", "center"),
			huh.NewOption("local PACS (receives the center's results)", "local")),
	}
	title := "New destination"
	if i < len(m.cfg.Destinations) {
		fields, title = fields[1:], "Destination "+name+" (a destination's name never changes)"
	}
	return m.confirmed(title, fields, func() tea.Cmd {
		d.Name, d.AETitle, d.Host, d.Port, d.Commitment = strings.TrimSpace(name), strings.TrimSpace(ae), strings.TrimSpace(host), atoi(port), commit
		if kind == "local" {
			d.Only.CallingAETitles = centerAETitles(m.cfg.Destinations, d.Name)
		} else {
			d.Only.CallingAETitles = nil
		}
		return m.apply("destination "+d.Name, func(c *config.Config) {
			if i < len(c.Destinations) {
				c.Destinations[i] = d
			} else {
				c.Destinations = append(c.Destinations, d)
			}
		})
	})
}

// centerAETitles are the AE titles of the reading centers (destinations
// that take everything), whose results a local PACS receives.
func centerAETitles(ds []config.Destination, except string) []string {
	var out []string
	for _, d := range ds {
		if d.Name != except && len(d.Only.CallingAETitles) == 0 {
			out = append(out, d.AETitle)
		}
	}
	return out
}

func (m *Model) retentionForm() tea.Cmd {
	r := m.cfg.Retention
	days, high, low := strconv.Itoa(r.MaxAgeDays), strconv.Itoa(r.HighWatermarkPercent), strconv.Itoa(r.LowWatermarkPercent)
	return m.confirmed("Retention (only delivered studies are ever purged)", []huh.Field{
		input("Keep delivered studies (days)", "0 keeps them until the disk fills", &days, checkInt(0, 36500, "days")),
		input("Purge when the disk is above (%)", "0 turns purging by disk use off", &high, checkInt(0, 99, "percent")),
		input("…down to (%)", "below the value above", &low, func(s string) error {
			if err := checkInt(0, 99, "percent")(s); err != nil {
				return err
			}
			if h := atoi(high); h > 0 && atoi(s) >= h {
				return fmt.Errorf("must be below %d %%", h)
			}
			return nil
		}),
	}, func() tea.Cmd {
		return m.apply("retention", func(c *config.Config) {
			c.Retention = config.Retention{MaxAgeDays: atoi(days), HighWatermarkPercent: atoi(high), LowWatermarkPercent: atoi(low)}
		})
	})
}

func (m *Model) networkForm() tea.Cmd {
	n := m.setup.network
	if n.Mode == "" {
		n.Mode = "dhcp"
	}
	mode, addr, gw, dns := n.Mode, n.Address, n.Gateway, strings.Join(n.DNS, ", ")
	static := func(check func(string) error) func(string) error {
		return func(s string) error {
			if mode != "static" {
				return nil
			}
			return check(s)
		}
	}
	return m.confirmed("Network (the box's address on the hospital network)", []huh.Field{
		huh.NewSelect[string]().Title("Address").Options(huh.NewOption("DHCP: the network gives one", "dhcp"),
			huh.NewOption("Static: type it in", "static")).Value(&mode),
		input("Static address", "with its network, for example 192.168.1.20/24", &addr, static(checkPrefix)),
		input("Gateway", "for example 192.168.1.1", &gw, static(checkAddr)),
		input("DNS servers", "comma-separated, for example 192.168.1.1", &dns, static(checkList(checkAddr))),
	}, func() tea.Cmd {
		out := NetworkSettings{Mode: mode}
		if mode == "static" {
			out.Address, out.Gateway, out.DNS = strings.TrimSpace(addr), strings.TrimSpace(gw), splitList(dns)
		}
		return m.act("network settings: saved and applied", false, func(ctx context.Context) error { return m.settings.SetNetwork(ctx, out) })
	})
}
