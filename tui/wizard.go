package tui

import (
	"errors"
	"fmt"
	"strings"

	tea "charm.land/bubbletea/v2"
)

// The first-start wizard walks through Setup in order: this node, a
// modality, the reading center, the tunnel, the network, retention; then it
// echoes the reading center and sums up what was set. Each step is the
// section's own form (the tunnel's page for the tunnel); each can be
// skipped: an empty AE title adds no modality or destination, values left
// as they are apply nothing, n skips the tunnel. Esc asks whether to stop.

var wizardSteps = []struct {
	name    string
	section int // the Setup section the step sets; -1 for the echo
}{
	{"this node", nodeSection},
	{"a modality", modalitiesSection},
	{"the reading center", destinationsSection},
	{"the tunnel", tunnelSection},
	{"the network", networkSection},
	{"retention", retentionSection},
	{"echo", -1},
}

// wizardMsg is an answer about the wizard: start it, not now, or stop it.
type wizardMsg struct{ do int }

const (
	wizardStart = iota
	wizardLater
	wizardStop
)

func wizardCmd(do int) tea.Cmd { return func() tea.Msg { return wizardMsg{do} } }

// offerWizard asks, once, whether to run the wizard on a box that has
// neither modality nor destination, whatever the screen, as soon as the
// configuration is read: the console may have started before relaisd (as
// at boot on the box). It waits while another question or a form is open.
func (m *Model) offerWizard() {
	if m.offered || !m.haveConfig || len(m.cfg.Modalities) > 0 || len(m.cfg.Destinations) > 0 ||
		m.setup.wizard > 0 || m.prompt != nil || m.form != nil {
		return
	}
	m.offered = true
	m.ask("This box is not set up yet. Start the setup wizard?", wizardCmd(wizardStart), wizardCmd(wizardLater))
}

// answerWizard acts on a wizardMsg.
func (m *Model) answerWizard(msg wizardMsg) tea.Cmd {
	switch msg.do {
	case wizardStart:
		return m.startWizard()
	case wizardLater:
		m.notice = "The setup wizard is on Setup: press 4, then w, to run it later."
	case wizardStop:
		m.form, m.setup.open = nil, -1
		m.notice = m.wizardSummary("Setup wizard stopped; what was applied stays. Press w on Setup to run it again.")
		m.setup.wizard = 0
	}
	return nil
}

// askStopWizard is esc in the wizard: a step's form stays open until the
// answer.
func (m *Model) askStopWizard() {
	m.ask("Stop the setup wizard?", wizardCmd(wizardStop), nil)
}

func (m *Model) startWizard() tea.Cmd {
	if !m.haveConfig {
		return nil
	}
	m.screen = setupScreen
	m.setup.open = -1
	m.setup.wizard = 0
	m.setup.outcomes = make([]string, len(wizardSteps))
	return tea.Batch(m.once("settings", m.fetchSettings()), m.nextWizardStep())
}

// wizardTitle names the wizard's current step.
func (m *Model) wizardTitle(what string) string {
	return fmt.Sprintf("Setup wizard, step %d of %d: %s", m.setup.wizard, len(wizardSteps), what)
}

// nextWizardStep opens the next step's form.
func (m *Model) nextWizardStep() tea.Cmd {
	m.setup.wizard++
	m.setup.open = -1
	switch m.setup.wizard {
	case 1:
		return m.nodeForm()
	case 2:
		return m.modalityForm(0)
	case 3:
		return m.destinationForm(0)
	case 4:
		m.setup.open, m.notice = tunnelSection, ""
		return m.once("settings", m.fetchSettings())
	case 5:
		return m.networkForm()
	case 6:
		return m.retentionForm()
	}
	if len(m.cfg.Destinations) == 0 {
		m.notice = m.wizardSummary("Setup wizard done; no reading center to echo:")
		m.setup.wizard = 0
		return nil
	}
	return m.echoDestination(m.cfg.Destinations[0].Name)
}

// wizardStepDone records how a step's form ended (its doneMsg, applied or
// not available on this box) and goes on: once the configuration is read
// again if it changed, so that the next step shows what this one set.
func (m *Model) wizardStepDone(msg doneMsg) tea.Cmd {
	outcome := "set"
	switch {
	case errors.Is(msg.err, ErrNotAvailable):
		outcome = "not available here"
	case msg.what == notChanged:
		outcome = "not changed"
	}
	m.setup.outcomes[m.setup.wizard-1] = outcome
	if msg.reload {
		m.setup.wizardNext = true
		return nil
	}
	return m.nextWizardStep()
}

// skipWizardStep goes on without changing anything (the tunnel's page).
func (m *Model) skipWizardStep() tea.Cmd {
	m.setup.outcomes[m.setup.wizard-1] = "skipped"
	return m.nextWizardStep()
}

// wizardConfigRead goes on to the next step if a step waited for the
// configuration it changed.
func (m *Model) wizardConfigRead() tea.Cmd {
	if !m.setup.wizardNext || m.setup.wizard == 0 {
		return nil
	}
	m.setup.wizardNext = false
	return m.nextWizardStep()
}

// wizardSummary is headline followed by each step reached, how it ended,
// and what its section holds now.
func (m *Model) wizardSummary(headline string) string {
	lines := []string{headline}
	for i, step := range wizardSteps {
		if step.section < 0 || i >= len(m.setup.outcomes) || m.setup.outcomes[i] == "" {
			continue
		}
		lines = append(lines, "  "+pad(sectionNames[step.section], 14)+m.setup.outcomes[i]+": "+m.summary(step.section))
	}
	return strings.Join(lines, "\n")
}
