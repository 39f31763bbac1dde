package tui

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	tea "charm.land/bubbletea/v2"
	"charm.land/huh/v2"
	"github.com/relais/relais/appliance/config"
)

// notChanged is what a form that changed nothing reports (its Apply page
// declined or never shown); the wizard goes on to its next step.
const notChanged = "nothing was changed"

// confirmed follows a form's fields with a page asking "Apply now?": run
// happens only on yes.
func (m *Model) confirmed(title string, fields []huh.Field, run func() tea.Cmd) tea.Cmd {
	return m.confirmedPages(title, []*huh.Group{huh.NewGroup(fields...)}, nil, run)
}

// confirmedPages is confirmed with the fields on several pages. When
// nothing (if not nil) reports true, the Apply page is not shown and the
// form ends changing nothing: the values are those already set, or the
// step was skipped (the pages themselves hide with it as they need).
func (m *Model) confirmedPages(title string, pages []*huh.Group, nothing func() bool, run func() tea.Cmd) tea.Cmd {
	if nothing == nil {
		nothing = func() bool { return false }
	}
	yes := true
	apply := huh.NewConfirm().Title("Apply now?").Description("relaisd checks it again, saves it and applies it at once").
		Affirmative("Apply").Negative("Not now").Value(&yes)
	pages = append(pages, huh.NewGroup(apply).WithHideFunc(nothing))
	return m.openForm(title, pages, func() tea.Cmd {
		if !yes || nothing() {
			return func() tea.Msg { return doneMsg{what: notChanged} }
		}
		return run()
	})
}

func input(title, help string, value *string, check func(string) error) *huh.Input {
	return huh.NewInput().Title(title).Description(help).Value(value).Validate(check)
}

func (m *Model) nodeForm() tea.Cmd {
	ae, port := m.cfg.AETitle, strconv.Itoa(m.cfg.Port)
	return m.confirmedPages("This node", []*huh.Group{huh.NewGroup(
		input("AE title", "the called AE title modalities send to", &ae, checkAE),
		input("DICOM port", "104 is usual on a hospital network", &port, checkPort),
	)}, func() bool {
		return strings.TrimSpace(ae) == m.cfg.AETitle && atoi(port) == m.cfg.Port
	}, func() tea.Cmd {
		return m.apply("this node", func(c *config.Config) { c.AETitle, c.Port = strings.TrimSpace(ae), atoi(port) })
	})
}

// modalityForm edits modality i, or adds one when i is past the end; an
// empty AE title adds none (the wizard's step skipped).
func (m *Model) modalityForm(i int) tea.Cmd {
	var x config.Modality
	adding := i >= len(m.cfg.Modalities)
	if !adding {
		x = m.cfg.Modalities[i]
	}
	ae, addr, port := x.AETitle, x.Address, ""
	if x.Port != 0 {
		port = strconv.Itoa(x.Port)
	}
	aeHelp, checkFirst := "the modality's own (calling) AE title", checkAE
	if adding {
		aeHelp, checkFirst = aeHelp+"; empty Enter adds none", optional(checkAE)
	}
	none := func() bool { return adding && strings.TrimSpace(ae) == "" }
	pages := addPages(adding, none, []huh.Field{input("AE title", aeHelp, &ae, checkFirst)}, []huh.Field{
		input("Address", "where it sends from: 10.1.2.3 or 10.1.2.0/24; empty for anywhere", &addr, checkAllowed),
		input("Its port", "its own DICOM port, to echo it; empty if unknown", &port, optional(checkPort)),
	})
	return m.confirmedPages("Modality allowed to send", pages, func() bool {
		return none() || strings.TrimSpace(ae) == x.AETitle && strings.TrimSpace(addr) == x.Address && atoi(port) == x.Port
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

// addPages are a list's form: when adding, the first fields alone, then
// the rest unless none says nothing is added; when editing, all at once.
func addPages(adding bool, none func() bool, first, rest []huh.Field) []*huh.Group {
	if !adding {
		return []*huh.Group{huh.NewGroup(append(first, rest...)...)}
	}
	return []*huh.Group{huh.NewGroup(first...), huh.NewGroup(rest...).WithHideFunc(none)}
}

// destinationForm edits destination i, or adds one when i is past the
// end; an empty AE title adds none (the wizard's step skipped).
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
	adding := i >= len(m.cfg.Destinations)
	origKind := kind
	aeHelp, checkFirst := "the reading center PACS's AE title", checkAE
	if adding {
		aeHelp, checkFirst = aeHelp+"; empty Enter adds none", optional(checkAE)
	}
	first := []huh.Field{input("AE title", aeHelp, &ae, checkFirst)}
	title := "Destination " + name + " (a destination's name never changes)"
	if adding {
		first = append([]huh.Field{input("Name", "a short name for its queue, for example center", &name, checkName(others))}, first...)
		title = "New destination"
	}
	none := func() bool { return adding && strings.TrimSpace(ae) == "" }
	pages := addPages(adding, none, first, []huh.Field{
		input("Address", "its host name or address, through the tunnel", &host, checkHost),
		input("Port", "its DICOM port", &port, checkPort),
		huh.NewConfirm().Title("Storage commitment").Description(m.commitmentHelp()).Value(&commit),
		huh.NewSelect[string]().Title("Kind").Inline(true).Value(&kind).Options(
			huh.NewOption("reading center (receives the images)", "center"),
			huh.NewOption("local PACS (receives the center's results)", "local")),
	})
	unchanged := func() bool {
		return !adding && strings.TrimSpace(ae) == d.AETitle && strings.TrimSpace(host) == d.Host && atoi(port) == d.Port &&
			commit == d.Commitment && kind == origKind
	}
	return m.confirmedPages(title, pages, func() bool { return none() || unchanged() }, func() tea.Cmd {
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
	return m.confirmedPages("Retention (only delivered studies are ever purged)", []*huh.Group{huh.NewGroup(
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
	)}, func() bool {
		return atoi(days) == r.MaxAgeDays && atoi(high) == r.HighWatermarkPercent && atoi(low) == r.LowWatermarkPercent
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
	dhcp := func() bool { return mode != "static" }
	return m.confirmedPages("Network (the box's address on the hospital network)", []*huh.Group{
		huh.NewGroup(huh.NewSelect[string]().Title("Address").Options(huh.NewOption("DHCP: the network gives one", "dhcp"),
			huh.NewOption("Static: type it in", "static")).Value(&mode)),
		// The static fields only under Static: a DHCP box has none to fill.
		huh.NewGroup(
			input("Static address", "with its network, for example 192.168.1.20/24", &addr, checkPrefix),
			input("Gateway", "for example 192.168.1.1", &gw, checkAddr),
			input("DNS servers", "comma-separated, for example 192.168.1.1", &dns, checkList(checkAddr)),
		).WithHideFunc(dhcp),
	}, func() bool {
		return mode == n.Mode && (dhcp() || strings.TrimSpace(addr) == n.Address && strings.TrimSpace(gw) == n.Gateway &&
			slices.Equal(splitList(dns), n.DNS))
	}, func() tea.Cmd {
		out := NetworkSettings{Mode: mode}
		if mode == "static" {
			out.Address, out.Gateway, out.DNS = strings.TrimSpace(addr), strings.TrimSpace(gw), splitList(dns)
		}
		return m.act("network settings: saved and applied", false, func(ctx context.Context) error { return m.settings.SetNetwork(ctx, out) })
	})
}

// commitmentHelp says what storage commitment asks of the reading center:
// its reports come back on associations of its own, to this box, which it
// knows only once registered.
func (m *Model) commitmentHelp() string {
	ae, port := m.cfg.AETitle, m.cfg.Port
	if m.haveStatus { // relaisd's flags may override the file
		ae, port = m.status.AETitle, m.status.Port
	}
	return fmt.Sprintf("Proof of delivery before purging. The reading center must register this box: AE title %s, address %s, port %d",
		ae, m.boxAddress(), port)
}

// boxAddress is where the reading center reaches this box: its address in
// the tunnel, else the addresses relaisd reports (the console's own are not
// the box's over SSH), else its static address on the hospital network.
func (m *Model) boxAddress() string {
	if p, err := netip.ParsePrefix(m.setup.tunnel.Address); err == nil {
		return p.Addr().String() // the center sees the box through the tunnel
	}
	if len(m.status.Addresses) > 0 {
		return m.status.Addresses[0]
	}
	if p, err := netip.ParsePrefix(m.setup.network.Address); err == nil {
		return p.Addr().String()
	}
	return "<this box's address>"
}
